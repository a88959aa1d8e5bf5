//! The decoration pass: turns a clang-produced module into a drti module.
//!
//! What it adds (layout and field meanings: `bitcode_embed::format`):
//! * the clean bitcode of the module, taken before anything below is added, so the JIT
//!   recompiles exactly what clang produced;
//! * a table of the run-time addresses of every global the clean bitcode names, internal
//!   ones included, so JIT'd code binds to the program's own data (one copy of statics);
//! * a function table and one site record per indirect call of each selected function;
//! * for each such function F, a profiled twin F.prof (`<F>.drti.prof`, an internal clone
//!   made before F gets its redirect entry) whose sites carry the sampling code: a
//!   decrement of the thread's countdown (`__drti_tls`, thread-local, so no application
//!   thread writes memory another one writes) and, when it goes negative, a call of the
//!   hook with the actual target. F itself keeps clang's code at its sites: profiling is
//!   on exactly while the agent points F's redirect slot at F.prof (format.rs, "Sampling");
//! * in F.prof only, at the head of each loop that holds indirect calls (the OSR points of
//!   `drti_llvm_ir::osr`, computed on the clean F), a check of the point's OSR slot: while
//!   it is null the loop goes on; once the agent stores a continuation there, F.prof calls
//!   it with its live values and returns its result (format.rs, "OSR points"), so a running
//!   activation (a loop in `main`) moves into compiled code;
//! * at the entry of each such function, a check of its redirect slot: one acquire load
//!   and a branch while the slot is null; once the agent stores F.prof's or F+'s address
//!   there, a `musttail` call of it (format.rs, "Redirect slots"). A function whose entry
//!   cannot do that is marked `FUNCTION_NO_REDIRECT` and its sites are not profiled;
//! * the `.note.drti` note that lets the agent find all of it in memory.

// Raw LLVM handles come from the live module being decorated (see `ir`).
#![allow(clippy::not_unsafe_ptr_arg_deref)]

use drti_llvm_ir::ir;
use drti_llvm_ir::osr::{self, OsrPoint};
use bitcode_embed::format::*;
use bitcode_embed::BlobWriter;
use llvm_sys::core::*;
use llvm_sys::prelude::*;
use std::collections::{HashMap, HashSet};

/// What to decorate.
pub struct Options {
    /// Source file name, recorded in the metadata.
    pub source_name: String,
    /// Functions opted out by name (`DRTI_SKIP`), in addition to `annotate("drti_skip")`.
    pub skip: Vec<String>,
}

/// What was decorated.
#[derive(Debug, Default)]
pub struct Stats {
    /// Defined functions in the function table.
    pub functions: usize,
    /// Profiled indirect call sites.
    pub sites: usize,
    /// Globals in the address table.
    pub globals: usize,
    /// Size of the embedded (compressed) blob.
    pub blob_bytes: usize,
    /// OSR points (loop-head checks in the profiled twins).
    pub osr_points: usize,
}

const PROFILE_HELPER: &str = "__drti_profile";

// The metadata stores live refs as `LiveRef::encode` makes them.
const _: () = assert!(osr::LIVE_ARG_BIT == OSR_LIVE_ARG);

extern "C" {
    /// `clone.cpp`: an internal copy of function `f` named `name` in `f`'s module (with a
    /// debug-info subprogram of its own), or null if `f` is not a definition.
    fn drti_clone_function(f: LLVMValueRef, name: *const std::ffi::c_char) -> LLVMValueRef;
    /// `clone.cpp`: splits `inst`'s block before `inst`; returns the new (second) block.
    fn drti_split_block_before(inst: LLVMValueRef, name: *const std::ffi::c_char) -> LLVMBasicBlockRef;
}

/// One function of the function table while it is decorated.
struct Entry {
    f: LLVMValueRef,
    flags: u32,
    /// Its sites: F's indirect calls, then (once it has a twin) the twin's.
    calls: Vec<LLVMValueRef>,
    /// The profiled twin F.prof.
    prof: Option<LLVMValueRef>,
    /// Its OSR points (of the clean F), each with its OSR slot's index among the module's
    /// OSR slots; kept only once the twin has the checks.
    points: Vec<(OsrPoint, u32)>,
}

/// The profiled twin of `f` (see the module doc), or `None` if it could not be made.
fn clone_profiled(f: LLVMValueRef) -> Option<LLVMValueRef> {
    let name = std::ffi::CString::new(format!("{}{PROFILED_SUFFIX}", ir::name(f))).ok()?;
    // SAFETY: `f` is a live function of the module being decorated; the shim only reads
    // it and adds a new function to the same module.
    let copy = unsafe { drti_clone_function(f, name.as_ptr()) };
    (!copy.is_null()).then_some(copy)
}

