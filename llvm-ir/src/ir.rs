//! Small, read-mostly helpers over the LLVM C API shared by the decorator and the JIT.
//!
//! All raw LLVM calls that both sides need live here, so the rule that decides which
//! calls are "indirect call sites", and in what order they are numbered, exists once:
//! the instrumenter numbers sites with [`indirect_calls`] on the clean module and the JIT
//! finds the same call again with the same function on the same bitcode.
//!
//! Every function takes raw `LLVMValueRef`/`LLVMModuleRef` handles that the caller got
//! from a live module; they are only valid while that module (and its context) lives.

// The functions here take raw LLVM handles (`LLVMValueRef`, `LLVMModuleRef`) that callers
// obtained from a live module; that is the contract of this module, stated above, rather
// than `unsafe` on every helper.
#![allow(clippy::not_unsafe_ptr_arg_deref)]

use llvm_sys::core::*;
use llvm_sys::prelude::*;
use llvm_sys::LLVMOpcode;
use std::ffi::CStr;

/// The IR name of a value ("" when unnamed).
pub fn name(v: LLVMValueRef) -> String {
    let mut len = 0usize;
    // SAFETY: `v` is a live value; LLVM returns a pointer to `len` bytes owned by the value.
    unsafe {
        let p = LLVMGetValueName2(v, &mut len);
        if p.is_null() {
            return String::new();
        }
        String::from_utf8_lossy(std::slice::from_raw_parts(p.cast::<u8>(), len)).into_owned()
    }
}

/// Renames a value.
pub fn set_name(v: LLVMValueRef, new: &str) {
    // SAFETY: `v` is live; LLVM copies the `new.len()` bytes.
    unsafe { LLVMSetValueName2(v, new.as_ptr().cast(), new.len()) }
}

/// Walks an LLVM intrusive list given its first element and a "next" function.
fn walk(first: LLVMValueRef, next: unsafe extern "C" fn(LLVMValueRef) -> LLVMValueRef) -> Vec<LLVMValueRef> {
    let mut out = Vec::new();
    let mut cur = first;
    while !cur.is_null() {
        out.push(cur);
        // SAFETY: `cur` is a live element of the list; `next` returns null at the end.
        cur = unsafe { next(cur) };
    }
    out
}

/// All functions of a module (definitions and declarations), in module order.
pub fn functions(m: LLVMModuleRef) -> Vec<LLVMValueRef> {
    // SAFETY: `m` is a live module.
    walk(unsafe { LLVMGetFirstFunction(m) }, LLVMGetNextFunction)
}

/// All global variables of a module, in module order.
pub fn global_vars(m: LLVMModuleRef) -> Vec<LLVMValueRef> {
    // SAFETY: `m` is a live module.
    walk(unsafe { LLVMGetFirstGlobal(m) }, LLVMGetNextGlobal)
}

/// All aliases of a module, in module order.
pub fn aliases(m: LLVMModuleRef) -> Vec<LLVMValueRef> {
    // SAFETY: `m` is a live module.
    walk(unsafe { LLVMGetFirstGlobalAlias(m) }, LLVMGetNextGlobalAlias)
}

/// All ifuncs of a module.
pub fn ifuncs(m: LLVMModuleRef) -> Vec<LLVMValueRef> {
    // SAFETY: `m` is a live module.
    walk(unsafe { LLVMGetFirstGlobalIFunc(m) }, LLVMGetNextGlobalIFunc)
}

/// Whether a global value is only a declaration.
pub fn is_declaration(g: LLVMValueRef) -> bool {
    // SAFETY: `g` is a live global value.
    unsafe { LLVMIsDeclaration(g) != 0 }
}

/// Whether a global has local (internal or private) linkage.
pub fn is_local(g: LLVMValueRef) -> bool {
    use llvm_sys::LLVMLinkage::*;
    // SAFETY: `g` is a live global value.
    matches!(unsafe { LLVMGetLinkage(g) }, LLVMInternalLinkage | LLVMPrivateLinkage)
}

/// Whether a global variable is thread-local.
pub fn is_thread_local(g: LLVMValueRef) -> bool {
    // SAFETY: `g` is a live global variable.
    unsafe { LLVMIsThreadLocal(g) != 0 }
}

