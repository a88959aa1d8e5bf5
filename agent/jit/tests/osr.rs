//! OSR continuations (issue 13): the JIT compiles, from F's clean bitcode, a function that
//! takes the values live at the start of one of F's loop headers and finishes the
//! activation, with the hot targets inlined behind guards. Each test builds a C or C++
//! file twice with clang-19 (bitcode for the JIT; a shared library whose functions are
//! the program's), calls the continuation with the values an activation has at the
//! header after k iterations (computed by C helpers of the library), and compares with
//! what the original function returns.

mod common;

use bitcode_embed::jit_abi::*;
use llvm_sys::core::*;
use llvm_sys::prelude::*;
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;

/// A source built for the test: its bitcode (value names kept, so the test can name the
/// live values) and its functions as loaded code.
struct Built {
    bc: Vec<u8>,
    lib: *mut libc::c_void,
    /// Every global of the module the library defines, with its address.
    symbols: Vec<(String, u64)>,
}

impl Built {
    fn addr(&self, name: &str) -> u64 {
        self.symbols.iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("{name} is not in the library")).1
    }
}

/// Compiles `source` (C, or C++ when `cxx`) or None when clang-19 is not there.
fn build(tag: &str, source: &str, cxx: bool) -> Option<Built> {
    let dir: PathBuf = std::env::temp_dir().join(format!("drti-jit-osr-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join(if cxx { "m.cpp" } else { "m.c" });
    std::fs::write(&src, source).unwrap();
    let cc = if cxx { "clang++-19" } else { "clang-19" };
    let run = |args: &[&str]| Command::new(cc).args(args).current_dir(&dir).status().map(|s| s.success()).unwrap_or(false);
    let file = src.file_name().unwrap().to_str().unwrap().to_owned();
    if !run(&["-O2", "-fno-discard-value-names", "-emit-llvm", "-c", &file, "-o", "m.bc"]) || !run(&["-O2", "-fPIC", "-shared", &file, "-o", "libm.so"]) {
        return None;
    }
    let bc = std::fs::read(dir.join("m.bc")).unwrap();
    let path = std::ffi::CString::new(dir.join("libm.so").to_str().unwrap()).unwrap();
    // SAFETY: loads a library built above from a test source (no constructors of note).
    let lib = unsafe { libc::dlopen(path.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
    assert!(!lib.is_null(), "dlopen of the test library failed");
    let symbols = with_module(&bc, |m| {
        let mut out = Vec::new();
        // SAFETY: walks the globals of a live module; names are copied.
        unsafe {
            let mut g = LLVMGetFirstFunction(m);
            while !g.is_null() {
                out.push(name(g));
                g = LLVMGetNextFunction(g);
            }
            let mut g = LLVMGetFirstGlobal(m);
            while !g.is_null() {
                out.push(name(g));
                g = LLVMGetNextGlobal(g);
            }
        }
        out
    })
    .into_iter()
    .filter_map(|n| {
        let c = std::ffi::CString::new(n.clone()).ok()?;
        // SAFETY: `lib` is a live handle; dlsym only looks the name up.
        let a = unsafe { libc::dlsym(lib, c.as_ptr()) } as u64;
        (a != 0).then_some((n, a))
    })
    .collect();
    let _ = std::fs::remove_dir_all(&dir);
    Some(Built { bc, lib, symbols })
}

fn name(v: LLVMValueRef) -> String {
    let mut len = 0;
    // SAFETY: `v` is live; the name is copied out.
    unsafe { String::from_utf8_lossy(std::slice::from_raw_parts(LLVMGetValueName2(v, &mut len) as *const u8, len)).into_owned() }
}

/// Runs `f` on the module parsed from `bc` in a context of its own.
fn with_module<T>(bc: &[u8], f: impl FnOnce(LLVMModuleRef) -> T) -> T {
    // SAFETY: plain LLVM C API use on a context created and disposed here.
    unsafe {
        let ctx = LLVMContextCreate();
        let buf = LLVMCreateMemoryBufferWithMemoryRangeCopy(bc.as_ptr().cast(), bc.len(), c"bc".as_ptr());
        let mut m = std::ptr::null_mut();
        assert_eq!(llvm_sys::bit_reader::LLVMParseBitcodeInContext2(ctx, buf, &mut m), 0, "bitcode does not parse");
        LLVMDisposeMemoryBuffer(buf);
        let r = f(m);
        LLVMDisposeModule(m);
        LLVMContextDispose(ctx);
        r
    }
}

/// The point of `function` at block `header` with the live values named `live` (in
/// the order given), as a request encodes it.
fn point(bc: &[u8], function: &str, header: &str, live: &[&str]) -> (u32, Vec<u32>) {
    with_module(bc, |m| {
        let f = drti_llvm_ir::ir::functions(m).into_iter().find(|&f| name(f) == function).expect("function in the bitcode");
        let mut blocks = Vec::new();
        // SAFETY: walks the blocks of a live function.
        unsafe {
            let mut b = LLVMGetFirstBasicBlock(f);
            while !b.is_null() {
                blocks.push(name(LLVMBasicBlockAsValue(b)));
                b = LLVMGetNextBasicBlock(b);
            }
        }
        let h = blocks.iter().position(|b| b == header).unwrap_or_else(|| panic!("no block {header} in {blocks:?}")) as u32;
        // Unnamed values are numbered as LLVM prints them (%0, %1, ...; blocks are named).
        let mut by_name: HashMap<String, u32> = HashMap::new();
        let mut unnamed = 0;
        let mut add = |v: LLVMValueRef, code: u32| {
            let mut n = name(v);
            // SAFETY: `v` is a live value.
            if n.is_empty() && unsafe { LLVMGetTypeKind(LLVMTypeOf(v)) } != llvm_sys::LLVMTypeKind::LLVMVoidTypeKind {
                n = unnamed.to_string();
                unnamed += 1;
            }
            by_name.insert(n, code);
        };
        // SAFETY: `f` is live; its parameters are read by index.
        for i in 0..unsafe { LLVMCountParams(f) } {
            add(unsafe { LLVMGetParam(f, i) }, i | OSR_LIVE_ARG);
        }
        for (j, inst) in drti_llvm_ir::ir::instructions(f).into_iter().enumerate() {
            add(inst, j as u32);
        }
        (h, live.iter().map(|n| *by_name.get(*n).unwrap_or_else(|| panic!("no value %{n} in {function}"))).collect())
    })
}

/// Compiles the continuation of `function`'s point (`header`, `live`) with its site 0
/// guarding `targets` (names in the module).
fn compile(b: &Built, function: &str, header: u32, live: &[u32], targets: &[&str], misses: &mut u64) -> JitResult {
    compile_sites(b, function, header, live, &[(0, targets)], std::slice::from_mut(misses))
}

/// As [`compile`], with guarded sites (ordinal in F, targets) counting misses in `misses`.
fn compile_sites(b: &Built, function: &str, header: u32, live: &[u32], sites: &[(u32, &[&str])], misses: &mut [u64]) -> JitResult {
    common::init();
    let syms: Vec<JitSymbol> = b.symbols.iter().map(|(n, a)| JitSymbol { name: n.as_ptr(), name_len: n.len(), address: *a }).collect();
    let module = JitModule { bitcode: b.bc.as_ptr(), bitcode_len: b.bc.len(), symbols: syms.as_ptr(), n_symbols: syms.len() };
    let targets: Vec<Vec<JitTarget>> =
        sites.iter().map(|(_, ts)| ts.iter().map(|n| JitTarget { address: b.addr(n), module: 0, name: n.as_ptr(), name_len: n.len(), slot: std::ptr::null() }).collect()).collect();
    let sites: Vec<JitSite> = sites
        .iter()
        .zip(&targets)
        .zip(misses.iter_mut())
        .map(|(((ordinal, _), t), m)| JitSite { owner: JitOwner::F, ordinal: *ordinal, n_targets: t.len() as u32, targets: t.as_ptr(), miss_counter: m, site: 0, area: 0 })
        .collect();
    let req = JitRequest { osr_header: header, osr_live: live.as_ptr(), n_osr_live: live.len(), ..common::request(&module, function, &sites, &[]) };
    // SAFETY: the request points at locals of this function, alive until it returns.
    unsafe { common::run(&req) }
}

/// A function of the test library.
///
/// # Safety
/// `T` must be the function's type.
unsafe fn func<T: Copy>(b: &Built, name: &str) -> T {
    assert_eq!(std::mem::size_of::<T>(), 8);
    let a = b.addr(name);
    // SAFETY: per the function contract; `a` is the function's address in `b.lib`.
    unsafe { std::mem::transmute_copy(&(a as usize)) }
}

/// The code a compile produced.
///
/// # Safety
/// `T` must be the compiled function's type.
unsafe fn code<T: Copy>(res: &JitResult) -> T {
    assert_eq!(std::mem::size_of::<T>(), 8);
    assert_ne!(res.code, 0);
    // SAFETY: per the function contract.
    unsafe { std::mem::transmute_copy(&(res.code as usize)) }
}

fn read(counter: &u64) -> u64 {
    // SAFETY: a plain counter the JIT'd code bumps atomically on this thread.
    unsafe { std::ptr::read_volatile(counter) }
}

const LOOPS: &str = r#"
typedef long (*op_t)(long);
long twice(long x) { return 2 * x; }
long negate(long x) { return -x; }
long sum_loop(op_t f, const long *a, int n) {
  long s = 0;
  for (int i = 0; i < n; i++) s += f(a[i]);
  return s;
}
/* The call in an inner loop; the row base and the factor are recomputed per row. */
long grid(op_t f, const long *m, int rows, int cols) {
  long s = 0;
  for (int r = 0; r < rows; r++) {
    const long *row = m + (long)r * cols;
    long t = 0;
    for (int c = 0; c < cols; c++) t += f(row[c]) * (r + 1);
    s += t ^ r;
  }
  return s;
}
/* Site 0 before the loop, site 1 in it. */
long pre_loop(op_t g, op_t f, const long *a, int n) {
  long s = g(n);
  for (int i = 0; i < n; i++) s += f(a[i]);
  return s;
}
/* A stack array of F's frame used in the loop (a live alloca with lifetime markers). */
__attribute__((noinline)) void fill(long *b, int n) { for (int i = 0; i < n; i++) b[i] = i * i - 7; }
long with_buf(op_t f, int n) {
  long buf[64];
  fill(buf, 64);
  long s = 0;
  for (int i = 0; i < n; i++) s += f(buf[i & 63]);
  return s;
}
/* A variable-length array: no OSR points (a frame with dynamic allocas). */
long vla(op_t f, int n) {
  long buf[n];
  for (int i = 0; i < n; i++) buf[i] = f(i);
  long s = 0;
  for (int i = 0; i < n; i++) s += buf[i];
  return s;
}
/* What an activation of grid holds at the inner header in row r after c columns. */
long grid_t(op_t f, const long *m, int r, int cols, int c) {
  long t = 0;
  for (int k = 0; k < c; k++) t += f(m[(long)r * cols + k]) * (r + 1);
  return t;
}
"#;

type Op = extern "C" fn(i64) -> i64;
type SumLoop = extern "C" fn(Op, *const i64, i32) -> i64;
/// sum_loop's continuation at `for.body`: f, a, n (as i64), i, s.
type SumFc = extern "C" fn(Op, *const i64, i64, i64, i64) -> i64;

#[test]
fn a_loop_through_a_function_pointer_continues_at_iteration_37() {
    let Some(b) = build("sum", LOOPS, false) else {
        println!("skip: clang-19 cannot build the test library");
        return;
    };
    let (header, live) = point(&b.bc, "sum_loop", "for.body", &["f", "a", "wide.trip.count", "indvars.iv", "s.05"]);
    let mut misses = 0u64;
    let res = compile(&b, "sum_loop", header, &live, &["twice"], &mut misses);
    assert_eq!(res.ok, 1, "{}", res.error_text());
    // SAFETY: the types are the library's functions' and the continuation's.
    let (sum_loop, twice, negate, fc): (SumLoop, Op, Op, SumFc) = unsafe { (func(&b, "sum_loop"), func(&b, "twice"), func(&b, "negate"), code(&res)) };
    let a: Vec<i64> = (0..100).map(|k| k * 7 - 300).collect();
    // An activation after 37 of 100 iterations: i = 37, s = the sum of the first 37.
    let s37 = sum_loop(twice, a.as_ptr(), 37);
    let whole = sum_loop(twice, a.as_ptr(), 100);
    assert_eq!(fc(twice, a.as_ptr(), 100, 37, s37), whole);
    // The continuation starts where it is told: another running sum, another i.
    assert_eq!(fc(twice, a.as_ptr(), 100, 37, s37 + 1000), whole + 1000);
    assert_eq!(fc(twice, a.as_ptr(), 100, 99, 0), twice(a[99]));
    assert_eq!(read(&misses), 0, "the hot target took the inlined path");
    // Another target: the guard misses, the real call runs.
    let n37 = sum_loop(negate, a.as_ptr(), 37);
    assert_eq!(fc(negate, a.as_ptr(), 100, 37, n37), sum_loop(negate, a.as_ptr(), 100));
    assert_eq!(read(&misses), 63, "one miss per remaining iteration");
    let _ = b.lib;
}

type PreLoop = extern "C" fn(Op, Op, *const i64, i32) -> i64;

#[test]
fn sites_keep_their_ordinals_in_f_and_a_site_before_the_loop_is_left_out() {
    let Some(b) = build("pre", LOOPS, false) else {
        println!("skip: clang-19 cannot build the test library");
        return;
    };
    let (header, live) = point(&b.bc, "pre_loop", "for.body", &["f", "a", "wide.trip.count", "indvars.iv", "s.08"]);
    // Site 0 (g, before the loop) guards negate, site 1 (f, in the loop) twice.
    let mut misses = [0u64; 2];
    let res = compile_sites(&b, "pre_loop", header, &live, &[(0, &["negate"]), (1, &["twice"])], &mut misses);
    assert_eq!(res.ok, 1, "{}", res.error_text());
    // SAFETY: the types are the library's functions' and the continuation's.
    let (pre_loop, twice, negate, fc): (PreLoop, Op, Op, SumFc) = unsafe { (func(&b, "pre_loop"), func(&b, "twice"), func(&b, "negate"), code(&res)) };
    let a: Vec<i64> = (0..100).map(|k| 3 * k + 1).collect();
    // The activation ran g and 37 iterations of f.
    let s37 = pre_loop(negate, twice, a.as_ptr(), 37) - negate(37);
    let whole = pre_loop(negate, twice, a.as_ptr(), 100) - negate(100);
    assert_eq!(fc(twice, a.as_ptr(), 100, 37, s37 + negate(100)), whole + negate(100));
    assert_eq!(misses.map(|m| read(&m)), [0, 0], "the loop's call is site 1, guarded on twice");
    // From s = 0: the iterations 37..100 alone (g's result left out of both).
    let loop_sum = |n: i32| pre_loop(negate, negate, a.as_ptr(), n) - negate(n as i64);
    assert_eq!(fc(negate, a.as_ptr(), 100, 37, 0), loop_sum(100) - loop_sum(37));
    assert_eq!(misses.map(|m| read(&m)), [0, 63], "site 1 misses on negate; site 0 is not in the continuation");
}

type WithBuf = extern "C" fn(Op, i32) -> i64;
type Fill = extern "C" fn(*mut i64, i32);
/// with_buf's continuation: f, n, buf, i, s.
type WithBufFc = extern "C" fn(Op, i32, *mut i64, i32, i64) -> i64;

#[test]
fn a_stack_array_of_the_frame_is_handed_over_by_address() {
    let Some(b) = build("buf", LOOPS, false) else {
        println!("skip: clang-19 cannot build the test library");
        return;
    };
    let (header, live) = point(&b.bc, "with_buf", "for.body", &["f", "n", "buf", "i.06", "s.05"]);
    let mut misses = 0u64;
    let res = compile(&b, "with_buf", header, &live, &["twice"], &mut misses);
    assert_eq!(res.ok, 1, "{}", res.error_text());
    // SAFETY: the types are the library's functions' and the continuation's.
    let (with_buf, fill, twice, fc): (WithBuf, Fill, Op, WithBufFc) = unsafe { (func(&b, "with_buf"), func(&b, "fill"), func(&b, "twice"), code(&res)) };
    // The activation's array, as F's frame holds it, after 37 of 200 iterations.
    let mut buf = [0i64; 64];
    fill(buf.as_mut_ptr(), 64);
    let s37 = with_buf(twice, 37);
    assert_eq!(fc(twice, 200, buf.as_mut_ptr(), 37, s37), with_buf(twice, 200));
    assert_eq!(read(&misses), 0);
}

/// grid's continuation at the inner header `for.body6` (see the test for the names).
type GridFc = extern "C" fn(Op, *const i64, i64, bool, i64, i64, i64, i64, i64, *const i64, i64, i64, i64) -> i64;
type Grid = extern "C" fn(Op, *const i64, i32, i32) -> i64;
type GridT = extern "C" fn(Op, *const i64, i32, i32, i32) -> i64;

#[test]
fn an_inner_loop_continues_and_the_outer_loop_recomputes_its_values() {
    let Some(b) = build("grid", LOOPS, false) else {
        println!("skip: clang-19 cannot build the test library");
        return;
    };
    // Live at the inner header: the function pointer, the matrix, the outer loop's
    // invariants, its induction variable, sum, row offset, row base and factor (defined
    // in the outer loop: values the continuation must recompute for later rows), and the
    // inner loop's PHIs.
    let names = ["f", "m", "conv1", "cmp324", "wide.trip.count36", "wide.trip.count", "indvars.iv32", "s.029", "mul", "add.ptr", "0", "indvars.iv", "t.025"];
    let (header, live) = point(&b.bc, "grid", "for.body6", &names);
    let mut misses = 0u64;
    let res = compile(&b, "grid", header, &live, &["twice"], &mut misses);
    assert_eq!(res.ok, 1, "{}", res.error_text());
    // SAFETY: the types are the library's functions' and the continuation's.
    let (grid, grid_t, twice, fc): (Grid, GridT, Op, GridFc) = unsafe { (func(&b, "grid"), func(&b, "grid_t"), func(&b, "twice"), code(&res)) };
    let (rows, cols) = (5i64, 100i64);
    // Leaked: a continuation that never finishes keeps reading it.
    let m: &'static [i64] = Vec::leak((0..rows * cols).map(|k| (k * 13) % 97 - 40).collect());
    // Row 3, column 37: s holds rows 0-2, t the first 37 columns of row 3.
    let (r, c) = (3i64, 37i64);
    let s = grid(twice, m.as_ptr(), r as i32, cols as i32);
    let t = grid_t(twice, m.as_ptr(), r as i32, cols as i32, c as i32);
    // SAFETY: `r * cols` is inside `m`.
    let row = unsafe { m.as_ptr().add((r * cols) as usize) };
    // A continuation that kept row 3's values for later rows would never leave the outer
    // loop (its exit test compares r + 1): it runs on a thread of its own, with a limit.
    let (mp, rp) = (m.as_ptr() as usize, row as usize);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(fc(twice, mp as *const i64, cols, true, rows, cols, r, s, r * cols, rp as *const i64, r + 1, c, t)));
    let got = rx.recv_timeout(std::time::Duration::from_secs(20)).expect("the continuation did not finish");
    assert_eq!(got, grid(twice, m.as_ptr(), rows as i32, cols as i32));
    assert_eq!(read(&misses), 0);
}

const SHAPES: &str = r#"
struct Shape { virtual long area(long x) const; virtual ~Shape(); };
struct Square : Shape { long area(long x) const override; };
struct Triple : Shape { long area(long x) const override; };
struct Fussy : Shape { long limit; long area(long x) const override; };
struct Boom { long at; };
long Shape::area(long x) const { return 0; }
Shape::~Shape() {}
long Square::area(long x) const { return x * x; }
long Triple::area(long x) const { return 3 * x; }
long Fussy::area(long x) const { if (x >= limit) throw Boom{x}; return x + 1; }
extern "C" long total(Shape *const *v, int n) {
  long s = 0;
  for (int i = 0; i < n; i++) s += v[i]->area(i);
  return s;
}
/* The loop catches what its body throws. */
extern "C" long total_guarded(Shape *const *v, int n) {
  long s = 0;
  for (int i = 0; i < n; i++) {
    try { s += v[i]->area(i); } catch (const Boom &b) { s -= b.at; }
  }
  return s;
}
extern "C" Shape *make(int kind, long limit) {
  if (kind == 0) return new Square;
  if (kind == 1) return new Triple;
  Fussy *f = new Fussy;
  f->limit = limit;
  return f;
}
/* The callers: exceptions out of the loop land here. */
extern "C" long total_caught(Shape *const *v, int n) {
  try { return total(v, n); } catch (const Boom &b) { return -1000 - b.at; }
}
typedef long (*cont_t)(Shape *const *, long, long, long);
extern "C" long cont_caught(cont_t fc, Shape *const *v, long n, long i, long s) {
  try { return fc(v, n, i, s); } catch (const Boom &b) { return -1000 - b.at; }
}
"#;

type Make = extern "C" fn(i32, i64) -> *mut libc::c_void;
type Total = extern "C" fn(*const *mut libc::c_void, i32) -> i64;
/// total's continuation at `for.body`: v, n (as i64), i, s.
type TotalFc = extern "C" fn(*const *mut libc::c_void, i64, i64, i64) -> i64;
type ContCaught = extern "C" fn(TotalFc, *const *mut libc::c_void, i64, i64, i64) -> i64;

struct Shapes {
    b: Built,
    fc: TotalFc,
    misses: Box<u64>,
}

/// total's continuation at its loop header with `target` (a mangled `area`) inlined.
fn shapes(tag: &str, target: &str) -> Option<Shapes> {
    shapes_of(tag, "total", "s.06", target)
}

/// `function`'s continuation (live: v, n, i and the sum named `sum`) with `target` inlined.
fn shapes_of(tag: &str, function: &str, sum: &str, target: &str) -> Option<Shapes> {
    let b = build(tag, SHAPES, true)?;
    let (header, live) = point(&b.bc, function, "for.body", &["v", "wide.trip.count", "indvars.iv", sum]);
    let mut misses = Box::new(0u64);
    let res = compile(&b, function, header, &live, &[target], &mut misses);
    assert_eq!(res.ok, 1, "{}", res.error_text());
    // SAFETY: the continuation has TotalFc's type.
    let fc: TotalFc = unsafe { code(&res) };
    Some(Shapes { b, fc, misses })
}

#[test]
fn a_virtual_call_loop_continues_with_the_hot_override_inlined() {
    let Some(s) = shapes("virt", "_ZNK6Square4areaEl") else {
        println!("skip: clang++-19 cannot build the test library");
        return;
    };
    // SAFETY: the library's functions with their C types.
    let (make, total): (Make, Total) = unsafe { (func(&s.b, "make"), func(&s.b, "total")) };
    let squares: Vec<_> = (0..100).map(|_| make(0, 0)).collect();
    let s37 = total(squares.as_ptr(), 37);
    assert_eq!((s.fc)(squares.as_ptr(), 100, 37, s37), total(squares.as_ptr(), 100));
    assert_eq!(read(&s.misses), 0, "Square::area took the inlined path");
    // Every third shape another override: the guard misses there, only there.
    let mixed: Vec<_> = (0..100).map(|k| make(if k % 3 == 0 { 1 } else { 0 }, 0)).collect();
    let m37 = total(mixed.as_ptr(), 37);
    assert_eq!((s.fc)(mixed.as_ptr(), 100, 37, m37), total(mixed.as_ptr(), 100));
    assert_eq!(read(&s.misses), (37..100).filter(|k| k % 3 == 0).count() as u64);
}

#[test]
fn an_exception_thrown_in_the_continuation_reaches_the_callers_catch() {
    let Some(s) = shapes("throw", "_ZNK5Fussy4areaEl") else {
        println!("skip: clang++-19 cannot build the test library");
        return;
    };
    // SAFETY: the library's functions with their C types.
    let (make, total, total_caught, cont_caught): (Make, Total, Total, ContCaught) =
        unsafe { (func(&s.b, "make"), func(&s.b, "total"), func(&s.b, "total_caught"), func(&s.b, "cont_caught")) };
    // Fussy shapes throw at index 60 (inlined copy) ...
    let fussy: Vec<_> = (0..100).map(|_| make(2, 60)).collect();
    let s37 = total(fussy.as_ptr(), 37);
    assert_eq!(total_caught(fussy.as_ptr(), 100), -1060, "the original throws at 60");
    assert_eq!(cont_caught(s.fc, fussy.as_ptr(), 100, 37, s37), -1060);
    assert_eq!(read(&s.misses), 0);
    // ... and without a throw the continuation finishes the sum.
    assert_eq!(cont_caught(s.fc, fussy.as_ptr(), 50, 37, s37), total(fussy.as_ptr(), 50));
    // A Fussy shape behind a missed guard (a Square in between) throws from the real call.
    let mut mixed: Vec<_> = (0..100).map(|_| make(2, 70)).collect();
    mixed[69] = make(0, 0);
    let m37 = total(mixed.as_ptr(), 37);
    assert_eq!(cont_caught(s.fc, mixed.as_ptr(), 100, 37, m37), -1070);
    assert_eq!(read(&s.misses), 1);
}

#[test]
fn exceptions_in_the_continuation_land_in_the_loops_own_handler() {
    let Some(s) = shapes_of("catch", "total_guarded", "s.014", "_ZNK5Fussy4areaEl") else {
        println!("skip: clang++-19 cannot build the test library");
        return;
    };
    // SAFETY: the library's functions with their C types.
    let (make, total_guarded): (Make, Total) = unsafe { (func(&s.b, "make"), func(&s.b, "total_guarded")) };
    // Fussy shapes throw from index 60 on; the loop subtracts what they throw. One Square
    // (a guard miss) in between.
    let mut v: Vec<_> = (0..100).map(|_| make(2, 60)).collect();
    v[80] = make(0, 0);
    let s37 = total_guarded(v.as_ptr(), 37);
    assert_eq!((s.fc)(v.as_ptr(), 100, 37, s37), total_guarded(v.as_ptr(), 100));
    assert_eq!(read(&s.misses), 1);
}

#[test]
fn requests_that_do_not_name_a_point_of_the_function_are_rejected() {
    let Some(b) = build("reject", LOOPS, false) else {
        println!("skip: clang-19 cannot build the test library");
        return;
    };
    let (header, live) = point(&b.bc, "sum_loop", "for.body", &["f", "a", "wide.trip.count", "indvars.iv", "s.05"]);
    let mut misses = 0u64;
    let rejected = |h: u32, l: &[u32]| -> String {
        let mut misses = 0u64;
        let r = compile(&b, "sum_loop", h, l, &["twice"], &mut misses);
        assert_eq!((r.ok, r.rejected), (0, 1), "header {h} live {l:?}: {}", r.error_text());
        r.error_text()
    };
    // Not a loop header of sum_loop; its entry block.
    assert!(rejected(99, &live).contains("block 99 of sum_loop is not an OSR point"));
    assert!(rejected(0, &live).contains("not an OSR point"));
    // A live value too many, too few, out of range, named twice, in another order, or
    // void (the loop's branch): not the point's live set.
    let mismatch = |l: &[u32]| assert!(rejected(header, l).contains("the request names"), "{l:?}");
    let (_, exit) = point(&b.bc, "sum_loop", "for.body", &["exitcond.not"]);
    mismatch(&[&live[..], &exit[..]].concat());
    mismatch(&live[..4]);
    mismatch(&[&[OSR_LIVE_ARG | 7], &live[1..]].concat());
    mismatch(&[&[live[1]], &live[1..]].concat());
    mismatch(&[live[1], live[0], live[2], live[3], live[4]]);
    mismatch(&[live[0], live[1], live[2], live[3], exit[0] + 1]);
    // A function without a loop; one whose frame cannot be rebuilt.
    let (vh, vl) = point(&b.bc, "vla", "for.body", &["f"]);
    let r = compile(&b, "twice", 1, &[], &[], &mut misses);
    assert_eq!((r.ok, r.rejected), (0, 1), "{}", r.error_text());
    let r = compile(&b, "vla", vh, &vl, &["twice"], &mut misses);
    assert_eq!((r.ok, r.rejected), (0, 1), "{}", r.error_text());
    assert!(r.error_text().contains("vla has no OSR points"), "{}", r.error_text());
    // The point itself compiles.
    assert_eq!(compile(&b, "sum_loop", header, &live, &["twice"], &mut misses).ok, 1);
}