/// Decorates module `m` in place.
pub fn decorate(m: LLVMModuleRef, opts: &Options) -> Result<Stats, String> {
    name_anonymous_globals(m);
    let mut skip: HashSet<String> = ir::annotated_functions(m, "drti_skip").into_iter().collect();
    skip.extend(opts.skip.iter().cloned());
    let clean = module_bitcode(m);

    let mut w = BlobWriter::new(&opts.source_name);
    let mut slots: Vec<LLVMValueRef> = Vec::new();
    let mut index: HashMap<LLVMValueRef, u32> = HashMap::new();
    record_globals(m, &mut w, &mut slots, &mut index);

    // Function table and sites, from the clean module (nothing has been added yet).
    let b = Builder::new(m);
    let mut table: Vec<Entry> = Vec::new();
    let mut candidates = 0u32;
    let mut osr_candidates = 0u32;
    for f in ir::functions(m) {
        if ir::is_declaration(f) || ir::is_llvm_reserved(&ir::name(f)) {
            continue;
        }
        let skipped = skip.contains(&ir::name(f));
        let mut calls = if skipped { Vec::new() } else { ir::indirect_calls(f) };
        let mut flags = if skipped { FUNCTION_SKIPPED } else { 0 };
        let mut points = Vec::new();
        if !calls.is_empty() {
            // Only a function the agent can redirect to a twin (and later to an F+) is
            // worth profiling.
            if redirect_blocker(f).or_else(|| clone_blocker(f)).is_some() {
                flags |= FUNCTION_NO_REDIRECT;
                calls.clear();
            } else {
                flags |= FUNCTION_DECORATED;
                candidates += 1;
                // On the clean F, as the JIT computes them from the clean bitcode.
                points = osr::osr_points(f).into_iter().map(|p| (p, 0)).collect();
                osr_candidates += points.len() as u32;
            }
        }
        table.push(Entry { f, flags, calls, prof: None, points });
    }

    // Redirect slots. Their final home (after the per-site words of the runtime area) is sized
    // only once every entry has verified, so entries load from a placeholder first.
    // OSR slots follow all redirect slots, so their checks load from a placeholder as well.
    let slots_tmp = b.placeholder_slots(candidates);
    let osr_tmp = b.placeholder_slots(osr_candidates);
    let mut next_slot = 0u32;
    let mut next_osr = 0u32;
    let mut slot_of: HashMap<LLVMValueRef, u32> = HashMap::new();
    for e in &mut table {
        if e.flags & FUNCTION_DECORATED == 0 {
            continue;
        }
        // The twin is cloned first, so it has no redirect entry; its sites are the same
        // calls in the same order (the sampling code goes there, not into F).
        let twin = clone_profiled(e.f);
        let twin_calls = twin.map(ir::indirect_calls).unwrap_or_default();
        if let Some(t) = twin.filter(|_| twin_calls.len() == e.calls.len() && b.add_redirect_entry(e.f, slots_tmp, candidates, next_slot)) {
            slot_of.insert(e.f, next_slot);
            next_slot += 1;
            e.calls = twin_calls;
            e.prof = twin;
            // The checks go in while the twin is still an exact clone (block i and
            // instruction j of the twin are F's), before any sampling code.
            for (_, slot) in &mut e.points {
                *slot = next_osr;
                next_osr += 1;
            }
            b.add_osr_checks(t, &e.points, osr_tmp)?;
        } else {
            if let Some(c) = twin {
                // SAFETY: the twin was just made and nothing refers to it.
                unsafe { LLVMDeleteFunction(c) };
            }
            e.flags = (e.flags & !FUNCTION_DECORATED) | FUNCTION_NO_REDIRECT;
            e.calls.clear();
            e.points.clear();
        }
    }
    let first_osr_slot = next_slot;
    next_slot += next_osr;
    w.reserve_slots(next_slot);
    let defined: Vec<LLVMValueRef> = table.iter().map(|t| t.f).collect();
    let mut sites: Vec<(LLVMValueRef, u32)> = Vec::new();
    for Entry { f, flags, calls, prof, points } in &table {
        w.function(index[f], *flags, slot_of.get(f).copied().unwrap_or(NO_SLOT));
        for (p, slot) in points {
            let live: Vec<u32> = p.live.iter().map(|r| r.encode()).collect();
            w.osr_point(p.header, &live, first_osr_slot + slot, &p.sites);
        }
        if let Some(twin) = prof {
            // Its address goes after the globals' in the address table.
            let at = w.profiled_entry();
            debug_assert_eq!(at as usize, slots.len());
            slots.push(*twin);
        }
        for (ordinal, &call) in calls.iter().enumerate() {
            let mut sflags = 0;
            if ir::is_invoke(call) {
                sflags |= SITE_INVOKE;
            }
            if ir::call_is_vararg(call) {
                sflags |= SITE_VARARG;
            }
            let site = w.site(ordinal as u32, sflags);
            sites.push((call, site));
        }
    }
    let n_sites = w.site_count();
    let stats = Stats { functions: defined.len(), sites: n_sites as usize, globals: index.len(), blob_bytes: 0, osr_points: next_osr as usize };
    let blob = w.finish(&clean).map_err(|e| format!("compressing bitcode: {e}"))?;
    let stats = Stats { blob_bytes: blob.len(), ..stats };

    let runtime = b.runtime_area(n_sites, next_slot);
    b.move_slots(slots_tmp, runtime, n_sites, next_slot, 0);
    b.move_slots(osr_tmp, runtime, n_sites, next_slot, first_osr_slot);
    if !sites.is_empty() {
        let helper = b.profile_helper(runtime, b.runtime_type(n_sites, next_slot), b.thread_state());
        for &(call, site) in &sites {
            b.call_helper_before(helper, call, site);
        }
        run_passes(m, "always-inline")?;
        // The inliner usually deletes the helper once it is dead; drop it if it did not.
        let name = std::ffi::CString::new(PROFILE_HELPER).unwrap();
        // SAFETY: after the pass every call of the helper was inlined, so an existing
        // helper has no uses and can be deleted.
        unsafe {
            let left = LLVMGetNamedFunction(m, name.as_ptr());
            if !left.is_null() {
                LLVMDeleteFunction(left);
            }
        }
    }
    let blob_g = b.bytes_global("__drti_blob", &blob, 8);
    let addrs = b.address_table(&slots);
    let note = b.note(blob_g, addrs, runtime);
    b.append_used(note);
    ir::verify(m).map_err(|e| format!("decorated module does not verify: {e}"))?;
    Ok(stats)
}

