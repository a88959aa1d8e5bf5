//! On-stack replacement points: where a running activation of F may move into a compiled
//! continuation Fc, and which of F's values it must hand over.
//!
//! One rule, run by drti-cc (which places the checks in F's profiled twin) and by the JIT
//! (which builds Fc and refuses a request that does not match), both on the same clean IR:
//!
//! * a **point** is the header H of a loop of F (LLVM LoopInfo) whose blocks contain at
//!   least one of F's indirect calls ([`crate::ir::indirect_calls`]) and that is not an
//!   exception-handling pad (a landing pad is entered by unwinding only); at most
//!   [`MAX_POINTS`] per function, outermost loops first, then in block order;
//! * its **live set** (at the start of H, just after H's PHIs): every PHI of H, then every
//!   argument and every instruction whose block strictly dominates H that has a use in a
//!   block reachable from H (H included; a PHI's use counts in its incoming block); void
//!   values never. Arguments first (by index), then instructions (by index over all
//!   instructions of F in block order);
//! * a function gets **no points** ([`osr_blocker`] says why) when an activation cannot be
//!   rebuilt from such values: varargs, `returns_twice` calls (setjmp), dynamic allocas,
//!   `llvm.stacksave`/`stackrestore`/`localescape`/`frameaddress`/`returnaddress`,
//!   `musttail` calls, or a token, swifterror, inalloca or preallocated value in a live set.
//!
//! A live value that is not a PHI of H may still be defined inside an enclosing loop (H is
//! an inner loop's header; the outer loop recomputes it): a continuation must keep such a
//! definition's later values flowing to its uses, not replace every use by the parameter.
//! [`redefined_after_entry`] lists those values.

// Raw LLVM handles come from a live module (see `ir`).
#![allow(clippy::not_unsafe_ptr_arg_deref)]

use crate::ir;
use llvm_sys::core::*;
use llvm_sys::prelude::*;

/// Most points one function gets (the twin's checks and the runtime area's slots are per point).
pub const MAX_POINTS: usize = 8;

/// Bit that marks an argument in the encoded form of a [`LiveRef`]; the same encoding as
/// the metadata's live-ref table (`bitcode_embed::format::OSR_LIVE_ARG`).
pub const LIVE_ARG_BIT: u32 = 0x8000_0000;

/// One value an activation hands to the continuation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LiveRef {
    /// F's i-th parameter.
    Arg(u32),
    /// F's j-th instruction, counting every instruction of every block in function order.
    Inst(u32),
}

impl LiveRef {
    /// The metadata encoding: `Arg(i)` = `i | 0x8000_0000`, `Inst(j)` = `j`.
    pub fn encode(self) -> u32 {
        match self {
            LiveRef::Arg(i) => i | LIVE_ARG_BIT,
            LiveRef::Inst(j) => j,
        }
    }

    /// The inverse of [`LiveRef::encode`].
    pub fn decode(word: u32) -> LiveRef {
        if word & LIVE_ARG_BIT != 0 {
            LiveRef::Arg(word & !LIVE_ARG_BIT)
        } else {
            LiveRef::Inst(word)
        }
    }
}

/// One OSR point of a function.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OsrPoint {
    /// Index of the loop header H in F's basic-block list.
    pub header: u32,
    /// The values live at the start of H, in the order the continuation takes them.
    pub live: Vec<LiveRef>,
    /// Ordinals ([`crate::ir::indirect_calls`] order) of F's indirect calls inside the loop.
    pub sites: Vec<u32>,
}

extern "C" {
    /// `osr.cpp`: the points of `f` as a flat malloc'd array, or null with the reason.
    fn drti_osr_analyze(f: LLVMValueRef, calls: *const LLVMValueRef, n_calls: usize, len: *mut usize, why: *mut *mut std::ffi::c_char) -> *mut u32;
    /// Frees what `drti_osr_analyze` returned.
    fn drti_osr_free(p: *mut std::ffi::c_void);
}

/// Why `f` can have no OSR point, if it cannot (see the module doc). `None` for a function
/// that simply has no loop with an indirect call.
pub fn osr_blocker(f: LLVMValueRef) -> Option<String> {
    analyze(f).err()
}

/// The OSR points of `f` (see the module doc); empty if blocked, a declaration, or without
/// a loop that holds an indirect call.
pub fn osr_points(f: LLVMValueRef) -> Vec<OsrPoint> {
    analyze(f).unwrap_or_default()
}

