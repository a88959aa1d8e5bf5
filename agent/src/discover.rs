//! Finding decorated modules in the process: `dl_iterate_phdr` lists every loaded object
//! with its program headers; drti notes in their PT_NOTE segments locate the metadata,
//! which the bitcode-embed reader validates before anything is trusted. Called at start-up
//! and after every dlopen/dlclose (see `preload`).

use bitcode_embed::format::{
    runtime_slots_offset, RuntimeAreaHeader, FUNCTION_NO_REDIRECT, FUNCTION_PATCHABLE, FUNCTION_SKIPPED, GLOBAL_KIND_FUNCTION, GLOBAL_TLS, NO_SLOT,
};
use bitcode_embed::image::{find_modules, Segments};
use bitcode_embed::Blob;
use std::collections::HashMap;

/// One loaded object as `dl_iterate_phdr` reports it.
pub struct LoadedObject {
    /// Path (the main program's is resolved from /proc/self/exe).
    pub path: String,
    /// Load bias.
    pub base: u64,
    /// PT_LOAD ranges `(start, size)`.
    pub loads: Vec<(u64, u64)>,
    /// PT_NOTE ranges `(start, size)`.
    pub notes: Vec<(u64, u64)>,
}

/// Every object currently loaded in the process.
pub fn loaded_objects() -> Vec<LoadedObject> {
    unsafe extern "C" fn each(info: *mut libc::dl_phdr_info, _size: usize, data: *mut libc::c_void) -> libc::c_int {
        // SAFETY: the loader passes a valid info structure whose phdr array has
        // dlpi_phnum entries, and `data` is the Vec passed below, used on this thread only.
        unsafe {
            let out = &mut *(data as *mut Vec<LoadedObject>);
            let info = &*info;
            let name = if info.dlpi_name.is_null() { String::new() } else { std::ffi::CStr::from_ptr(info.dlpi_name).to_string_lossy().into_owned() };
            let mut obj = LoadedObject { path: name, base: info.dlpi_addr, loads: Vec::new(), notes: Vec::new() };
            for i in 0..info.dlpi_phnum as usize {
                let ph = &*info.dlpi_phdr.add(i);
                let start = info.dlpi_addr.wrapping_add(ph.p_vaddr);
                match ph.p_type {
                    libc::PT_LOAD => obj.loads.push((start, ph.p_memsz)),
                    libc::PT_NOTE => obj.notes.push((start, ph.p_memsz)),
                    _ => {}
                }
            }
            out.push(obj);
        }
        0
    }
    let mut out: Vec<LoadedObject> = Vec::new();
    // SAFETY: `each` only touches `out` through the data pointer during this call.
    unsafe { libc::dl_iterate_phdr(Some(each), (&mut out as *mut Vec<LoadedObject>).cast()) };
    if let Some(first) = out.first_mut() {
        if first.path.is_empty() {
            first.path = std::fs::read_link("/proc/self/exe").map(|p| p.to_string_lossy().into_owned()).unwrap_or_else(|_| "<main program>".into());
        }
    }
    out
}

/// A decorated module of a loaded object.
pub struct Module {
    /// The object's path.
    pub path: String,
    /// Load bias of the object (identifies it together with the note address).
    pub base: u64,
    /// Address of the drti note.
    pub note_addr: u64,
    /// The validated metadata, borrowed from `copy` (a copy taken at attach, so the agent
    /// never reads the object's memory for it after a dlclose began). Its references
    /// live as long as this Module: copy what must outlive it.
    pub blob: Blob<'static>,
    /// The address table, `n_addrs` slots (globals, then profiled entries), copied at attach (final by then: the
    /// loader relocates it before the object's code can run).
    pub addrs: Box<[u64]>,
    /// Owner of the bytes `blob` borrows.
    _copy: Box<[u8]>,
    /// The runtime area (hook pointer, counters, redirect slots).
    pub runtime: *mut RuntimeAreaHeader,
    /// Defined, non-skipped functions by run-time address → function index.
    pub function_at: HashMap<u64, u32>,
    /// The object's PT_LOAD ranges `(start, size)`: a profiled entry must lie in them.
    owns_code: Vec<(u64, u64)>,
}

// SAFETY: the raw pointer names memory of the loaded object that is only written through
// atomics (hook) or racy-by-design counters; the registry is shared under a lock.
unsafe impl Send for Module {}

impl Module {
    /// Run-time address of global `i` (0 for thread-locals or out of range).
    pub fn global_address(&self, i: u32) -> u64 {
        self.addrs.get(i as usize).copied().unwrap_or(0)
    }

    /// Run-time address of function `f`.
    pub fn function_address(&self, f: u32) -> u64 {
        self.blob.function(f).map(|r| self.global_address(r.global)).unwrap_or(0)
    }