/// Why `f`'s entry cannot forward its calls to an F+ with `musttail`, if it cannot.
fn redirect_blocker(f: LLVMValueRef) -> Option<String> {
    if ir::has_fn_attr(f, "naked") {
        return Some("naked function".into());
    }
    // C, fastcc, coldcc and the explicit SysV convention: the ones clang emits for
    // x86-64 C and C++ and that a musttail call through a pointer handles.
    // SAFETY: `f` is a live function.
    let cc = unsafe { LLVMGetFunctionCallConv(f) };
    if ![0, 8, 9, 78].contains(&cc) {
        return Some(format!("calling convention {cc}"));
    }
    // SAFETY: `f` is a live function; parameter indices are 1..=count.
    let n = unsafe { LLVMCountParams(f) };
    for i in 1..=n {
        // byval: LLVM 19's x86-64 musttail lowering copies a byval argument through a
        // temporary at the bottom of the frame, over the callee-saved registers it pushed
        // (seen here: a struct of 8 longs by value corrupted rbx/rbp of the caller).
        for attr in ["inalloca", "preallocated", "byval"] {
            // SAFETY: as above; a missing attribute reads as null.
            if unsafe { !LLVMGetEnumAttributeAtIndex(f, i, ir::enum_attr_kind(attr)).is_null() } {
                return Some(format!("{attr} parameter"));
            }
        }
    }
    None
}

/// Why `f` cannot have a profiled twin (a clone that behaves exactly as `f`), if it cannot:
/// its block addresses name `f`'s own blocks (computed goto, asm goto: the twin would jump
/// into `f`'s code with its own registers and frame), or its inline assembly defines
/// symbols, labels or sections (the twin would define them a second time). The JIT refuses
/// to copy such functions too, so nothing is lost by not profiling them.
fn clone_blocker(f: LLVMValueRef) -> Option<String> {
    // SAFETY: `f` is a live function; its uses, instructions and operands are only read.
    unsafe {
        let mut u = LLVMGetFirstUse(f);
        while !u.is_null() {
            if !LLVMIsABlockAddress(LLVMGetUser(u)).is_null() {
                return Some("its block addresses are taken".into());
            }
            u = LLVMGetNextUse(u);
        }
        for inst in ir::instructions(f) {
            match LLVMGetInstructionOpcode(inst) {
                llvm_sys::LLVMOpcode::LLVMIndirectBr => return Some("computed goto".into()),
                llvm_sys::LLVMOpcode::LLVMCallBr => return Some("asm goto".into()),
                llvm_sys::LLVMOpcode::LLVMCall | llvm_sys::LLVMOpcode::LLVMInvoke => {
                    let callee = LLVMGetCalledValue(inst);
                    if !LLVMIsAInlineAsm(callee).is_null() {
                        if let Some(why) = ir::asm_defines_symbols(&ir::inline_asm_text(callee)) {
                            return Some(why);
                        }
                    }
                }
                _ => {}
            }
            for i in 0..LLVMGetNumOperands(inst).max(0) as u32 {
                let op = LLVMGetOperand(inst, i);
                if !op.is_null() && !LLVMIsABlockAddress(op).is_null() {
                    return Some("it takes block addresses".into());
                }
            }
        }
    }
    None
}

/// Gives every unnamed global a name, so the clean bitcode can be bound by name.
fn name_anonymous_globals(m: LLVMModuleRef) {
    let all = ir::functions(m).into_iter().chain(ir::global_vars(m)).chain(ir::aliases(m));
    for (i, g) in all.enumerate() {
        if ir::name(g).is_empty() {
            ir::set_name(g, &format!("__drti_anon.{i}"));
        }
    }
}

/// Records every global value of the clean module in the global table; `slots[i]` is the
/// value whose address goes in slot `i` (null for thread-locals).
fn record_globals(m: LLVMModuleRef, w: &mut BlobWriter, slots: &mut Vec<LLVMValueRef>, index: &mut HashMap<LLVMValueRef, u32>) {
    let mut add = |w: &mut BlobWriter, g: LLVMValueRef, kind: u8, mut flags: u8| {
        let name = ir::name(g);
        if ir::is_llvm_reserved(&name) {
            return;
        }
        if !ir::is_declaration(g) {
            flags |= GLOBAL_DEFINED;
        }
        if ir::is_local(g) {
            flags |= GLOBAL_LOCAL;
        }
        let i = w.global(&name, kind, flags);
        slots.push(if flags & GLOBAL_TLS != 0 { std::ptr::null_mut() } else { g });
        index.insert(g, i);
    };
    for f in ir::functions(m) {
        add(w, f, GLOBAL_KIND_FUNCTION, 0);
    }
    for g in ir::global_vars(m) {
        if ir::section(g) == "llvm.metadata" {
            // Never emitted (annotation strings): code cannot refer to it, and taking its
            // address would leave an undefined symbol.
            continue;
        }
        let mut flags = 0;
        if ir::is_thread_local(g) {
            flags |= GLOBAL_TLS;
        }
        if ir::is_constant(g) {
            flags |= GLOBAL_CONSTANT;
        }
        add(w, g, GLOBAL_KIND_VARIABLE, flags);
    }
    for a in ir::aliases(m) {
        // An alias of a thread-local is itself thread-local; its address is per thread.
        // SAFETY: `a` is a live alias; its aliasee is inspected only.
        let tls = unsafe {
            let target = LLVMAliasGetAliasee(a);
            !LLVMIsAGlobalVariable(target).is_null() && ir::is_thread_local(target)
        };
        add(w, a, GLOBAL_KIND_ALIAS, if tls { GLOBAL_TLS } else { 0 });
    }
}

/// The module as bitcode bytes.
pub fn module_bitcode(m: LLVMModuleRef) -> Vec<u8> {
    // SAFETY: `m` is live; the buffer is copied and disposed of exactly once.
    unsafe {
        let buf = llvm_sys::bit_writer::LLVMWriteBitcodeToMemoryBuffer(m);
        let bytes = std::slice::from_raw_parts(LLVMGetBufferStart(buf).cast::<u8>(), LLVMGetBufferSize(buf)).to_vec();
        LLVMDisposeMemoryBuffer(buf);
        bytes
    }
}

