//! The on-disk / in-memory layout of drti metadata, version 5 (version 4 blobs, which have
//! no OSR points, are still read).
//!
//! # How the agent finds a decorated module
//! Every decorated object file carries one ELF note in a section named `.note.drti`
//! (SHT_NOTE, allocated, 4-byte aligned). The linker gathers notes into `PT_NOTE`
//! segments, which `dl_iterate_phdr` shows for the executable and for every shared
//! object, at start-up and after `dlopen`. The agent (and `drti inspect`, from the file)
//! walks those notes; each drti note locates one object file's metadata:
//!
//! ```text
//! note header: namesz = 5, descsz = 24, type = NOTE_TYPE, name = "drti\0" (padded to 8)
//! desc:        i64 blob_rel     blob address    - note address   (read-only metadata)
//!              i64 addrs_rel    address table   - note address   (u64 per global, relocated)
//!              i64 runtime_rel  runtime area    - note address   (writable, see RuntimeArea)
//! ```
//! All three offsets are link-time constants between local symbols, so the note needs no
//! dynamic relocation and reads the same from the file and from memory.
//!
//! # The blob
//! A self-contained byte string, every offset relative to its start:
//! `BlobHeader | FunctionRecord[n_functions] | SiteRecord[n_sites] | OsrRecord[n_osr]
//! | u32 osr_live[n_osr_live] | u32 osr_sites[n_osr_sites] | GlobalRecord[n_globals]
//! | strings | zstd(bitcode)`. It is written by [`crate::writer`] and validated by
//! [`crate::reader`] before anything in it is trusted.
//!
//! # The address table
//! `u64[n_addrs]`: first `n_globals` slots, the run-time address of every global the clean
//! bitcode references (functions, variables, aliases; internal ones included; thread-locals
//! excluded, their slot is 0), so a JIT binds each name to the program's own copy; then
//! (version 4) one slot per profiled entry ([`FunctionRecord::profiled`]), in function
//! order. The dynamic loader fills it. In the file, slots may be 0 (RELA addends live in
//! relocations).
//!
//! # The runtime area
//! Writable, zero at load: `hook` (null while no agent is attached), `reserved`, then one
//! `i32` word per call site at [`RUNTIME_SITES_OFFSET`] (0: F.prof samples the site; the
//! agent stores 1 once it has decided about the site's function, so an activation still in
//! F.prof stops counting), then (from the next 8-byte boundary, see
//! [`runtime_slots_offset`]) the 8-byte redirect slots: one per redirectable function, then
//! (version 5) one per OSR point ([`OsrRecord::slot`], same index space). Decorated
//! code only reads the runtime area, so no cache line of it is written by application threads.
//!
//! # Sampling (version 4: two versions of each redirectable function)
//! A redirectable function F (the symbol, [`FUNCTION_PATCHABLE`]) has NO sampling code: it
//! runs clang's code plus its redirect entry. Its profiled twin F.prof (an internal clone,
//! `<F>.drti.prof`, made before the redirect entry was added, so without one) has the
//! sampling code at the same sites (same site ids); its address is address-table slot
//! [`FunctionRecord::profiled`]. The agent turns profiling of F on by storing F.prof's
//! address in F's redirect slot (after it published the hook) and off by storing null (or
//! F+): a function the agent has decided about costs nothing at its sites.
//!
//! Each decorated object file also defines one internal thread-local [`ThreadState`]
//! (`__drti_tls`, zero in every new thread). F.prof at site `s` does
//! `c = tls.countdown - 1; tls.countdown = c; if c < 0 { h = hook; if h != null { h(area, s, target, &tls) } else { tls.countdown = i32::MAX } }`:
//! one countdown per thread and module over all of its sites, so the profiling path writes
//! only thread-private memory. The hook sets the next countdown ([`HookFn`]); a null hook
//! (a detached module whose slots still name F.prof, e.g. in a fork child) parks it.
//!
//! # Redirect slots (how the agent swaps in F+)
//! Every function that has profiled sites and can be redirected
//! ([`FUNCTION_PATCHABLE`], slot [`FunctionRecord::slot`]) begins with
//! `t = load atomic slots[k] (acquire); if t != null { musttail call t(args...) }`,
//! then its own body. The agent publishes a compiled F+ with one release store of its
//! address into the slot, re-points it with another store and reverts with a store of
//! F.prof's address (F is profiled again) or null (F runs unprofiled), see "Sampling":
//! no code is written, so threads running F need no signal, trap or core serialisation of
//! their own, whatever their signal mask. F+ has F's type, calling convention and parameter
//! attributes, and `musttail` leaves no frame of F behind (unwinding and varargs pass
//! through). A function with sites whose entry cannot be made so (see
//! [`FUNCTION_NO_REDIRECT`]) gets no slot and no profiled sites: the agent never compiles it.
//!
//! # OSR points (version 5: moving a running loop into compiled code)
//! A redirect slot only catches F's next call; an activation that never returns (a loop in
//! `main`) runs F.prof forever. So F.prof (never F: F stays clang's code) checks, at the head
//! of each loop with indirect calls ([`OsrRecord`], at most 8 per function), one more slot
//! of the runtime area: `t = load atomic osr_slot (acquire); if t != null { return t(live...) }`.
//! The agent stores a continuation compiled for that loop there; the activation moves into
//! it at its next iteration, handing over the values live at the loop header.