    /// Address of function `f`'s redirect slot (8 bytes in the runtime area; storing an
    /// F+ there sends F's calls to it, see `patch`), if it has one.
    pub fn redirect_slot(&self, f: u32) -> Option<u64> {
        let r = self.blob.function(f)?;
        // The reader checked that a flagged slot is below n_slots and that image::load
        // found the whole area inside the module.
        (r.flags & FUNCTION_PATCHABLE != 0 && r.slot != NO_SLOT)
            .then(|| self.runtime as u64 + runtime_slots_offset(self.blob.header().n_sites) + r.slot as u64 * 8)
    }

    /// Address of the OSR slot of index `slot` (`OsrRecord::slot`: the redirect-slot array
    /// holds the points' slots after the functions'), if it is inside the area.
    pub fn osr_slot(&self, slot: u32) -> Option<u64> {
        (slot < self.blob.header().n_slots).then(|| self.runtime as u64 + runtime_slots_offset(self.blob.header().n_sites) + slot as u64 * 8)
    }

    /// F's OSR points (`crate::osr`), from the module's metadata.
    pub fn osr_points(&self, f: u32) -> Vec<crate::osr::Point> {
        self.blob
            .osr_points()
            .enumerate()
            .filter(|(_, r)| r.function == f)
            .map(|(i, r)| crate::osr::Point { index: i as u32, header: r.header, live: self.blob.osr_live(&r).collect(), slot: r.slot, sites: self.blob.osr_sites(&r).collect() })
            .collect()
    }

