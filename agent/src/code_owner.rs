//! The one owner of JIT code: every F+ the agent installs is registered here with the
//! guard slots it reads, retired when no redirect points at it any more (deopt,
//! recompile, unload), and released — code freed through the JIT, slots returned —
//! once no thread can be inside it.
//!
//! "No thread can be inside it" without stopping or signalling anyone: a retired F+ is
//! unreachable for new calls (its redirect was reset before it was retired), so only a
//! thread that was already inside can still be. Each other thread of the process must be
//! seen blocked in a system call (`/proc/self/task/T/syscall`), with neither its program
//! counter nor any word of its stack (from its stack pointer to the end of that mapping,
//! read with `process_vm_readv`, which fails cleanly on memory that went away) inside the
//! code, and with the same syscall line and voluntary context-switch count before and
//! after the scan (so it did not run in between). A thread that is running, or a stack we
//! cannot read, keeps the code for a later attempt: code is only ever freed late, never
//! early. Not covered: a suspended user-space coroutine whose stack is not any thread's
//! current stack (swapcontext); such code would be freed while a return address into it
//! waits on that stack, so programs that switch stacks with swapcontext should not have
//! their F+ retired — this is a known limit of freeing native code without safepoints.

use crate::guard_slots::{self, GuardSlot};
use std::time::{Duration, Instant};

/// One installed or retired F+.
#[derive(Debug)]
pub struct Code {
    /// The JIT's handle for `drti_jit_release`.
    pub handle: u64,
    /// `[start, end)` of its machine code.
    pub range: (u64, u64),
    /// The guard slots it reads.
    pub slots: Vec<GuardSlot>,
    retired_at: Option<Instant>,
}

/// Retired code waits at least this long before a release is attempted: a thread that
/// loaded the old redirect just before the reset is through its jump by then.
const GRACE: Duration = Duration::from_millis(50);

/// All JIT code of the process.
#[derive(Default)]
pub struct CodeOwner {
    live: Vec<Code>,
    retired: Vec<Code>,
    /// Handles released so far (for the dump).
    pub released: u64,
}

impl CodeOwner {
    /// Registers freshly compiled code.
    pub fn install(&mut self, handle: u64, start: u64, size: u64, slots: Vec<GuardSlot>) {
        self.live.push(Code { handle, range: (start, start + size.max(1)), slots, retired_at: None });
    }

    /// Marks the code at `start` unreachable for new calls (its redirect is gone).
    pub fn retire(&mut self, start: u64) {
        if let Some(i) = self.live.iter().position(|c| c.range.0 == start) {
            let mut c = self.live.swap_remove(i);
            c.retired_at = Some(Instant::now());
            self.retired.push(c);
        }
    }

    /// Takes over what `other` holds (code registered while this owner was lent out).
    pub fn absorb(&mut self, other: CodeOwner) {
        self.live.extend(other.live);
        self.retired.extend(other.retired);
        self.released += other.released;
    }

    /// Code waiting for release.
    pub fn retired(&self) -> usize {
        self.retired.len()
    }

    /// Releases every retired piece of code no thread can be inside, calling `free` with
    /// its handle; returns how many were released.
    pub fn release_quiescent(&mut self, free: &mut dyn FnMut(u64)) -> usize {
        let due: Vec<(u64, u64)> = self.retired.iter().filter(|c| c.retired_at.is_some_and(|t| t.elapsed() >= GRACE)).map(|c| c.range).collect();
        if due.is_empty() {
            return 0;
        }
        let busy = threads_inside(&due);
        let mut n = 0;
        let mut keep = Vec::new();
        for c in self.retired.drain(..) {
            if due.contains(&c.range) && !busy.contains(&c.range) {
                free(c.handle);
                for s in c.slots {
                    guard_slots::release(s);
                }
                n += 1;
            } else {
                keep.push(c);
            }
        }
        self.retired = keep;
        self.released += n as u64;
        n
    }
}