/// Name of the ELF note (and of the section that holds it).
pub const NOTE_NAME: &[u8] = b"drti";
/// Section the instrumenter puts each note in.
pub const NOTE_SECTION: &str = ".note.drti";
/// ELF note type of a drti note ("DRTI" read as a little-endian u32).
pub const NOTE_TYPE: u32 = u32::from_le_bytes(*b"DRTI");
/// Size of the note descriptor: three i64 relative offsets.
pub const NOTE_DESC_SIZE: usize = 24;
/// Size of a whole drti note: 12-byte header, 8-byte padded name, descriptor.
pub const NOTE_SIZE: usize = 12 + 8 + NOTE_DESC_SIZE;
/// Offset of the descriptor inside the note.
pub const NOTE_DESC_OFFSET: usize = 20;

/// First eight bytes of every blob.
pub const MAGIC: [u8; 8] = *b"DRTIMOD\0";
/// The metadata version this crate writes (and reads, with [`VERSION_V4`]).
pub const VERSION: u32 = 5;
/// The previous version, still read: the same layout without OSR points (its header ends
/// at [`BlobHeader::n_osr`], which was a reserved zero word, and has no OSR tables).
pub const VERSION_V4: u32 = 4;
/// Size of a version 4 header.
pub const HEADER_SIZE_V4: u32 = 128;

/// Upper bound on the decompressed bitcode a reader accepts (guards against zip bombs).
pub const MAX_BITCODE_RAW: u64 = 1 << 30;

/// Fixed header at the start of a blob.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlobHeader {
    /// [`MAGIC`].
    pub magic: [u8; 8],
    /// [`VERSION`].
    pub version: u32,
    /// `size_of::<BlobHeader>()` when written; lets later versions grow the header.
    pub header_size: u32,
    /// Total blob size in bytes, header included.
    pub total_size: u64,
    /// Number of [`FunctionRecord`]s.
    pub n_functions: u32,
    /// Number of [`SiteRecord`]s; also the number of per-site words in the runtime area.
    pub n_sites: u32,
    /// Number of [`GlobalRecord`]s; also the number of address-table slots.
    pub n_globals: u32,
    /// Reserved, zero.
    pub flags: u32,
    /// Offset of the function records.
    pub functions_off: u64,
    /// Offset of the site records.
    pub sites_off: u64,
    /// Offset of the global records.
    pub globals_off: u64,
    /// Offset of the string table (NUL-terminated UTF-8 strings).
    pub strings_off: u64,
    /// Size of the string table.
    pub strings_size: u64,
    /// Offset of the zstd-compressed bitcode.
    pub bitcode_off: u64,
    /// Size of the compressed bitcode.
    pub bitcode_size: u64,
    /// Size of the bitcode once decompressed.
    pub bitcode_raw_size: u64,
    /// FNV-1a hash of the raw bitcode: identifies the module in logs and dumps.
    pub bitcode_hash: u64,
    /// String offset of the source file name.
    pub source_name: u32,
    /// Number of redirect slots in the runtime area (see [`runtime_slots_offset`]).
    pub n_slots: u32,
    /// Number of address-table slots (version 4): `n_globals`, then one per profiled entry.
    pub n_addrs: u32,
    /// Number of [`OsrRecord`]s (version 5; a reserved zero word in version 4).
    pub n_osr: u32,
    /// Number of `u32` live refs in the OSR live table (version 5).
    pub n_osr_live: u32,
    /// Number of `u32` site ordinals in the OSR site table (version 5).
    pub n_osr_sites: u32,
    /// Offset of the OSR records (version 5).
    pub osr_off: u64,
    /// Offset of the OSR live table (version 5): `u32` live refs, see [`OSR_LIVE_ARG`].
    pub osr_live_off: u64,
    /// Offset of the OSR site table (version 5): `u32` site ordinals.
    pub osr_sites_off: u64,
}