    /// Turns the sampling of function `f`'s sites off (`off`) or on in its profiled twin:
    /// one word per site in the runtime area, which F.prof reads before counting, so even
    /// an activation that never returns (a loop in `main`) stops paying once F is decided.
    ///
    /// # Safety
    /// The module's object must be mapped and not closing for the call (the agent thread
    /// calls it inside `lifecycle::touching`).
    pub unsafe fn set_sites_off(&self, f: u32, off: bool) {
        let Some(r) = self.blob.function(f) else { return };
        let n_sites = self.blob.header().n_sites;
        for s in r.first_site..(r.first_site + r.n_sites).min(n_sites) {
            // SAFETY: the object is mapped (the caller's contract); the area holds a 16-byte
            // header then `n_sites` i32 words (the reader and image::load checked the whole
            // area lies inside the object); `s` is
            // below n_sites, so the word is in bounds and 4-aligned. Decorated code reads
            // it with monotonic loads; an atomic store is the only write.
            let word = unsafe { &*((self.runtime as *mut u8).add(bitcode_embed::format::RUNTIME_SITES_OFFSET + s as usize * 4) as *const std::sync::atomic::AtomicU32) };
            word.store(off as u32, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Run-time address of function `f`'s profiled twin F.prof (the same function with
    /// sampling code at its sites, `bitcode_embed::format`, "Sampling"), if it has one and
    /// the loader resolved it inside this object.
    pub fn profiled_entry(&self, f: u32) -> Option<u64> {
        let r = self.blob.function(f)?;
        if r.profiled == bitcode_embed::format::NO_PROFILED || r.profiled < self.blob.header().n_globals {
            return None;
        }
        let addr = self.addrs.get(r.profiled as usize).copied().unwrap_or(0);
        (addr != 0 && self.owns_code.iter().any(|&(s, n)| addr >= s && addr < s + n)).then_some(addr)
    }

    /// Whether `addr` lies in this object's loaded segments (not an interposer elsewhere).
    fn owns(obj: &LoadedObject, addr: u64) -> bool {
        obj.loads.iter().any(|&(s, n)| addr >= s && addr < s + n)
    }
}

/// Validates the drti notes of `obj`: the modules found, and one warning per bad one.
pub fn modules_of(obj: &LoadedObject) -> (Vec<Module>, Vec<String>) {
    let mut space = Segments::default();
    for &(start, size) in &obj.loads {
        // SAFETY: PT_LOAD segments of a loaded object are mapped readable for memsz bytes
        // (the loader zero-fills beyond filesz), and stay mapped while the object is loaded.
        let bytes: &'static [u8] = unsafe { std::slice::from_raw_parts(start as *const u8, size as usize) };
        space.add(start, bytes, size);
    }
    let mut notes = Vec::new();
    for &(start, size) in &obj.notes {
        // SAFETY: PT_NOTE segments lie inside a PT_LOAD of the same object; checked by
        // `space` before use would be ideal, so only notes inside a load are read.
        if space.contains(start, size) {
            let bytes: &'static [u8] = unsafe { std::slice::from_raw_parts(start as *const u8, size as usize) };
            notes.push((start, bytes));
        }
    }
    let mut modules = Vec::new();
    let mut warnings = Vec::new();
    for found in find_modules(&space, &notes) {
        match found {
            Ok(m) => {
                let n = m.blob.header().n_addrs as usize;
                // SAFETY: find_modules checked the table lies inside a loaded segment;
                // slots are u64 written by the loader's relocations before our code runs.
                let addrs: Box<[u64]> = unsafe { std::slice::from_raw_parts(m.addrs_addr() as *const u64, n) }.into();
                let copy: Box<[u8]> = m.blob.bytes().into();
                // SAFETY: the heap bytes do not move when `copy` moves into the Module,
                // and the Module keeps them alive as long as `blob` (see its field doc).
                let bytes: &'static [u8] = unsafe { std::slice::from_raw_parts(copy.as_ptr(), copy.len()) };
                let Ok(blob) = Blob::parse(bytes) else { continue };
                let mut function_at = HashMap::new();
                for (i, f) in m.blob.functions().enumerate() {
                    if f.flags & FUNCTION_NO_REDIRECT != 0 {
                        tracing::info!(path = %obj.path, function = m.blob.function_name(i as u32), "no redirect slot (the instrumenter could not give its entry one): never compiled");
                    }
                    let g = m.blob.global(f.global).unwrap_or_default();
                    let addr = addrs[f.global as usize];
                    if f.flags & FUNCTION_SKIPPED == 0 && g.kind == GLOBAL_KIND_FUNCTION && g.flags & GLOBAL_TLS == 0 && Module::owns(obj, addr) {
                        function_at.insert(addr, i as u32);
                    }
                }
                modules.push(Module {
                    path: obj.path.clone(),
                    base: obj.base,
                    note_addr: m.note_addr,
                    blob,
                    addrs,
                    _copy: copy,
                    runtime: m.runtime_addr() as *mut RuntimeAreaHeader,
                    function_at,
                    owns_code: obj.loads.clone(),
                });
            }
            Err((addr, e)) => warnings.push(format!(
                "skipping drti module in {} (note at {addr:#x}): {e}; it runs unoptimised",
                obj.path
            )),
        }
    }
    (modules, warnings)
}

/// Load address of the main program (never unloaded).
pub fn main_program_base() -> Option<u64> {
    static BASE: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
    *BASE.get_or_init(|| loaded_objects().first().map(|o| o.base))
}

/// Whether any loaded object carries a drti note (cheap: headers only, read while the
/// loader holds its lock, so no object can be unmapped meanwhile).
pub fn any_drti_note() -> bool {
    unsafe extern "C" fn each(info: *mut libc::dl_phdr_info, _size: usize, data: *mut libc::c_void) -> libc::c_int {
        // SAFETY: the loader passes a valid info whose phdr array has dlpi_phnum entries;
        // PT_NOTE segments are mapped while the loader's lock is held (during this call);
        // `data` is the bool below.
        unsafe {
            let info = &*info;
            for i in 0..info.dlpi_phnum as usize {
                let ph = &*info.dlpi_phdr.add(i);
                if ph.p_type != libc::PT_NOTE {
                    continue;
                }
                let bytes = std::slice::from_raw_parts(info.dlpi_addr.wrapping_add(ph.p_vaddr) as *const u8, ph.p_memsz as usize);
                if has_drti_note(bytes) {
                    *(data as *mut bool) = true;
                    return 1;
                }
            }
        }
        0
    }
    let mut found = false;
    // SAFETY: `each` only writes `found` through the data pointer during this call.
    unsafe { libc::dl_iterate_phdr(Some(each), (&mut found as *mut bool).cast()) };
    found
}

/// Whether a PT_NOTE segment holds a note named drti of drti's type.
fn has_drti_note(mut b: &[u8]) -> bool {
    let word = |b: &[u8], i: usize| b.get(i..i + 4).map(|w| u32::from_le_bytes(w.try_into().unwrap()) as usize);
    let pad = |n: usize| (n + 3) & !3;
    while b.len() >= 12 {
        let (Some(namesz), Some(descsz), Some(ty)) = (word(b, 0), word(b, 4), word(b, 8)) else { return false };
        let name = b.get(12..12 + namesz).unwrap_or(&[]);
        if ty as u32 == bitcode_embed::format::NOTE_TYPE && name.strip_suffix(&[0]).unwrap_or(name) == bitcode_embed::format::NOTE_NAME {
            return true;
        }
        let next = 12 + pad(namesz) + pad(descsz);
        if next > b.len() {
            return false;
        }
        b = &b[next..];
    }
    false
}

/// The directory `libdrti_agent.so` was loaded from (where `drti-jitd` is installed).
pub fn agent_dir() -> Option<std::path::PathBuf> {
    let mut info = libc::Dl_info { dli_fname: std::ptr::null(), dli_fbase: std::ptr::null_mut(), dli_sname: std::ptr::null(), dli_saddr: std::ptr::null_mut() };
    // SAFETY: dladdr reads the loader's tables for an address inside this library.
    let ok = unsafe { libc::dladdr(agent_dir as *const libc::c_void, &mut info) };
    if ok == 0 || info.dli_fname.is_null() {
        return None;
    }
    // SAFETY: dli_fname is a NUL-terminated path owned by the loader.
    let path = unsafe { std::ffi::CStr::from_ptr(info.dli_fname) }.to_string_lossy().into_owned();
    std::path::Path::new(&path).parent().map(|p| p.to_path_buf())
}