/// Runs a new-pass-manager pipeline over `m`.
pub fn run_passes(m: LLVMModuleRef, pipeline: &str) -> Result<(), String> {
    let p = std::ffi::CString::new(pipeline).map_err(|e| e.to_string())?;
    // SAFETY: `m` is live; the options object is created and disposed here; a null target
    // machine is accepted by the pass builder for target-independent pipelines.
    unsafe {
        let opts = llvm_sys::transforms::pass_builder::LLVMCreatePassBuilderOptions();
        let err = llvm_sys::transforms::pass_builder::LLVMRunPasses(m, p.as_ptr(), std::ptr::null_mut(), opts);
        llvm_sys::transforms::pass_builder::LLVMDisposePassBuilderOptions(opts);
        if err.is_null() {
            Ok(())
        } else {
            Err(ir::take_message(llvm_sys::error::LLVMGetErrorMessage(err)))
        }
    }
}

/// IR construction for the decoration, over one module.
struct Builder {
    m: LLVMModuleRef,
    ctx: LLVMContextRef,
}

impl Builder {
    fn new(m: LLVMModuleRef) -> Builder {
        // SAFETY: `m` is live.
        Builder { m, ctx: unsafe { LLVMGetModuleContext(m) } }
    }

    fn ptr(&self) -> LLVMTypeRef {
        // SAFETY: the context is live.
        unsafe { LLVMPointerTypeInContext(self.ctx, 0) }
    }

    fn int(&self, bits: u32) -> LLVMTypeRef {
        // SAFETY: the context is live.
        unsafe { LLVMIntTypeInContext(self.ctx, bits) }
    }

    /// An internal global of `ty` with `init`.
    fn global(&self, name: &str, ty: LLVMTypeRef, init: LLVMValueRef, constant: bool, align: u32) -> LLVMValueRef {
        let cname = std::ffi::CString::new(name).unwrap();
        // SAFETY: module, type and initialiser are live and of matching types.
        unsafe {
            let g = LLVMAddGlobal(self.m, ty, cname.as_ptr());
            LLVMSetInitializer(g, init);
            LLVMSetLinkage(g, llvm_sys::LLVMLinkage::LLVMInternalLinkage);
            LLVMSetGlobalConstant(g, constant as i32);
            LLVMSetAlignment(g, align);
            g
        }
    }

    /// `{ hook, reserved, [n_sites x i32], [n_slots x ptr] }` (the i32 words are reserved
    /// since version 3): the natural (non-packed)
    /// layout puts the slots at the next 8-byte boundary, as `runtime_slots_offset` says.
    fn runtime_type(&self, n_sites: u32, n_slots: u32) -> LLVMTypeRef {
        // SAFETY: the context is live; element types are live.
        unsafe {
            let mut fields =
                [self.ptr(), self.int(64), LLVMArrayType2(self.int(32), n_sites as u64), LLVMArrayType2(self.ptr(), n_slots as u64)];
            LLVMStructTypeInContext(self.ctx, fields.as_mut_ptr(), 4, 0)
        }
    }

    /// The writable runtime area: hook pointer, reserved word, one reserved word per site,
    /// one redirect slot per redirectable function.
    fn runtime_area(&self, n_sites: u32, n_slots: u32) -> LLVMValueRef {
        let ty = self.runtime_type(n_sites, n_slots);
        // SAFETY: `ty` is live.
        let zero = unsafe { LLVMConstNull(ty) };
        self.global("__drti_runtime", ty, zero, false, 16)
    }

    /// `internal thread_local global { i32, i32, i32, i32 } zeroinitializer`: the thread's
    /// [`ThreadState`] for this object file. Its TLS model is left to the code generator,
    /// which picks local-exec in executables and local-dynamic in shared objects (so a
    /// dlopen'd object never needs static TLS space).
    fn thread_state(&self) -> LLVMValueRef {
        // SAFETY: the struct type and its null initialiser come from this context.
        unsafe {
            let mut fields = [self.int(32); 4];
            let ty = LLVMStructTypeInContext(self.ctx, fields.as_mut_ptr(), 4, 0);
            let g = self.global("__drti_tls", ty, LLVMConstNull(ty), false, 16);
            LLVMSetThreadLocal(g, 1);
            g
        }
    }