/// One global value referenced by the clean bitcode; index `i` matches address slot `i`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GlobalRecord {
    /// String offset of the IR name.
    pub name: u32,
    /// One of the `GLOBAL_KIND_*` values.
    pub kind: u8,
    /// `GLOBAL_*` flag bits.
    pub flags: u8,
    /// Reserved, zero.
    pub reserved: u16,
}

/// [`GlobalRecord::kind`]: a function.
pub const GLOBAL_KIND_FUNCTION: u8 = 0;
/// [`GlobalRecord::kind`]: a global variable.
pub const GLOBAL_KIND_VARIABLE: u8 = 1;
/// [`GlobalRecord::kind`]: an alias.
pub const GLOBAL_KIND_ALIAS: u8 = 2;
/// Defined in this module (not a declaration).
pub const GLOBAL_DEFINED: u8 = 1;
/// Local linkage (internal / private): not reachable by name from outside.
pub const GLOBAL_LOCAL: u8 = 2;
/// Thread-local: no address slot (slot stays 0), code using it is not JIT-compiled.
pub const GLOBAL_TLS: u8 = 4;
/// A constant.
pub const GLOBAL_CONSTANT: u8 = 8;

/// One defined function of the module.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FunctionRecord {
    /// Index of the function's [`GlobalRecord`] (name and address slot).
    pub global: u32,
    /// Index of this function's first [`SiteRecord`].
    pub first_site: u32,
    /// Number of profiled call sites in this function.
    pub n_sites: u32,
    /// `FUNCTION_*` flag bits.
    pub flags: u32,
    /// Index of the function's redirect slot in the runtime area, or [`NO_SLOT`]. Set
    /// exactly when [`FUNCTION_PATCHABLE`] is.
    pub slot: u32,
    /// Address-table index (`>= n_globals`) of the function's profiled entry F.prof, or
    /// [`NO_PROFILED`]. Only a [`FUNCTION_PATCHABLE`] function with sites has one.
    pub profiled: u32,
}

/// [`FunctionRecord::profiled`] of a function without a profiled entry.
pub const NO_PROFILED: u32 = u32::MAX;

/// Suffix of a profiled twin's symbol name: F.prof is `<F>.drti.prof` (named so by the
/// decorator; `drti inspect` finds the twin's code size by it).
pub const PROFILED_SUFFIX: &str = ".drti.prof";

/// [`FunctionRecord::slot`] of a function without a redirect slot.
pub const NO_SLOT: u32 = u32::MAX;

/// The function's indirect call sites are profiled.
pub const FUNCTION_DECORATED: u32 = 1;
/// The user opted the function out (`DRTI_SKIP` or `annotate("drti_skip")`).
pub const FUNCTION_SKIPPED: u32 = 2;
/// The function's entry checks a redirect slot ([`FunctionRecord::slot`]): the agent may
/// send its calls to a compiled F+.
pub const FUNCTION_PATCHABLE: u32 = 4;
/// The function has indirect calls but its entry cannot forward to an F+ (`musttail` is
/// impossible: `inalloca`/`preallocated`/`byval` parameters, naked, an unusual calling
/// convention, or the verifier refused it), or it can have no profiled twin (block
/// addresses taken, computed or asm goto, inline assembly defining symbols or sections:
/// code the JIT refuses to copy as well): no slot, sites not profiled, never compiled.
pub const FUNCTION_NO_REDIRECT: u32 = 8;