/// The explicit section of a global ("" when none).
pub fn section(g: LLVMValueRef) -> String {
    // SAFETY: `g` is a live global; the returned string (if any) belongs to it.
    unsafe {
        let p = LLVMGetSection(g);
        if p.is_null() {
            String::new()
        } else {
            CStr::from_ptr(p).to_string_lossy().into_owned()
        }
    }
}

/// Whether a global variable is constant.
pub fn is_constant(g: LLVMValueRef) -> bool {
    // SAFETY: `g` is a live global variable.
    unsafe { LLVMIsGlobalConstant(g) != 0 }
}

/// Whether the name is reserved for LLVM (intrinsics, `llvm.used`, ...).
pub fn is_llvm_reserved(name: &str) -> bool {
    name.starts_with("llvm.")
}

/// The instructions of a function, block by block, in order.
pub fn instructions(f: LLVMValueRef) -> Vec<LLVMValueRef> {
    let mut out = Vec::new();
    // SAFETY: `f` is a live function; blocks and instructions are walked with LLVM's own
    // iterators, which return null at the end.
    unsafe {
        let mut bb = LLVMGetFirstBasicBlock(f);
        while !bb.is_null() {
            let mut i = LLVMGetFirstInstruction(bb);
            while !i.is_null() {
                out.push(i);
                i = LLVMGetNextInstruction(i);
            }
            bb = LLVMGetNextBasicBlock(bb);
        }
    }
    out
}

/// Whether `inst` is a call or invoke whose callee is a run-time value (function pointer,
/// virtual call): not a function, alias or other constant, not inline assembly.
pub fn is_indirect_call(inst: LLVMValueRef) -> bool {
    // SAFETY: `inst` is a live instruction; the called value is only inspected.
    unsafe {
        let op = LLVMGetInstructionOpcode(inst);
        if op != LLVMOpcode::LLVMCall && op != LLVMOpcode::LLVMInvoke {
            return false;
        }
        let callee = LLVMGetCalledValue(inst);
        LLVMIsAConstant(callee).is_null() && LLVMIsAInlineAsm(callee).is_null()
    }
}

/// The indirect call sites of a function in instruction order: index = site ordinal.
pub fn indirect_calls(f: LLVMValueRef) -> Vec<LLVMValueRef> {
    instructions(f).into_iter().filter(|&i| is_indirect_call(i)).collect()
}

/// Whether `inst` is an invoke.
pub fn is_invoke(inst: LLVMValueRef) -> bool {
    // SAFETY: `inst` is a live instruction.
    unsafe { LLVMGetInstructionOpcode(inst) == LLVMOpcode::LLVMInvoke }
}

/// The called value of a call or invoke.
pub fn called_value(inst: LLVMValueRef) -> LLVMValueRef {
    // SAFETY: `inst` is a live call or invoke.
    unsafe { LLVMGetCalledValue(inst) }
}

/// Whether the function type of a call is variadic.
pub fn call_is_vararg(inst: LLVMValueRef) -> bool {
    // SAFETY: `inst` is a live call or invoke.
    unsafe { LLVMIsFunctionVarArg(LLVMGetCalledFunctionType(inst)) != 0 }
}

/// A string function attribute, if present.
pub fn string_fn_attr(f: LLVMValueRef, key: &str) -> Option<String> {
    // SAFETY: `f` is a live function; the attribute (if any) owns the returned bytes,
    // which are copied before returning.
    unsafe {
        let a = LLVMGetStringAttributeAtIndex(f, llvm_sys::LLVMAttributeFunctionIndex, key.as_ptr().cast(), key.len() as u32);
        if a.is_null() {
            return None;
        }
        let mut len = 0u32;
        let p = LLVMGetStringAttributeValue(a, &mut len);
        Some(String::from_utf8_lossy(std::slice::from_raw_parts(p.cast::<u8>(), len as usize)).into_owned())
    }
}

/// Adds a string function attribute `key=value`.
pub fn add_string_fn_attr(f: LLVMValueRef, key: &str, value: &str) {
    // SAFETY: `f` is live; LLVM copies key and value into the context.
    unsafe {
        let ctx = LLVMGetTypeContext(LLVMTypeOf(f));
        let a = LLVMCreateStringAttribute(ctx, key.as_ptr().cast(), key.len() as u32, value.as_ptr().cast(), value.len() as u32);
        LLVMAddAttributeAtIndex(f, llvm_sys::LLVMAttributeFunctionIndex, a);
    }
}