/// The ranges of `ranges` that some other thread may be inside (all of them when in doubt).
fn threads_inside(ranges: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let me = std::process::id();
    // SAFETY: gettid has no preconditions.
    let my_tid = unsafe { libc::gettid() } as u32;
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else { return ranges.to_vec() };
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else { return ranges.to_vec() };
    let mut inside: Vec<(u64, u64)> = Vec::new();
    for entry in dir.flatten() {
        let Some(tid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        if tid == my_tid {
            continue;
        }
        match thread_view(me, tid, &maps, ranges) {
            ThreadView::Gone => {}
            ThreadView::Clear => {}
            ThreadView::Inside(hit) => inside.extend(hit),
            ThreadView::Unknown => return ranges.to_vec(),
        }
        if inside.len() == ranges.len() {
            break;
        }
    }
    inside
}

enum ThreadView {
    Gone,
    Clear,
    Inside(Vec<(u64, u64)>),
    Unknown,
}

/// `(syscall line, voluntary switches)` of a thread, `None` if it is gone.
fn snapshot(tid: u32) -> Option<(String, u64)> {
    let base = format!("/proc/self/task/{tid}");
    let sys = std::fs::read_to_string(format!("{base}/syscall")).ok()?;
    let status = std::fs::read_to_string(format!("{base}/status")).ok()?;
    let switches = status.lines().find_map(|l| l.strip_prefix("voluntary_ctxt_switches:")).and_then(|v| v.trim().parse().ok())?;
    Some((sys.trim().to_owned(), switches))
}

/// Stack pointer and program counter of a thread blocked in a system call, from its
/// `/proc/.../syscall` line (`nr a1 .. a6 sp pc`); `None` when it is running.
pub fn blocked_sp_pc(line: &str) -> Option<(u64, u64)> {
    let f: Vec<&str> = line.split_whitespace().collect();
    if f.len() < 3 || f[0] == "running" {
        return None;
    }
    let hex = |s: &str| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok();
    Some((hex(f[f.len() - 2])?, hex(f[f.len() - 1])?))
}

/// End of the mapping of `/proc/self/maps` text that contains `addr`.
pub fn mapping_end(maps: &str, addr: u64) -> Option<u64> {
    maps.lines().find_map(|l| {
        let range = l.split_whitespace().next()?;
        let (a, b) = range.split_once('-')?;
        let (a, b) = (u64::from_str_radix(a, 16).ok()?, u64::from_str_radix(b, 16).ok()?);
        (a..b).contains(&addr).then_some(b)
    })
}

/// Which of `ranges` contain `pc` or any aligned word of `stack`.
pub fn hits(ranges: &[(u64, u64)], pc: u64, stack: &[u8]) -> Vec<(u64, u64)> {
    let within = |v: u64| ranges.iter().copied().filter(move |&(s, e)| v >= s && v < e);
    let mut out: Vec<(u64, u64)> = within(pc).collect();
    for w in stack.chunks_exact(8) {
        let v = u64::from_le_bytes(w.try_into().unwrap());
        for r in within(v) {
            if !out.contains(&r) {
                out.push(r);
            }
        }
    }
    out
}

fn thread_view(pid: u32, tid: u32, maps: &str, ranges: &[(u64, u64)]) -> ThreadView {
    let Some(before) = snapshot(tid) else { return ThreadView::Gone };
    let Some((sp, pc)) = blocked_sp_pc(&before.0) else { return ThreadView::Unknown };
    let Some(end) = mapping_end(maps, sp) else { return ThreadView::Unknown };
    let len = (end - (sp & !7)).min(64 << 20) as usize;
    let mut stack = vec![0u8; len];
    let local = libc::iovec { iov_base: stack.as_mut_ptr().cast(), iov_len: len };
    let remote = libc::iovec { iov_base: (sp & !7) as *mut libc::c_void, iov_len: len };
    // SAFETY: process_vm_readv copies from our own address space into `stack`, which is
    // valid for `len` bytes; unmapped source memory makes it fail, never fault.
    let got = unsafe { libc::process_vm_readv(pid as libc::pid_t, &local, 1, &remote, 1, 0) };
    if got != len as isize {
        return ThreadView::Unknown;
    }
    let hit = hits(ranges, pc, &stack);
    match snapshot(tid) {
        None => ThreadView::Gone,
        Some(after) if after != before => ThreadView::Unknown,
        Some(_) if hit.is_empty() => ThreadView::Clear,
        Some(_) => ThreadView::Inside(hit),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_blocked_and_running_threads() {
        assert_eq!(blocked_sp_pc("running"), None);
        assert_eq!(blocked_sp_pc("202 0x7f 0x80 0x0 0x0 0x0 0x0 0x7ffd1000 0x7f0012"), Some((0x7ffd_1000, 0x7f_0012)));
        assert_eq!(blocked_sp_pc("-1 0x7ffd1000 0x7f0012"), Some((0x7ffd_1000, 0x7f_0012)));
    }

    #[test]
    fn finds_mapping_ends_and_stack_hits() {
        let maps = "7ffd0000-7ffe0000 rw-p 00000000 00:00 0 [stack]\n";
        assert_eq!(mapping_end(maps, 0x7ffd_8000), Some(0x7ffe_0000));
        assert_eq!(mapping_end(maps, 0x1000), None);
        let mut stack = vec![0u8; 32];
        stack[8..16].copy_from_slice(&0x5010u64.to_le_bytes());
        assert_eq!(hits(&[(0x5000, 0x5100), (0x9000, 0x9100)], 0, &stack), vec![(0x5000, 0x5100)]);
        assert_eq!(hits(&[(0x9000, 0x9100)], 0x9004, &stack), vec![(0x9000, 0x9100)]);
        assert!(hits(&[(0x9000, 0x9100)], 0, &stack).is_empty());
    }

    #[test]
    fn code_a_blocked_thread_is_inside_is_kept_until_it_leaves() {
        // A thread blocked in read() whose stack holds a value inside a fake "code" range
        // keeps it; once the thread is gone, the range is released.
        let marker = Box::new(0u8);
        let fake = (&*marker as *const u8 as u64) & !0xfff;
        let range = (fake, fake + 0x1000);
        let (r, w) = {
            let mut fds = [0; 2];
            // SAFETY: pipe fills two fds.
            assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
            (fds[0], fds[1])
        };
        let t = std::thread::spawn(move || {
            let keep = std::hint::black_box([fake + 8; 4]);
            let mut b = [0u8; 1];
            // SAFETY: reading one byte into a local buffer from our pipe.
            unsafe { libc::read(r, b.as_mut_ptr().cast(), 1) };
            std::hint::black_box(keep);
        });
        std::thread::sleep(Duration::from_millis(100));
        let mut owner = CodeOwner::default();
        owner.install(7, range.0, 0x1000, Vec::new());
        owner.retire(range.0);
        std::thread::sleep(GRACE);
        let mut freed = Vec::new();
        // Other test threads may be running: the check may only say "keep".
        assert_eq!(owner.release_quiescent(&mut |h| freed.push(h)), 0);
        assert_eq!(owner.retired(), 1);
        // SAFETY: writing one byte to our pipe.
        unsafe { libc::write(w, b"x".as_ptr().cast(), 1) };
        t.join().unwrap();
        drop(marker);
    }
}