    /// `internal void __drti_profile(ptr target, i32 site)`, always inlined at each site.
    fn profile_helper(&self, runtime: LLVMValueRef, runtime_ty: LLVMTypeRef, tls: LLVMValueRef) -> LLVMValueRef {
        let name = std::ffi::CString::new(PROFILE_HELPER).unwrap();
        // SAFETY: all values and types come from this module's context; the builder is
        // positioned on blocks of the function being built and disposed at the end.
        unsafe {
            let void = LLVMVoidTypeInContext(self.ctx);
            let mut params = [self.ptr(), self.int(32)];
            let fty = LLVMFunctionType(void, params.as_mut_ptr(), 2, 0);
            let f = LLVMAddFunction(self.m, name.as_ptr(), fty);
            LLVMSetLinkage(f, llvm_sys::LLVMLinkage::LLVMInternalLinkage);
            ir::add_fn_attr(f, "alwaysinline");
            ir::add_fn_attr(f, "nounwind");
            let target = LLVMGetParam(f, 0);
            let site = LLVMGetParam(f, 1);
            let entry = LLVMAppendBasicBlockInContext(self.ctx, f, c"entry".as_ptr());
            let count_bb = LLVMAppendBasicBlockInContext(self.ctx, f, c"count".as_ptr());
            let due_bb = LLVMAppendBasicBlockInContext(self.ctx, f, c"due".as_ptr());
            let hook_bb = LLVMAppendBasicBlockInContext(self.ctx, f, c"hook".as_ptr());
            let park_bb = LLVMAppendBasicBlockInContext(self.ctx, f, c"park".as_ptr());
            let done = LLVMAppendBasicBlockInContext(self.ctx, f, c"done".as_ptr());
            let b = LLVMCreateBuilderInContext(self.ctx);

            // Only F.prof has this code, and the agent points F's slot at F.prof only after
            // it published the hook: the hot path is the countdown alone. The countdown is
            // field 0 of the thread's state: plain accesses, since only this thread (and
            // its signal handlers, harmlessly) touches it.
            // The site's word of the runtime area: non-zero once the agent has decided about
            // the site's function, so an activation still running F.prof (a loop in `main`)
            // stops counting. A load and a branch, no store: nothing loop-carried.
            LLVMPositionBuilderAtEnd(b, entry);
            let mut idx = [LLVMConstInt(self.int(32), 0, 0), LLVMConstInt(self.int(32), 2, 0), site];
            let word = LLVMBuildInBoundsGEP2(b, runtime_ty, runtime, idx.as_mut_ptr(), 3, c"drti.site".as_ptr());
            let off = LLVMBuildLoad2(b, self.int(32), word, c"drti.off".as_ptr());
            LLVMSetOrdering(off, llvm_sys::LLVMAtomicOrdering::LLVMAtomicOrderingMonotonic);
            LLVMSetAlignment(off, 4);
            let on = LLVMBuildICmp(b, llvm_sys::LLVMIntPredicate::LLVMIntEQ, off, LLVMConstInt(self.int(32), 0, 0), c"".as_ptr());
            let br = LLVMBuildCondBr(b, on, count_bb, done);
            self.set_branch_weights(br, 1 << 20, 1);

            LLVMPositionBuilderAtEnd(b, count_bb);
            let c = LLVMBuildLoad2(b, self.int(32), tls, c"drti.countdown".as_ptr());
            LLVMSetAlignment(c, 16);
            let c1 = LLVMBuildSub(b, c, LLVMConstInt(self.int(32), 1, 0), c"".as_ptr());
            let st = LLVMBuildStore(b, c1, tls);
            LLVMSetAlignment(st, 16);
            let due = LLVMBuildICmp(b, llvm_sys::LLVMIntPredicate::LLVMIntSLT, c1, LLVMConstInt(self.int(32), 0, 0), c"".as_ptr());
            LLVMBuildCondBr(b, due, due_bb, done);

            LLVMPositionBuilderAtEnd(b, due_bb);
            let hook = LLVMBuildLoad2(b, self.ptr(), runtime, c"drti.hook".as_ptr());
            LLVMSetOrdering(hook, llvm_sys::LLVMAtomicOrdering::LLVMAtomicOrderingMonotonic);
            LLVMSetAlignment(hook, 8);
            let attached = LLVMBuildICmp(b, llvm_sys::LLVMIntPredicate::LLVMIntNE, hook, LLVMConstNull(self.ptr()), c"".as_ptr());
            LLVMBuildCondBr(b, attached, hook_bb, park_bb);

            LLVMPositionBuilderAtEnd(b, hook_bb);
            let mut hparams = [self.ptr(), self.int(32), self.ptr(), self.ptr()];
            let hty = LLVMFunctionType(void, hparams.as_mut_ptr(), 4, 0);
            let mut args = [runtime, site, target, tls];
            let call = LLVMBuildCall2(b, hty, hook, args.as_mut_ptr(), 4, c"".as_ptr());
            // `cold` tells codegen to lay the sampling call out of the hot path.
            let cold = LLVMCreateEnumAttribute(self.ctx, ir::enum_attr_kind("cold"), 0);
            LLVMAddCallSiteAttribute(call, llvm_sys::LLVMAttributeFunctionIndex, cold);
            LLVMBuildBr(b, done);

            // The module was detached (a fork child) while F's slot still names F.prof:
            // park the countdown so the next 2^31 calls do not come here again.
            LLVMPositionBuilderAtEnd(b, park_bb);
            let st = LLVMBuildStore(b, LLVMConstInt(self.int(32), i32::MAX as u64, 0), tls);
            LLVMSetAlignment(st, 16);
            LLVMBuildBr(b, done);

            LLVMPositionBuilderAtEnd(b, done);
            LLVMBuildRetVoid(b);
            LLVMDisposeBuilder(b);
            f
        }
    }

    /// A zeroed internal `[n x ptr]` the redirect entries load from until
    /// [`Self::move_slots`] points them at the runtime area.
    fn placeholder_slots(&self, n: u32) -> LLVMValueRef {
        // SAFETY: the array type and its null initialiser come from this context.
        unsafe {
            let ty = LLVMArrayType2(self.ptr(), n as u64);
            self.global("__drti_slots.tmp", ty, LLVMConstNull(ty), false, 8)
        }
    }

    /// Replaces the placeholder by the slot array of the runtime area from slot `first` on
    /// and deletes it.
    fn move_slots(&self, tmp: LLVMValueRef, runtime: LLVMValueRef, n_sites: u32, n_slots: u32, first: u32) {
        // SAFETY: `tmp` and `runtime` are live globals of this module; every use of `tmp`
        // indexes a slot below `n_slots - first` (unused candidates took no index), so
        // pointing the uses at slot `first` of field 3 of the runtime area (`[n_slots x ptr]`)
        // keeps every access in bounds. The placeholder has no uses left when it is deleted.
        unsafe {
            let mut idx = [LLVMConstInt(self.int(32), 0, 0), LLVMConstInt(self.int(32), 3, 0), LLVMConstInt(self.int(32), first as u64, 0)];
            let slots = LLVMConstInBoundsGEP2(self.runtime_type(n_sites, n_slots), runtime, idx.as_mut_ptr(), 3);
            LLVMReplaceAllUsesWith(tmp, slots);
            LLVMDeleteGlobal(tmp);
        }
    }