/// Runs the analysis of `osr.cpp` and decodes its result.
fn analyze(f: LLVMValueRef) -> Result<Vec<OsrPoint>, String> {
    if ir::is_declaration(f) {
        return Ok(Vec::new());
    }
    let calls = ir::indirect_calls(f);
    let mut len = 0usize;
    let mut why = std::ptr::null_mut();
    // SAFETY: `f` is a live function and `calls` live instructions of it; the shim only
    // reads them and returns memory this function frees exactly once below.
    let words = unsafe {
        let p = drti_osr_analyze(f, calls.as_ptr(), calls.len(), &mut len, &mut why);
        let words = if p.is_null() { None } else { Some(std::slice::from_raw_parts(p, len).to_vec()) };
        drti_osr_free(p.cast());
        words
    };
    if !why.is_null() {
        // SAFETY: `why` is a NUL-terminated malloc'd string, freed exactly once.
        let text = unsafe {
            let s = std::ffi::CStr::from_ptr(why).to_string_lossy().into_owned();
            drti_osr_free(why.cast());
            s
        };
        return Err(text);
    }
    let Some(words) = words else { return Ok(Vec::new()) };
    Ok(decode_points(&words))
}

/// Decodes `n, { header, n_live, live.., n_sites, sites.. }*` (written by `osr.cpp`).
fn decode_points(words: &[u32]) -> Vec<OsrPoint> {
    let mut it = words.iter().copied();
    let n = it.next().unwrap_or(0);
    let mut out = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let header = it.next().expect("osr.cpp: point header");
        let n_live = it.next().expect("osr.cpp: live count");
        let live = (&mut it).take(n_live as usize).map(LiveRef::decode).collect();
        let n_sites = it.next().expect("osr.cpp: site count");
        let sites = (&mut it).take(n_sites as usize).collect();
        out.push(OsrPoint { header, live, sites });
    }
    out
}

/// Basic block `index` of `f` (block-list order), if it has that many.
pub fn block_at(f: LLVMValueRef, index: u32) -> Option<LLVMBasicBlockRef> {
    // SAFETY: `f` is a live function; blocks are walked with LLVM's iterators.
    unsafe {
        let mut bb = LLVMGetFirstBasicBlock(f);
        for _ in 0..index {
            if bb.is_null() {
                return None;
            }
            bb = LLVMGetNextBasicBlock(bb);
        }
        (!bb.is_null()).then_some(bb)
    }
}

/// The value of `f` that `r` names, if `f` has it.
pub fn live_value(f: LLVMValueRef, r: LiveRef) -> Option<LLVMValueRef> {
    match r {
        // SAFETY: `f` is a live function; the index is checked against its parameter count.
        LiveRef::Arg(i) => unsafe { (i < LLVMCountParams(f)).then(|| LLVMGetParam(f, i)) },
        LiveRef::Inst(j) => ir::instructions(f).get(j as usize).copied(),
    }
}