/// The kind id of an enum attribute name (`noinline`, `naked`, ...).
pub fn enum_attr_kind(attr: &str) -> u32 {
    // SAFETY: reads `attr.len()` bytes of a Rust string.
    unsafe { LLVMGetEnumAttributeKindForName(attr.as_ptr().cast(), attr.len()) }
}

/// Whether a function has an enum attribute (`naked`, `noinline`, ...).
pub fn has_fn_attr(f: LLVMValueRef, attr: &str) -> bool {
    // SAFETY: `f` is a live function.
    unsafe { !LLVMGetEnumAttributeAtIndex(f, llvm_sys::LLVMAttributeFunctionIndex, enum_attr_kind(attr)).is_null() }
}

/// Removes an enum function attribute if present.
pub fn remove_fn_attr(f: LLVMValueRef, attr: &str) {
    // SAFETY: `f` is a live function; removing an absent attribute is a no-op.
    unsafe { LLVMRemoveEnumAttributeAtIndex(f, llvm_sys::LLVMAttributeFunctionIndex, enum_attr_kind(attr)) }
}

/// Adds an enum function attribute without a value.
pub fn add_fn_attr(f: LLVMValueRef, attr: &str) {
    // SAFETY: `f` is live; the attribute is created in the function's own context.
    unsafe {
        let ctx = LLVMGetTypeContext(LLVMTypeOf(f));
        let a = LLVMCreateEnumAttribute(ctx, enum_attr_kind(attr), 0);
        LLVMAddAttributeAtIndex(f, llvm_sys::LLVMAttributeFunctionIndex, a);
    }
}

/// The contents of a constant C string global (annotation strings), if it is one.
pub fn const_string_of_global(g: LLVMValueRef) -> Option<String> {
    // SAFETY: `g` is a live value; only global variables with an initialiser that is a
    // constant data sequence are read, through LLVM's accessor, which reports the length.
    unsafe {
        if LLVMIsAGlobalVariable(g).is_null() {
            return None;
        }
        let init = LLVMGetInitializer(g);
        if init.is_null() || LLVMIsAConstantDataSequential(init).is_null() {
            return None;
        }
        let mut len = 0usize;
        let p = LLVMGetAsString(init, &mut len);
        if p.is_null() {
            return None;
        }
        let bytes = std::slice::from_raw_parts(p.cast::<u8>(), len);
        let bytes = bytes.split(|&b| b == 0).next().unwrap_or(bytes);
        Some(String::from_utf8_lossy(bytes).into_owned())
    }
}

/// The names of functions annotated `__attribute__((annotate(what)))`.
pub fn annotated_functions(m: LLVMModuleRef, what: &str) -> Vec<String> {
    let mut out = Vec::new();
    // SAFETY: `m` is live; `llvm.global.annotations` is an array of structs whose first
    // operand is the annotated value and second the annotation string; every operand
    // index is checked against the operand count before it is read.
    unsafe {
        let g = LLVMGetNamedGlobal(m, c"llvm.global.annotations".as_ptr());
        if g.is_null() {
            return out;
        }
        let arr = LLVMGetInitializer(g);
        if arr.is_null() {
            return out;
        }
        for i in 0..LLVMGetNumOperands(arr).max(0) as u32 {
            let entry = LLVMGetOperand(arr, i);
            if entry.is_null() || LLVMGetNumOperands(entry) < 2 {
                continue;
            }
            let target = LLVMGetOperand(entry, 0);
            let text = LLVMGetOperand(entry, 1);
            if const_string_of_global(text).as_deref() == Some(what) && !LLVMIsAFunction(target).is_null() {
                out.push(name(target));
            }
        }
    }
    out
}

/// Module-level error text from an LLVM message, freeing it.
pub fn take_message(msg: *mut std::ffi::c_char) -> String {
    if msg.is_null() {
        return String::new();
    }
    // SAFETY: `msg` is a NUL-terminated string allocated by LLVM, freed exactly once here.
    unsafe {
        let s = CStr::from_ptr(msg).to_string_lossy().into_owned();
        LLVMDisposeMessage(msg);
        s
    }
}