/// One profiled indirect call site.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SiteRecord {
    /// Index of the containing [`FunctionRecord`].
    pub function: u32,
    /// Position among the function's indirect calls, in instruction order of the clean
    /// bitcode (the JIT finds the call again by this ordinal).
    pub ordinal: u32,
    /// `SITE_*` flag bits.
    pub flags: u32,
    /// Reserved, zero.
    pub reserved: u32,
}

/// The site is an `invoke` (C++ call that may throw into a landing pad).
pub const SITE_INVOKE: u32 = 1;
/// The callee type is variadic.
pub const SITE_VARARG: u32 = 2;

/// One OSR point (version 5): the header of a loop of a decorated function F that holds
/// indirect calls, where F's profiled twin checks slot [`OsrRecord::slot`] of the runtime
/// area at every iteration. While the slot is null the twin goes on; once the agent stores
/// the address of a continuation `Fc(live...) -> F's return type` (C calling convention, no
/// parameter or return attributes) there, the twin calls it with its copies of the live
/// values and returns what it returns. Points, their live sets and order are the rule of
/// `drti_llvm_ir::osr` on the clean bitcode; the JIT recomputes them from it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OsrRecord {
    /// Index of the [`FunctionRecord`] (a [`FUNCTION_PATCHABLE`] one with a profiled twin).
    pub function: u32,
    /// Index of the loop header in F's basic-block list (clean bitcode).
    pub header: u32,
    /// Index of the point's first live ref in the OSR live table.
    pub first_live: u32,
    /// Number of live refs (the continuation's parameters, in order).
    pub n_live: u32,
    /// Index of the point's OSR slot in the runtime area's slot array (after every
    /// function's redirect slot).
    pub slot: u32,
    /// Index of the point's first site ordinal in the OSR site table.
    pub first_site: u32,
    /// Number of F's sites inside the loop (ordinals, [`SiteRecord::ordinal`]).
    pub n_sites: u32,
}

/// Bit of an OSR live ref that marks F's parameter `ref & !OSR_LIVE_ARG`; without it the
/// ref is F's instruction of that index (every instruction of every block, in order).
pub const OSR_LIVE_ARG: u32 = 0x8000_0000;

/// Offset of the per-site words in the runtime area (after `hook` and `reserved`).
pub const RUNTIME_SITES_OFFSET: usize = 16;

/// Header of the writable runtime area; `n_sites` per-site `i32` words follow it.
#[repr(C)]
#[derive(Debug)]
pub struct RuntimeAreaHeader {
    /// `extern "C" fn(area: *mut RuntimeAreaHeader, site: u32, target: *const c_void)`,
    /// or null while no agent is attached.
    pub hook: core::sync::atomic::AtomicPtr<core::ffi::c_void>,
    /// Reserved, zero.
    pub reserved: u64,
}

/// Size of [`RuntimeAreaHeader`]; the per-site words start there.
pub const RUNTIME_COUNTERS_OFFSET: usize = core::mem::size_of::<RuntimeAreaHeader>();

/// Offset of the first redirect slot in a runtime area with `n_sites` per-site words (OSR
/// slots included, they follow the functions' slots): their end
/// rounded up to 8 (the slots are 8-byte aligned for single-copy atomicity).
pub const fn runtime_slots_offset(n_sites: u32) -> u64 {
    (RUNTIME_COUNTERS_OFFSET as u64 + n_sites as u64 * 4 + 7) & !7
}

/// Size of a runtime area with `n_sites` per-site words and `n_slots` redirect slots.
pub const fn runtime_area_size(n_sites: u32, n_slots: u32) -> u64 {
    runtime_slots_offset(n_sites) + n_slots as u64 * 8
}

