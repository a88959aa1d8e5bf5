//! Builds a blob (see [`crate::format`]) for the instrumenter.

use crate::format::*;
use std::collections::HashMap;

/// Collects the records of one module, then lays them out with [`BlobWriter::finish`].
#[derive(Default)]
pub struct BlobWriter {
    functions: Vec<FunctionRecord>,
    sites: Vec<SiteRecord>,
    osr: Vec<OsrRecord>,
    osr_live: Vec<u32>,
    osr_sites: Vec<u32>,
    globals: Vec<GlobalRecord>,
    strings: Vec<u8>,
    interned: HashMap<String, u32>,
    source_name: u32,
    n_slots: u32,
    n_profiled: u32,
}

impl BlobWriter {
    /// A writer for the module compiled from `source_name`.
    pub fn new(source_name: &str) -> BlobWriter {
        let mut w = BlobWriter::default();
        w.source_name = w.string(source_name);
        w
    }

    /// Interns `s` and returns its offset in the string table.
    pub fn string(&mut self, s: &str) -> u32 {
        if let Some(&off) = self.interned.get(s) {
            return off;
        }
        let off = self.strings.len() as u32;
        // An IR name never contains NUL; if one does, cut there rather than corrupt the table.
        self.strings.extend_from_slice(s.split('\0').next().unwrap_or("").as_bytes());
        self.strings.push(0);
        self.interned.insert(s.to_owned(), off);
        off
    }

    /// Adds a global; returns its index (= its address-table slot).
    pub fn global(&mut self, name: &str, kind: u8, flags: u8) -> u32 {
        // Profiled entries take the address slots after the globals'.
        assert_eq!(self.n_profiled, 0, "global() after profiled_entry()");
        let name = self.string(name);
        self.globals.push(GlobalRecord { name, kind, flags, reserved: 0 });
        (self.globals.len() - 1) as u32
    }

    /// Adds a function whose global is `global`; its sites are added next with [`Self::site`].
    /// `slot` is its redirect slot or [`NO_SLOT`]; [`FUNCTION_PATCHABLE`] is set to match.
    pub fn function(&mut self, global: u32, flags: u32, slot: u32) -> u32 {
        let first_site = self.sites.len() as u32;
        let flags = if slot == NO_SLOT { flags & !FUNCTION_PATCHABLE } else { flags | FUNCTION_PATCHABLE };
        if slot != NO_SLOT {
            self.n_slots = self.n_slots.max(slot + 1);
        }
        self.functions.push(FunctionRecord { global, first_site, n_sites: 0, flags, slot, profiled: NO_PROFILED });
        (self.functions.len() - 1) as u32
    }

    /// Makes the runtime area hold at least `n` redirect slots (slots nobody uses are
    /// allowed: the instrumenter reserves one per candidate before it knows all succeed).
    pub fn reserve_slots(&mut self, n: u32) {
        self.n_slots = self.n_slots.max(n);
    }

    /// Gives the most recently added function a profiled entry; returns its address-table
    /// index (after every global's, which must all have been added).
    pub fn profiled_entry(&mut self) -> u32 {
        let index = self.globals.len() as u32 + self.n_profiled;
        self.functions.last_mut().expect("profiled_entry() before function()").profiled = index;
        self.n_profiled += 1;
        index
    }

    /// Adds a call site to the most recently added function; returns the site index.
    pub fn site(&mut self, ordinal: u32, flags: u32) -> u32 {
        let function = (self.functions.len() - 1) as u32;
        self.functions.last_mut().expect("site() before function()").n_sites += 1;
        self.sites.push(SiteRecord { function, ordinal, flags, reserved: 0 });
        (self.sites.len() - 1) as u32
    }

