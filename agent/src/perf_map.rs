//! `/tmp/perf-<pid>.map`, perf's symbol file for JIT code (`DRTI_PERF_MAP=1`), written by
//! the agent as it links each compiled object.
//!
//! /tmp is shared: someone else may have planted the name first (a symlink to a file of
//! ours, a file of theirs). The map is opened once, without following a symlink, and
//! used only if it is a regular file of our effective user with no other name (one
//! link); otherwise one warning and no map. The descriptor stays open for the process.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::sync::Mutex;

enum State {
    Unopened,
    /// The map of process `pid` (a forked child opens its own).
    Open(u32, File),
    Refused(u32),
}

static MAP: Mutex<State> = Mutex::new(State::Unopened);

/// The map file of this process, checked; `Err(why)` when it must not be written.
fn open(path: &str) -> Result<File, String> {
    let f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                format!("{path} is a symbolic link")
            } else {
                format!("cannot open {path}: {e}")
            }
        })?;
    let meta = f.metadata().map_err(|e| format!("cannot stat {path}: {e}"))?;
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    if !meta.file_type().is_file() {
        return Err(format!("{path} is not a regular file"));
    }
    if meta.uid() != euid {
        return Err(format!("{path} belongs to uid {}, not to this process (uid {euid})", meta.uid()));
    }
    if meta.nlink() != 1 {
        return Err(format!("{path} has {} names (hard links)", meta.nlink()));
    }
    Ok(f)
}

/// Appends `addr size name` for one JIT'd function.
pub fn append(addr: u64, size: u64, name: &str) {
    let pid = std::process::id();
    let mut state = MAP.lock().unwrap_or_else(|p| p.into_inner());
    if matches!(*state, State::Unopened) || matches!(*state, State::Open(p, _) | State::Refused(p) if p != pid) {
        let path = format!("/tmp/perf-{pid}.map");
        *state = match open(&path) {
            Ok(f) => State::Open(pid, f),
            Err(why) => {
                tracing::warn!("perf map not written: {why}");
                State::Refused(pid)
            }
        };
    }
    if let State::Open(_, f) = &mut *state {
        // One write per line, so concurrent readers never see half a line.
        let _ = f.write_all(format!("{addr:x} {:x} {name}\n", size.max(1)).as_bytes());
    }
}
