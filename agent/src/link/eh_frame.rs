//! Unwind registration: libgcc's unwinder (the one libstdc++ and Rust use here) finds
//! frames of code outside any loaded ELF module only through `__register_frame`. It takes
//! the start of a complete `.eh_frame` (CIEs and FDEs up to a zero terminator, which the
//! linker reserves after each section) and walks it lazily when an exception unwinds.

extern "C" {
    fn __register_frame(begin: *const u8);
    fn __deregister_frame(begin: *const u8);
}

/// A registered `.eh_frame`; deregistered on drop.
#[derive(Debug)]
pub struct Registration {
    begin: *const u8,
}

// SAFETY: the pointer is an address handed to libgcc, which locks its own tables.
unsafe impl Send for Registration {}

impl Registration {
    /// Register the `.eh_frame` at `begin`.
    ///
    /// # Safety
    /// `begin` must point at relocated, zero-terminated `.eh_frame` data whose FDEs
    /// describe code that stays mapped, and both must outlive the returned value.
    pub unsafe fn new(begin: *const u8) -> Registration {
        // SAFETY: guaranteed by the caller; libgcc keeps the pointer until deregistration.
        unsafe { __register_frame(begin) };
        Registration { begin }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        // SAFETY: `begin` was registered by `new` and is deregistered exactly once, while
        // the data is still mapped (the owner drops this before unmapping).
        unsafe { __deregister_frame(self.begin) };
    }
}