    /// Gives `f` its redirect entry:
    /// ```text
    /// drti.entry:  <f's static allocas>
    ///              %t = load atomic ptr, ptr @slots[k] acquire, align 8
    ///              br (%t != null), %drti.redirect, %old.entry   ; redirect unlikely
    /// drti.redirect: %r = musttail call <f's cc> <f's type> %t(<f's params, attributes>)
    ///                ret %r
    /// ```
    /// The static allocas move to the new entry block so they stay static (one frame of
    /// fixed size, no stack save/restore). If the verifier refuses the result, the change is
    /// undone and `false` returned: `f` keeps no slot.
    fn add_redirect_entry(&self, f: LLVMValueRef, slots: LLVMValueRef, n_slots: u32, k: u32) -> bool {
        use llvm_sys::analysis::{LLVMVerifierFailureAction, LLVMVerifyFunction};
        // SAFETY: `f` is a live definition of this module; blocks and instructions are
        // created in its context, allocas are moved between two blocks of `f` (the old entry
        // has no predecessors and the new one dominates it, so every use stays dominated),
        // and the undo path restores exactly the original blocks. The builder is disposed
        // at the end.
        unsafe {
            let old_entry = LLVMGetEntryBasicBlock(f);
            let entry = LLVMInsertBasicBlockInContext(self.ctx, old_entry, c"drti.entry".as_ptr());
            let redirect = LLVMAppendBasicBlockInContext(self.ctx, f, c"drti.redirect".as_ptr());
            let b = LLVMCreateBuilderInContext(self.ctx);
            let sp = llvm_sys::debuginfo::LLVMGetSubprogram(f);
            if !sp.is_null() {
                // The check belongs to the function's opening line (gdb, perf annotate).
                let line = llvm_sys::debuginfo::LLVMDISubprogramGetLine(sp);
                LLVMSetCurrentDebugLocation2(b, llvm_sys::debuginfo::LLVMDIBuilderCreateDebugLocation(self.ctx, line, 0, sp, std::ptr::null_mut()));
            }
            LLVMPositionBuilderAtEnd(b, entry);
            let mut moved = Vec::new();
            let mut i = LLVMGetFirstInstruction(old_entry);
            while !i.is_null() {
                let next = LLVMGetNextInstruction(i);
                if !LLVMIsAAllocaInst(i).is_null() && !LLVMIsAConstantInt(LLVMGetOperand(i, 0)).is_null() {
                    LLVMInstructionRemoveFromParent(i);
                    LLVMInsertIntoBuilder(b, i);
                    moved.push(i);
                }
                i = next;
            }
            let mut idx = [LLVMConstInt(self.int(64), 0, 0), LLVMConstInt(self.int(64), k as u64, 0)];
            let slot = LLVMConstInBoundsGEP2(LLVMArrayType2(self.ptr(), n_slots as u64), slots, idx.as_mut_ptr(), 2);
            let t = LLVMBuildLoad2(b, self.ptr(), slot, c"drti.fplus".as_ptr());
            // Acquire pairs with the agent's release store, so F+'s constants (written by
            // the JIT before the store) are visible; on x86-64 it is the same plain `mov` as
            // a monotonic load.
            LLVMSetOrdering(t, llvm_sys::LLVMAtomicOrdering::LLVMAtomicOrderingAcquire);
            LLVMSetAlignment(t, 8);
            let set = LLVMBuildICmp(b, llvm_sys::LLVMIntPredicate::LLVMIntNE, t, LLVMConstNull(self.ptr()), c"".as_ptr());
            let br = LLVMBuildCondBr(b, set, redirect, old_entry);
            self.set_branch_weights(br, 1, 1 << 20);

            LLVMPositionBuilderAtEnd(b, redirect);
            let fty = LLVMGlobalGetValueType(f);
            let mut args: Vec<LLVMValueRef> = (0..LLVMCountParams(f)).map(|i| LLVMGetParam(f, i)).collect();
            let call = LLVMBuildCall2(b, fty, t, args.as_mut_ptr(), args.len() as u32, c"".as_ptr());
            LLVMSetInstructionCallConv(call, LLVMGetFunctionCallConv(f));
            // Return and parameter attributes (sret, byval, signext, ...) must match for a
            // musttail call, and F+ was compiled with the same ones.
            for at in 0..=args.len() as u32 {
                let n = LLVMGetAttributeCountAtIndex(f, at);
                let mut attrs = vec![std::ptr::null_mut(); n as usize];
                LLVMGetAttributesAtIndex(f, at, attrs.as_mut_ptr());
                for a in attrs {
                    LLVMAddCallSiteAttribute(call, at, a);
                }
            }
            LLVMSetTailCallKind(call, llvm_sys::LLVMTailCallKind::LLVMTailCallKindMustTail);
            if LLVMGetTypeKind(LLVMGetReturnType(fty)) == llvm_sys::LLVMTypeKind::LLVMVoidTypeKind {
                LLVMBuildRetVoid(b);
            } else {
                LLVMBuildRet(b, call);
            }
            LLVMDisposeBuilder(b);

            let bad = LLVMVerifyFunction(f, LLVMVerifierFailureAction::LLVMReturnStatusAction) != 0;
            if bad {
                LLVMDeleteBasicBlock(redirect);
                let first = LLVMGetFirstInstruction(old_entry);
                let b = LLVMCreateBuilderInContext(self.ctx);
                for &a in &moved {
                    LLVMInstructionRemoveFromParent(a);
                    LLVMPositionBuilderBefore(b, first);
                    LLVMInsertIntoBuilder(b, a);
                }
                LLVMDisposeBuilder(b);
                LLVMDeleteBasicBlock(entry);
            }
            !bad
        }
    }