/// Signature of the agent's sampling hook: `state` is the calling thread's [`ThreadState`]
/// of the module whose runtime area is `area`; its countdown has just gone negative at
/// site `site`, whose call is about to go to `target`. The hook must leave a countdown
/// `>= 0` in `state` (else every following call would call it again).
pub type HookFn =
    unsafe extern "C" fn(area: *mut RuntimeAreaHeader, site: u32, target: *const core::ffi::c_void, state: *mut ThreadState);

/// Per thread and decorated object file (`__drti_tls`, thread-local, zero in a new thread):
/// decorated code decrements `countdown` at every profiled call and calls the hook when it
/// goes negative; the other fields belong to the hook.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ThreadState {
    /// Profiled calls left before the next hook call, minus one.
    pub countdown: i32,
    /// The value `countdown` was last set to by the hook: the running countdown stands for
    /// `reset + 1` calls (zero in a new thread: the first call is a sample of weight 1).
    pub reset: i32,
    /// The hook's random state for this thread (0: not seeded yet).
    pub rng: u32,
    /// The hook's: a coarse clock in milliseconds at this thread's previous sample of the
    /// module (0: none yet), so a sample says over how long its calls were made.
    pub reserved: u32,
}

/// Size of [`ThreadState`] (the instrumenter builds it as `{ i32, i32, i32, i32 }`).
pub const THREAD_STATE_SIZE: usize = core::mem::size_of::<ThreadState>();

/// FNV-1a, 64 bit: the bitcode hash of [`BlobHeader::bitcode_hash`].
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The three offsets of a drti note descriptor, relative to the note's first byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NoteDesc {
    /// Blob address minus note address.
    pub blob_rel: i64,
    /// Address table minus note address.
    pub addrs_rel: i64,
    /// Runtime area minus note address.
    pub runtime_rel: i64,
}

impl NoteDesc {
    /// Decodes a descriptor; `None` unless exactly [`NOTE_DESC_SIZE`] bytes.
    pub fn parse(desc: &[u8]) -> Option<NoteDesc> {
        if desc.len() != NOTE_DESC_SIZE {
            return None;
        }
        let word = |i: usize| i64::from_le_bytes(desc[i * 8..i * 8 + 8].try_into().unwrap());
        Some(NoteDesc { blob_rel: word(0), addrs_rel: word(1), runtime_rel: word(2) })
    }

    /// Encodes the descriptor (used by tests and tools that fabricate notes).
    pub fn to_bytes(&self) -> [u8; NOTE_DESC_SIZE] {
        let mut out = [0u8; NOTE_DESC_SIZE];
        out[0..8].copy_from_slice(&self.blob_rel.to_le_bytes());
        out[8..16].copy_from_slice(&self.addrs_rel.to_le_bytes());
        out[16..24].copy_from_slice(&self.runtime_rel.to_le_bytes());
        out
    }
}

/// Walks the ELF notes in `data` (the bytes of a PT_NOTE segment or SHT_NOTE section,
/// 4-byte aligned entries) and returns `(offset of note start, descriptor)` for each drti
/// note. Malformed notes end the walk; nothing is read out of bounds.
pub fn drti_notes(data: &[u8]) -> Vec<(usize, NoteDesc)> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    let align4 = |n: usize| n.checked_add(3).map(|v| v & !3);
    while pos + 12 <= data.len() {
        let rd = |i: usize| u32::from_le_bytes(data[pos + i..pos + i + 4].try_into().unwrap()) as usize;
        let (namesz, descsz, ntype) = (rd(0), rd(4), rd(8) as u32);
        let Some(name_end) = align4(namesz).and_then(|n| (pos + 12).checked_add(n)) else { break };
        let Some(desc_end) = align4(descsz).and_then(|n| name_end.checked_add(n)) else { break };
        if desc_end > data.len() || name_end - (align4(namesz).unwrap()) + namesz > data.len() {
            break;
        }
        let name = &data[pos + 12..pos + 12 + namesz];
        let name = name.strip_suffix(&[0]).unwrap_or(name);
        if ntype == NOTE_TYPE && name == NOTE_NAME {
            if let Some(desc) = NoteDesc::parse(&data[name_end..name_end + descsz]) {
                out.push((pos, desc));
            }
        }
        pos = desc_end;
    }
    out
}
