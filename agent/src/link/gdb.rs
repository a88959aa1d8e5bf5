//! GDB's JIT interface: GDB puts a breakpoint on `__jit_debug_register_code` of every
//! objfile that defines it together with `__jit_debug_descriptor`, and on each hit reads
//! the in-memory object file of the descriptor's `relevant_entry`.
//!
//! The agent has its own descriptor (GDB 8.3+ handles one per objfile). Both symbols are
//! hidden, so they are never interposed: a static LLVM in the same binary (a test binary)
//! keeps its own (also hidden) descriptor under its own lock, and an application with its
//! own JIT keeps its own. This list is only touched under `LOCK`.
//!
//! The object given to GDB is a copy of the relocatable object whose section headers
//! carry the addresses the sections were loaded at (`sh_addr`), which is how GDB places
//! an ET_REL file's symbols and relocates its debug info.

use std::sync::Mutex;

#[repr(C)]
struct CodeEntry {
    next: *mut CodeEntry,
    prev: *mut CodeEntry,
    symfile_addr: *const u8,
    symfile_size: u64,
}

#[repr(C)]
struct Descriptor {
    version: u32,
    action_flag: u32,
    relevant_entry: *mut CodeEntry,
    first_entry: *mut CodeEntry,
}

const JIT_NOACTION: u32 = 0;
const JIT_REGISTER: u32 = 1;
const JIT_UNREGISTER: u32 = 2;

// The two symbols GDB looks up by name, defined in assembly so they can be hidden
// (a Rust `#[no_mangle]` item would be exported from the cdylib and could be interposed).
// Weak: a binary that links the agent's crate together with a static LLVM (tests of the
// compiler process) gets LLVM's definitions, of the same standard layout, instead of a
// duplicate-symbol error; the agent's cdylib has no other definition.
std::arch::global_asm!(
    ".pushsection .data.__jit_debug_descriptor,\"aw\",@progbits",
    ".p2align 3",
    ".weak __jit_debug_descriptor",
    ".hidden __jit_debug_descriptor",
    ".type __jit_debug_descriptor,@object",
    ".size __jit_debug_descriptor, 24",
    "__jit_debug_descriptor:",
    ".long 1",
    ".long 0",
    ".quad 0",
    ".quad 0",
    ".popsection",
    ".pushsection .text.__jit_debug_register_code,\"ax\",@progbits",
    ".weak __jit_debug_register_code",
    ".hidden __jit_debug_register_code",
    ".type __jit_debug_register_code,@function",
    "__jit_debug_register_code:",
    "ret",
    ".size __jit_debug_register_code, . - __jit_debug_register_code",
    ".popsection",
);

extern "C" {
    static mut __jit_debug_descriptor: Descriptor;
    fn __jit_debug_register_code();
}

static LOCK: Mutex<()> = Mutex::new(());

/// An object registered with GDB; unregistered on drop.
#[derive(Debug)]
pub struct Registration {
    entry: *mut CodeEntry,
    // Read by GDB through `entry.symfile_addr`; must stay put until unregistered.
    symfile: Box<[u8]>,
}

// SAFETY: the entry is only touched under LOCK; the symfile is owned plain memory.
unsafe impl Send for Registration {}

impl Registration {
    pub fn new(symfile: Vec<u8>) -> Registration {
        let symfile = symfile.into_boxed_slice();
        let entry = Box::into_raw(Box::new(CodeEntry {
            next: std::ptr::null_mut(),
            prev: std::ptr::null_mut(),
            symfile_addr: symfile.as_ptr(),
            symfile_size: symfile.len() as u64,
        }));
        let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
        // SAFETY: the descriptor and every entry on its list are only modified under LOCK;
        // `entry` is a fresh allocation that stays alive until `drop` unlinks it.
        unsafe {
            let d = &raw mut __jit_debug_descriptor;
            (*entry).next = (*d).first_entry;
            if !(*d).first_entry.is_null() {
                (*(*d).first_entry).prev = entry;
            }
            (*d).first_entry = entry;
            (*d).relevant_entry = entry;
            (*d).action_flag = JIT_REGISTER;
            __jit_debug_register_code();
            (*d).action_flag = JIT_NOACTION;
        }
        Registration { entry, symfile }
    }

    /// Whether our descriptor's list holds this entry (for tests).
    pub fn is_listed(&self) -> bool {
        is_listed(self.entry)
    }

    /// The object file GDB reads.
    pub fn symfile(&self) -> &[u8] {
        &self.symfile
    }
}

/// How many objects the agent has registered with GDB.
pub fn entries() -> usize {
    let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let mut n = 0;
    // SAFETY: the list is only modified under LOCK, which we hold; its entries are live.
    unsafe {
        let mut e = __jit_debug_descriptor.first_entry;
        while !e.is_null() {
            n += 1;
            e = (*e).next;
        }
    }
    n
}

fn is_listed(entry: *const CodeEntry) -> bool {
    let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    // SAFETY: the list is only modified under LOCK, which we hold; its entries are live.
    unsafe {
        let mut e = __jit_debug_descriptor.first_entry;
        while !e.is_null() {
            if std::ptr::eq(e, entry) {
                return true;
            }
            e = (*e).next;
        }
    }
    false
}

impl Drop for Registration {
    fn drop(&mut self) {
        let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
        // SAFETY: `entry` is on the list (linked by `new`, unlinked only here) and the list
        // is only modified under LOCK; after unlinking nothing refers to it, so it is freed.
        unsafe {
            let d = &raw mut __jit_debug_descriptor;
            let e = self.entry;
            if (*e).prev.is_null() {
                (*d).first_entry = (*e).next;
            } else {
                (*(*e).prev).next = (*e).next;
            }
            if !(*e).next.is_null() {
                (*(*e).next).prev = (*e).prev;
            }
            (*d).relevant_entry = e;
            (*d).action_flag = JIT_UNREGISTER;
            __jit_debug_register_code();
            (*d).action_flag = JIT_NOACTION;
            (*d).relevant_entry = std::ptr::null_mut();
            drop(Box::from_raw(e));
        }
    }
}