    /// Adds the OSR checks of `points` (of the clean F, whose exact clone `twin` is) to the
    /// twin; each loads OSR slot `k` (its index among the OSR slots) from `slots`. An error
    /// if the twin then does not verify (the module is then not decorated).
    fn add_osr_checks(&self, twin: LLVMValueRef, points: &[(OsrPoint, u32)], slots: LLVMValueRef) -> Result<(), String> {
        use llvm_sys::analysis::{LLVMVerifierFailureAction, LLVMVerifyFunction};
        if points.is_empty() {
            return Ok(());
        }
        // Every position is resolved before the first check adds blocks and instructions.
        let insts = ir::instructions(twin);
        let mut at = Vec::with_capacity(points.len());
        for (p, k) in points {
            let h = osr::block_at(twin, p.header);
            let live: Option<Vec<LLVMValueRef>> = p
                .live
                .iter()
                .map(|&r| match r {
                    osr::LiveRef::Arg(_) => osr::live_value(twin, r),
                    osr::LiveRef::Inst(j) => insts.get(j as usize).copied(),
                })
                .collect();
            match (h, live) {
                (Some(h), Some(live)) => at.push((h, live, *k)),
                _ => return Err(format!("{}: OSR point at block {} not found in its twin", ir::name(twin), p.header)),
            }
        }
        for (h, live, k) in at {
            self.add_osr_check(twin, h, &live, slots, k);
        }
        // SAFETY: `twin` is a live function; the verifier only reads it.
        if unsafe { LLVMVerifyFunction(twin, LLVMVerifierFailureAction::LLVMReturnStatusAction) } != 0 {
            return Err(format!("{} with OSR checks does not verify", ir::name(twin)));
        }
        Ok(())
    }

    /// One OSR check at the head of loop header `h` (after its PHIs):
    /// ```text
    /// h:          <PHIs>
    ///             %t = load atomic ptr, ptr @osr_slots[k] acquire, align 8
    ///             br (%t != null), %drti.osr, %drti.loop    ; armed unlikely
    /// drti.osr:   %r = call <F's return type> %t(<live values>)
    ///             ret %r                                    ; ret void for a void F
    /// drti.loop:  <the rest of h>
    /// ```
    /// A plain call: an exception out of the continuation is one that would have left F.
    fn add_osr_check(&self, twin: LLVMValueRef, h: LLVMBasicBlockRef, live: &[LLVMValueRef], slots: LLVMValueRef, k: u32) {
        // SAFETY: `twin` is a live definition of this module and `h` one of its blocks, not
        // an EH pad (the analysis excludes those), so it has a first non-PHI instruction;
        // `live` are values of `twin` that dominate that instruction (arguments, H's PHIs,
        // instructions of blocks strictly dominating H). The split leaves `h` ending in an
        // unconditional branch, replaced here by the check; the builder is disposed at the end.
        unsafe {
            let mut first = LLVMGetFirstInstruction(h);
            while !first.is_null() && !LLVMIsAPHINode(first).is_null() {
                first = LLVMGetNextInstruction(first);
            }
            let cont = drti_split_block_before(first, c"drti.loop".as_ptr());
            LLVMInstructionEraseFromParent(LLVMGetBasicBlockTerminator(h));
            let armed = LLVMAppendBasicBlockInContext(self.ctx, twin, c"drti.osr".as_ptr());
            let b = LLVMCreateBuilderInContext(self.ctx);
            LLVMSetCurrentDebugLocation2(b, llvm_sys::debuginfo::LLVMInstructionGetDebugLoc(first));
            LLVMPositionBuilderAtEnd(b, h);
            let mut idx = [LLVMConstInt(self.int(64), k as u64, 0)];
            let slot = LLVMConstInBoundsGEP2(self.ptr(), slots, idx.as_mut_ptr(), 1);
            let t = LLVMBuildLoad2(b, self.ptr(), slot, c"drti.osr.fc".as_ptr());
            // Acquire pairs with the agent's release store, as at the redirect entry: the
            // continuation's constants are visible before it is called (a plain `mov` on
            // x86-64 either way).
            LLVMSetOrdering(t, llvm_sys::LLVMAtomicOrdering::LLVMAtomicOrderingAcquire);
            LLVMSetAlignment(t, 8);
            let set = LLVMBuildICmp(b, llvm_sys::LLVMIntPredicate::LLVMIntNE, t, LLVMConstNull(self.ptr()), c"".as_ptr());
            let br = LLVMBuildCondBr(b, set, armed, cont);
            self.set_branch_weights(br, 1, 1 << 20);

            LLVMPositionBuilderAtEnd(b, armed);
            let ret = LLVMGetReturnType(LLVMGlobalGetValueType(twin));
            let mut params: Vec<LLVMTypeRef> = live.iter().map(|&v| LLVMTypeOf(v)).collect();
            let fty = LLVMFunctionType(ret, params.as_mut_ptr(), params.len() as u32, 0);
            let mut args = live.to_vec();
            let call = LLVMBuildCall2(b, fty, t, args.as_mut_ptr(), args.len() as u32, c"".as_ptr());
            if LLVMGetTypeKind(ret) == llvm_sys::LLVMTypeKind::LLVMVoidTypeKind {
                LLVMBuildRetVoid(b);
            } else {
                LLVMBuildRet(b, call);
            }
            LLVMDisposeBuilder(b);
        }
    }