/// The live values of point `p` of `f`, other than H's PHIs, whose definition is reachable
/// from H (an enclosing loop computes them again): in a continuation entered at H, their
/// uses must see the parameter on the first pass and the recomputed value afterwards (SSA
/// repair: a PHI at the definition's merge points, or a stack slot and mem2reg), not the
/// parameter alone. Empty for an outermost loop.
pub fn redefined_after_entry(f: LLVMValueRef, p: &OsrPoint) -> Vec<LiveRef> {
    let Some(h) = block_at(f, p.header) else { return Vec::new() };
    // SAFETY: `f` is a live function and `h` one of its blocks; terminators, successors and
    // instruction parents are only read.
    unsafe {
        let mut seen = std::collections::HashSet::from([h]);
        let mut work = vec![h];
        while let Some(b) = work.pop() {
            let term = LLVMGetBasicBlockTerminator(b);
            if term.is_null() {
                continue;
            }
            for i in 0..LLVMGetNumSuccessors(term) {
                let s = LLVMGetSuccessor(term, i);
                if seen.insert(s) {
                    work.push(s);
                }
            }
        }
        let insts = ir::instructions(f);
        p.live
            .iter()
            .copied()
            .filter(|&r| match r {
                LiveRef::Arg(_) => false,
                LiveRef::Inst(j) => insts.get(j as usize).is_some_and(|&i| {
                    let b = LLVMGetInstructionParent(i);
                    b != h && seen.contains(&b)
                }),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use LiveRef::*;

    /// A module parsed from IR text (in its own context, both freed on drop).
    struct Module {
        ctx: LLVMContextRef,
        m: LLVMModuleRef,
    }

    impl Module {
        fn parse(text: &str) -> Module {
            // SAFETY: the buffer copies `text`; LLVMParseIRInContext takes ownership of it;
            // the module and context are disposed in Drop.
            unsafe {
                let ctx = LLVMContextCreate();
                let buf = LLVMCreateMemoryBufferWithMemoryRangeCopy(text.as_ptr().cast(), text.len(), c"test".as_ptr());
                let mut m = std::ptr::null_mut();
                let mut msg = std::ptr::null_mut();
                let failed = llvm_sys::ir_reader::LLVMParseIRInContext(ctx, buf, &mut m, &mut msg);
                assert_eq!(failed, 0, "bad test IR: {}", ir::take_message(msg));
                ir::verify(m).expect("test IR verifies");
                Module { ctx, m }
            }
        }

        fn f(&self, name: &str) -> LLVMValueRef {
            let n = std::ffi::CString::new(name).unwrap();
            // SAFETY: the module is live.
            let f = unsafe { LLVMGetNamedFunction(self.m, n.as_ptr()) };
            assert!(!f.is_null(), "no function {name}");
            f
        }
    }

    impl Drop for Module {
        fn drop(&mut self) {
            // SAFETY: both were created in `parse` and are disposed once.
            unsafe {
                LLVMDisposeModule(self.m);
                LLVMContextDispose(self.ctx);
            }
        }
    }

    /// The IR names of a point's live values.
    fn names(f: LLVMValueRef, p: &OsrPoint) -> Vec<String> {
        p.live.iter().map(|&r| ir::name(live_value(f, r).unwrap())).collect()
    }

    const MAIN_LOOP: &str = r#"
define i32 @main(i32 %argc, ptr %argv) {
entry:
  %acc = alloca i32, align 4
  %x = add i32 %argc, 1
  store i32 %x, ptr %acc, align 4
  %fp = load ptr, ptr %argv, align 8
  %init = mul i32 %argc, 2
  br label %loop
loop:
  %i = phi i32 [ 0, %entry ], [ %i.next, %body ]
  %s = phi i32 [ %init, %entry ], [ %s.next, %body ]
  %done = icmp sge i32 %i, 100
  br i1 %done, label %exit, label %body
body:
  %r = call i32 %fp(i32 %i)
  %s.next = add i32 %s, %r
  %i.next = add i32 %i, 1
  br label %loop
exit:
  %a = load i32, ptr %acc, align 4
  %t = add i32 %s, %a
  %u = add i32 %t, %argc
  %v = call i32 %fp(i32 %u)
  ret i32 %v
}
"#;

    #[test]
    fn a_loop_with_an_indirect_call_is_a_point_with_its_live_values() {
        let m = Module::parse(MAIN_LOOP);
        let f = m.f("main");
        assert_eq!(osr_blocker(f), None);
        let points = osr_points(f);
        assert_eq!(points.len(), 1, "{points:?}");
        let p = &points[0];
        assert_eq!(p.header, 1, "the loop header is block 1");
        // argc: used after the loop. acc (alloca), fp (pre-header value): used in and after
        // the loop. i, s: H's PHIs. Not live: argv and x (used before the loop only), init
        // (reaches the loop only through s's edge from the entry).
        assert_eq!(p.live, vec![Arg(0), Inst(0), Inst(3), Inst(6), Inst(7)]);
        assert_eq!(names(f, p), ["argc", "acc", "fp", "i", "s"]);
        // Ordinal 0 is the call in the loop; 1, after the loop, is not in it.
        assert_eq!(p.sites, vec![0]);
        assert_eq!(redefined_after_entry(f, p), vec![]);
        assert_eq!(ir::indirect_calls(f).len(), 2);
    }

    #[test]
    fn nested_loops_give_two_points_outermost_first() {
        let m = Module::parse(
            r#"
define void @run(ptr %fp, i32 %n) {
entry:
  br label %outer
outer:
  %i = phi i32 [ 0, %entry ], [ %i.next, %outer.latch ]
  %base = mul i32 %i, %n
  br label %inner
inner:
  %j = phi i32 [ 0, %outer ], [ %j.next, %inner ]
  %k = add i32 %base, %j
  call void %fp(i32 %k)
  %j.next = add i32 %j, 1
  %jd = icmp eq i32 %j.next, %n
  br i1 %jd, label %outer.latch, label %inner
outer.latch:
  %i.next = add i32 %i, 1
  %id = icmp eq i32 %i.next, %n
  br i1 %id, label %exit, label %outer
exit:
  ret void
}
"#,
        );
        let f = m.f("run");
        let points = osr_points(f);
        assert_eq!(points.len(), 2, "{points:?}");
        let (outer, inner) = (&points[0], &points[1]);
        assert_eq!((outer.header, inner.header), (1, 2));
        assert_eq!(names(f, outer), ["fp", "n", "i"]);
        // The inner header also needs the outer loop's PHI and the value computed from it.
        assert_eq!(names(f, inner), ["fp", "n", "i", "base", "j"]);
        assert_eq!(outer.sites, vec![0]);
        assert_eq!(inner.sites, vec![0]);
        // The outer loop computes i and base again after the inner loop ends.
        assert_eq!(redefined_after_entry(f, outer), vec![]);
        let again: Vec<String> = redefined_after_entry(f, inner).into_iter().map(|r| ir::name(live_value(f, r).unwrap())).collect();
        assert_eq!(again, ["i", "base"]);
    }

    #[test]
    fn a_loop_without_indirect_calls_is_no_point() {
        let m = Module::parse(
            r#"
declare void @g(i32)
define void @f(ptr %fp, i32 %n) {
entry:
  call void %fp(i32 0)
  br label %loop
loop:
  %i = phi i32 [ 0, %entry ], [ %i.next, %loop ]
  call void @g(i32 %i)
  call void asm sideeffect "nop", ""()
  %i.next = add i32 %i, 1
  %d = icmp eq i32 %i.next, %n
  br i1 %d, label %exit, label %loop
exit:
  ret void
}
"#,
        );
        let f = m.f("f");
        assert_eq!(osr_blocker(f), None);
        assert_eq!(osr_points(f), vec![]);
        assert!(osr_points(m.f("g")).is_empty(), "a declaration has no points");
    }

    /// A function named `f` with a loop through a function pointer, `extra` before the loop
    /// (entry block) and `params` after `ptr %fp`.
    fn with_loop(params: &str, extra: &str, decls: &str) -> String {
        format!(
            r#"
{decls}
define void @f(ptr %fp{params}) {{
entry:
  {extra}
  br label %loop
loop:
  %i = phi i32 [ 0, %entry ], [ %i.next, %loop ]
  call void %fp(i32 %i)
  %i.next = add i32 %i, 1
  %d = icmp eq i32 %i.next, 10
  br i1 %d, label %exit, label %loop
exit:
  ret void
}}
"#
        )
    }

    #[test]
    fn the_template_has_a_point_without_a_blocker() {
        let m = Module::parse(&with_loop("", "", ""));
        assert_eq!(osr_points(m.f("f")).len(), 1);
    }

    #[test]
    fn frames_a_continuation_cannot_rebuild_get_no_points() {
        let cases = [
            ("setjmp", with_loop("", "%r = call i32 @setjmp(ptr null)", "declare i32 @setjmp(ptr) returns_twice"), "returns_twice"),
            ("varargs", with_loop(", ...", "", ""), "variadic"),
            ("va_start", with_loop(", ...", "%ap = alloca ptr\n  call void @llvm.va_start.p0(ptr %ap)", "declare void @llvm.va_start.p0(ptr)"), "variadic"),
            ("dynamic alloca", with_loop(", i32 %n", "%buf = alloca i8, i32 %n", ""), "dynamic alloca"),
            ("stacksave", with_loop("", "%sp = call ptr @llvm.stacksave.p0()", "declare ptr @llvm.stacksave.p0()"), "stacksave"),
            ("frameaddress", with_loop("", "%fa = call ptr @llvm.frameaddress.p0(i32 0)", "declare ptr @llvm.frameaddress.p0(i32)"), "frameaddress"),
            ("returnaddress", with_loop("", "%ra = call ptr @llvm.returnaddress(i32 0)", "declare ptr @llvm.returnaddress(i32)"), "returnaddress"),
            ("musttail", "define void @f(ptr %fp) {\nentry:\n  br label %loop\nloop:\n  %i = phi i32 [ 0, %entry ], [ %i.next, %loop ]\n  call void %fp(i32 %i)\n  %i.next = add i32 %i, 1\n  %d = icmp eq i32 %i.next, 10\n  br i1 %d, label %exit, label %loop\nexit:\n  musttail call void %fp(ptr %fp)\n  ret void\n}\n".to_string(), "musttail"),
        ];
        for (what, text, why) in cases {
            let m = Module::parse(&text);
            let f = m.f("f");
            let blocker = osr_blocker(f).unwrap_or_else(|| panic!("{what}: not blocked"));
            assert!(blocker.contains(why), "{what}: {blocker}");
            assert!(osr_points(f).is_empty(), "{what}");
        }
    }

    #[test]
    fn a_swifterror_value_live_at_the_header_blocks_but_an_unused_one_does_not() {
        let text = |use_it: &str| {
            format!(
                "define swiftcc void @f(ptr %fp, ptr swifterror %e) {{\nentry:\n  br label %loop\nloop:\n  %i = phi i32 [ 0, %entry ], [ %i.next, %loop ]\n  call void %fp(i32 %i)\n  %i.next = add i32 %i, 1\n  %d = icmp eq i32 %i.next, 10\n  br i1 %d, label %exit, label %loop\nexit:\n  {use_it}\n  ret void\n}}\n"
            )
        };
        let m = Module::parse(&text("store ptr null, ptr %e"));
        let why = osr_blocker(m.f("f")).expect("blocked");
        assert!(why.contains("swifterror") && why.contains("%e"), "{why}");
        let m = Module::parse(&text(""));
        assert_eq!(osr_blocker(m.f("f")), None);
        assert_eq!(osr_points(m.f("f")).len(), 1);
    }

    #[test]
    fn a_landing_pad_that_heads_a_loop_is_no_point() {
        // `again: try { fp(); } catch (...) { goto again; }` shaped so that the landing pad
        // is the only way into the loop: its header.
        let m = Module::parse(
            r#"
declare i32 @__gxx_personality_v0(...)
define void @f(ptr %fp) personality ptr @__gxx_personality_v0 {
entry:
  invoke void %fp(i32 0) to label %exit unwind label %lpad
lpad:
  %lp = landingpad { ptr, i32 } catch ptr null
  invoke void %fp(i32 1) to label %exit unwind label %lpad
exit:
  ret void
}
"#,
        );
        let f = m.f("f");
        assert_eq!(osr_blocker(f), None);
        assert_eq!(osr_points(f), vec![]);
    }

    #[test]
    fn at_most_eight_points_the_first_in_block_order() {
        let mut body = String::from("define void @f(ptr %fp) {\nentry:\n  br label %h0\n");
        for k in 0..10 {
            let next = if k == 9 { "exit".to_string() } else { format!("h{}", k + 1) };
            body += &format!(
                "h{k}:\n  %i{k} = phi i32 [ 0, %{prev} ], [ %n{k}, %h{k} ]\n  call void %fp(i32 %i{k})\n  %n{k} = add i32 %i{k}, 1\n  %d{k} = icmp eq i32 %n{k}, 3\n  br i1 %d{k}, label %{next}, label %h{k}\n",
                prev = if k == 0 { "entry".to_string() } else { format!("h{}", k - 1) }
            );
        }
        body += "exit:\n  ret void\n}\n";
        let m = Module::parse(&body);
        let points = osr_points(m.f("f"));
        assert_eq!(points.iter().map(|p| p.header).collect::<Vec<_>>(), (1..=8).collect::<Vec<u32>>());
        assert_eq!(points.iter().map(|p| p.sites.clone()).collect::<Vec<_>>(), (0..8).map(|k| vec![k]).collect::<Vec<_>>());
        // Each loop's PHI, and fp.
        assert!(points.iter().all(|p| p.live.len() == 2 && p.live[0] == Arg(0)), "{points:?}");
    }

    #[test]
    fn live_refs_encode_as_the_metadata_does() {
        for r in [Arg(0), Arg(7), Inst(0), Inst(12345)] {
            assert_eq!(LiveRef::decode(r.encode()), r);
        }
        assert_eq!(Arg(3).encode(), 0x8000_0003);
        assert_eq!(Inst(3).encode(), 3);
    }
}