    /// Adds an OSR point to the most recently added function: loop header block `header`,
    /// live refs `live` (encoded, see [`OSR_LIVE_ARG`]), runtime-area slot `slot` (after
    /// every function's redirect slot), the ordinals of the sites in the loop; returns its
    /// index.
    pub fn osr_point(&mut self, header: u32, live: &[u32], slot: u32, sites: &[u32]) -> u32 {
        let function = self.functions.len().checked_sub(1).expect("osr_point() before function()") as u32;
        self.osr.push(OsrRecord {
            function,
            header,
            first_live: self.osr_live.len() as u32,
            n_live: live.len() as u32,
            slot,
            first_site: self.osr_sites.len() as u32,
            n_sites: sites.len() as u32,
        });
        self.osr_live.extend_from_slice(live);
        self.osr_sites.extend_from_slice(sites);
        self.n_slots = self.n_slots.max(slot + 1);
        (self.osr.len() - 1) as u32
    }

    /// Number of sites added so far.
    pub fn site_count(&self) -> u32 {
        self.sites.len() as u32
    }

    /// Compresses `bitcode` and lays out the blob.
    pub fn finish(self, bitcode: &[u8]) -> std::io::Result<Vec<u8>> {
        let compressed = zstd::bulk::compress(bitcode, 3)?;
        let hdr = std::mem::size_of::<BlobHeader>() as u64;
        let functions_off = hdr;
        let sites_off = functions_off + (self.functions.len() * std::mem::size_of::<FunctionRecord>()) as u64;
        let osr_off = sites_off + (self.sites.len() * std::mem::size_of::<SiteRecord>()) as u64;
        let osr_live_off = osr_off + (self.osr.len() * std::mem::size_of::<OsrRecord>()) as u64;
        let osr_sites_off = osr_live_off + (self.osr_live.len() * 4) as u64;
        let globals_off = osr_sites_off + (self.osr_sites.len() * 4) as u64;
        let strings_off = globals_off + (self.globals.len() * std::mem::size_of::<GlobalRecord>()) as u64;
        let bitcode_off = strings_off + self.strings.len() as u64;
        let total_size = bitcode_off + compressed.len() as u64;
        let header = BlobHeader {
            magic: MAGIC,
            version: VERSION,
            header_size: hdr as u32,
            total_size,
            n_functions: self.functions.len() as u32,
            n_sites: self.sites.len() as u32,
            n_globals: self.globals.len() as u32,
            flags: 0,
            functions_off,
            sites_off,
            globals_off,
            strings_off,
            strings_size: self.strings.len() as u64,
            bitcode_off,
            bitcode_size: compressed.len() as u64,
            bitcode_raw_size: bitcode.len() as u64,
            bitcode_hash: fnv1a(bitcode),
            source_name: self.source_name,
            n_slots: self.n_slots,
            n_addrs: self.globals.len() as u32 + self.n_profiled,
            n_osr: self.osr.len() as u32,
            n_osr_live: self.osr_live.len() as u32,
            n_osr_sites: self.osr_sites.len() as u32,
            osr_off,
            osr_live_off,
            osr_sites_off,
        };
        let mut out = Vec::with_capacity(total_size as usize);
        out.extend_from_slice(as_bytes(std::slice::from_ref(&header)));
        out.extend_from_slice(as_bytes(&self.functions));
        out.extend_from_slice(as_bytes(&self.sites));
        out.extend_from_slice(as_bytes(&self.osr));
        out.extend_from_slice(as_bytes(&self.osr_live));
        out.extend_from_slice(as_bytes(&self.osr_sites));
        out.extend_from_slice(as_bytes(&self.globals));
        out.extend_from_slice(&self.strings);
        out.extend_from_slice(&compressed);
        debug_assert_eq!(out.len() as u64, total_size);
        Ok(out)
    }
}

/// The plain-old-data records of this crate, viewed as bytes.
fn as_bytes<T: Pod>(records: &[T]) -> &[u8] {
    // SAFETY: `Pod` types are #[repr(C)] integers/arrays without padding, so every byte
    // is initialised; the slice covers exactly the records' memory.
    unsafe { std::slice::from_raw_parts(records.as_ptr().cast::<u8>(), std::mem::size_of_val(records)) }
}

/// Marker for the records that are plain bytes (no padding, no pointers).
pub(crate) trait Pod: Copy {}
impl Pod for BlobHeader {}
impl Pod for FunctionRecord {}
impl Pod for SiteRecord {}
impl Pod for OsrRecord {}
impl Pod for u32 {}
impl Pod for GlobalRecord {}