    /// `!prof !{"branch_weights", taken, not_taken}` on a conditional branch.
    fn set_branch_weights(&self, br: LLVMValueRef, taken: u32, not_taken: u32) {
        // SAFETY: metadata is created in this context and attached to a live branch.
        unsafe {
            let kind = LLVMGetMDKindIDInContext(self.ctx, c"prof".as_ptr(), 4);
            let mut ops = [
                LLVMMDStringInContext2(self.ctx, c"branch_weights".as_ptr(), 14),
                LLVMValueAsMetadata(LLVMConstInt(self.int(32), taken as u64, 0)),
                LLVMValueAsMetadata(LLVMConstInt(self.int(32), not_taken as u64, 0)),
            ];
            let node = LLVMMDNodeInContext2(self.ctx, ops.as_mut_ptr(), ops.len());
            LLVMSetMetadata(br, kind, LLVMMetadataAsValue(self.ctx, node));
        }
    }

    /// Inserts `call @__drti_profile(callee, site)` right before the call site.
    fn call_helper_before(&self, helper: LLVMValueRef, call: LLVMValueRef, site: u32) {
        // SAFETY: `call` is a live call/invoke of this module; the builder is positioned
        // before it and disposed here. The debug location is copied from the call so the
        // inlined code keeps a valid location in functions with debug info.
        unsafe {
            let b = LLVMCreateBuilderInContext(self.ctx);
            LLVMPositionBuilderBefore(b, call);
            LLVMSetCurrentDebugLocation2(b, llvm_sys::debuginfo::LLVMInstructionGetDebugLoc(call));
            let mut args = [ir::called_value(call), LLVMConstInt(self.int(32), site as u64, 0)];
            LLVMBuildCall2(b, LLVMGlobalGetValueType(helper), helper, args.as_mut_ptr(), 2, c"".as_ptr());
            LLVMDisposeBuilder(b);
        }
    }

    /// An internal constant byte array.
    fn bytes_global(&self, name: &str, bytes: &[u8], align: u32) -> LLVMValueRef {
        // SAFETY: LLVM copies `bytes`; the array type matches the initialiser.
        unsafe {
            let init = LLVMConstStringInContext2(self.ctx, bytes.as_ptr().cast(), bytes.len(), 1);
            self.global(name, LLVMTypeOf(init), init, true, align)
        }
    }

    /// `[n x ptr]` of the globals' run-time addresses (null for thread-locals).
    fn address_table(&self, slots: &[LLVMValueRef]) -> LLVMValueRef {
        // SAFETY: every slot is a live global of this module or null.
        unsafe {
            let mut vals: Vec<LLVMValueRef> =
                slots.iter().map(|&g| if g.is_null() { LLVMConstNull(self.ptr()) } else { g }).collect();
            let init = LLVMConstArray2(self.ptr(), vals.as_mut_ptr(), vals.len() as u64);
            self.global("__drti_addrs", LLVMTypeOf(init), init, true, 8)
        }
    }

    /// The `.note.drti` note: header, name, and three offsets relative to the note itself.
    fn note(&self, blob: LLVMValueRef, addrs: LLVMValueRef, runtime: LLVMValueRef) -> LLVMValueRef {
        // SAFETY: constants are built in this module's context; the note global is created
        // first with a placeholder so the offsets can refer to its own address.
        unsafe {
            let i32t = self.int(32);
            let i64t = self.int(64);
            let name_ty = LLVMArrayType2(self.int(8), 8);
            let mut fields = [i32t, i32t, i32t, name_ty, i64t, i64t, i64t];
            let ty = LLVMStructTypeInContext(self.ctx, fields.as_mut_ptr(), fields.len() as u32, 1);
            let g = self.global("__drti_note", ty, LLVMConstNull(ty), true, 4);
            let base = LLVMConstPtrToInt(g, i64t);
            let rel = |target: LLVMValueRef| LLVMConstSub(LLVMConstPtrToInt(target, i64t), base);
            let mut name = *b"drti\0\0\0\0";
            let name_c = LLVMConstStringInContext2(self.ctx, name.as_mut_ptr().cast(), 8, 1);
            let mut vals = [
                LLVMConstInt(i32t, (NOTE_NAME.len() + 1) as u64, 0),
                LLVMConstInt(i32t, NOTE_DESC_SIZE as u64, 0),
                LLVMConstInt(i32t, NOTE_TYPE as u64, 0),
                name_c,
                rel(blob),
                rel(addrs),
                rel(runtime),
            ];
            LLVMSetInitializer(g, LLVMConstStructInContext(self.ctx, vals.as_mut_ptr(), vals.len() as u32, 1));
            let section = std::ffi::CString::new(NOTE_SECTION).unwrap();
            LLVMSetSection(g, section.as_ptr());
            g
        }
    }

    /// Adds `g` to `llvm.used` so no pass or the code generator drops it.
    fn append_used(&self, g: LLVMValueRef) {
        // SAFETY: `llvm.used`, if present, is an array of pointers; it is rebuilt with the
        // same elements plus `g` and the old global is deleted after its elements were read.
        unsafe {
            let mut elems = Vec::new();
            let old = LLVMGetNamedGlobal(self.m, c"llvm.used".as_ptr());
            if !old.is_null() {
                let init = LLVMGetInitializer(old);
                for i in 0..LLVMGetNumOperands(init).max(0) as u32 {
                    elems.push(LLVMGetOperand(init, i));
                }
                LLVMDeleteGlobal(old);
            }
            elems.push(g);
            let init = LLVMConstArray2(self.ptr(), elems.as_mut_ptr(), elems.len() as u64);
            let used = LLVMAddGlobal(self.m, LLVMTypeOf(init), c"llvm.used".as_ptr());
            LLVMSetInitializer(used, init);
            LLVMSetLinkage(used, llvm_sys::LLVMLinkage::LLVMAppendingLinkage);
            LLVMSetSection(used, c"llvm.metadata".as_ptr());
        }
    }
}