/// Runs the IR verifier over `m`; the error is the verifier's report (the caller says
/// which module it was).
pub fn verify(m: LLVMModuleRef) -> Result<(), String> {
    let mut msg = std::ptr::null_mut();
    // SAFETY: `m` is live; the message is freed by take_message.
    let bad = unsafe { llvm_sys::analysis::LLVMVerifyModule(m, llvm_sys::analysis::LLVMVerifierFailureAction::LLVMReturnStatusAction, &mut msg) };
    let text = take_message(msg);
    if bad != 0 {
        Err(text)
    } else {
        Ok(())
    }
}

/// The target triple of module `m` ("" when it has none).
pub fn module_triple(m: LLVMModuleRef) -> String {
    // SAFETY: `m` is live; the string is owned by the module and copied here.
    unsafe {
        let p = LLVMGetTarget(m);
        if p.is_null() {
            String::new()
        } else {
            CStr::from_ptr(p).to_string_lossy().into_owned()
        }
    }
}

/// Assembler directives that place code or data elsewhere or define symbols: a copy of a
/// function using them (a profiled twin, a JIT'd F+) would define them a second time.
const ASM_DIRECTIVES: &[&str] = &[
    ".section", ".pushsection", ".popsection", ".previous", ".subsection", ".text", ".data", ".bss", ".rodata", ".globl", ".global", ".weak",
    ".symver", ".set", ".equ", ".equiv", ".comm", ".lcomm", ".local", ".type", ".size", ".incbin", ".org",
];

/// The assembly text of inline-asm value `asm`.
pub fn inline_asm_text(asm: LLVMValueRef) -> String {
    // SAFETY: `asm` is a live inline-asm value; the string it returns is owned by it.
    asm_string(asm, |a, len| unsafe { LLVMGetInlineAsmAsmString(a, len) })
}

/// The constraint string of inline-asm value `asm`.
pub fn inline_asm_constraints(asm: LLVMValueRef) -> String {
    // SAFETY: as for `inline_asm_text`.
    asm_string(asm, |a, len| unsafe { LLVMGetInlineAsmConstraintString(a, len) })
}

/// A string of `asm` that `get` returns as (pointer, length), copied.
fn asm_string(asm: LLVMValueRef, get: impl FnOnce(LLVMValueRef, &mut usize) -> *const std::ffi::c_char) -> String {
    let mut len = 0;
    let p = get(asm, &mut len);
    if p.is_null() {
        return String::new();
    }
    // SAFETY: LLVM returned `len` valid bytes at `p`, owned by `asm`, which is live.
    String::from_utf8_lossy(unsafe { std::slice::from_raw_parts(p as *const u8, len) }).into_owned()
}

/// Whether inline-assembly `text` defines symbols, named labels or switches sections
/// (numeric local labels such as `1:` may be defined any number of times), and how.
pub fn asm_defines_symbols(text: &str) -> Option<String> {
    for stmt in text.split(['\n', ';']).map(str::trim) {
        if let Some(d) = ASM_DIRECTIVES.iter().find(|d| stmt.starts_with(*d) && stmt[d.len()..].chars().next().is_none_or(|c| c.is_whitespace() || c == ',')) {
            return Some(format!("inline assembly with {d}"));
        }
        if let Some(label) = stmt.split(':').next().filter(|l| stmt.contains(':') && !l.is_empty()) {
            let ident = label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'$');
            if ident && !label.bytes().all(|b| b.is_ascii_digit()) {
                return Some(format!("inline assembly defining label {label}"));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::asm_defines_symbols;

    #[test]
    fn assembly_a_twin_cannot_repeat_is_recognised() {
        // Fine to copy: plain instructions, numeric local labels, per-instance labels.
        assert_eq!(asm_defines_symbols("nop"), None);
        assert_eq!(asm_defines_symbols("1: dec %eax\n\tjnz 1b"), None);
        assert_eq!(asm_defines_symbols("lbl_%=: nop"), None);
        assert_eq!(asm_defines_symbols("movl %fs:0, %eax"), None);
        assert_eq!(asm_defines_symbols(""), None);
        // Not fine: a named label, a section switch, a symbol definition.
        assert!(asm_defines_symbols("my_label: nop").is_some());
        assert!(asm_defines_symbols(".pushsection .data\n.byte 1\n.popsection").is_some());
        assert!(asm_defines_symbols("nop; .globl foo").is_some());
        assert!(asm_defines_symbols(".set x, 1").is_some());
    }
}
