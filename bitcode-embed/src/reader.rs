//! Validating reader for blobs (see [`crate::format`]).
//!
//! [`Blob::parse`] checks everything before it hands out a view: magic, version, header
//! size, that every table lies inside the blob without overlapping the header, that every
//! string offset points at a NUL-terminated UTF-8 string inside the string table, and that
//! every cross-reference (function → global, function → sites, site → function, function →
//! redirect slot, function → profiled entry, OSR point → function, live refs, sites, slot)
//! is in range, and that no two functions or OSR points share a redirect slot, no two
//! functions a profiled entry.
//! It never panics and never reads outside the slice it was given.

use crate::format::*;
use std::fmt;

/// Why a blob was rejected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    /// Fewer bytes than the structure needs.
    Truncated { what: &'static str, need: u64, have: u64 },
    /// The first eight bytes are not [`MAGIC`].
    BadMagic,
    /// A version this reader does not know.
    UnsupportedVersion(u32),
    /// A field holds an impossible value.
    Invalid { what: &'static str, detail: String },
    /// The bitcode payload does not decompress to what the header promises.
    Bitcode(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Truncated { what, need, have } => write!(f, "truncated {what}: need {need} bytes, have {have}"),
            Error::BadMagic => write!(f, "bad magic (not drti metadata)"),
            Error::UnsupportedVersion(v) => write!(f, "drti metadata version {v}, this reader reads {VERSION_V4} and {VERSION}"),
            Error::Invalid { what, detail } => write!(f, "invalid {what}: {detail}"),
            Error::Bitcode(e) => write!(f, "bad bitcode payload: {e}"),
        }
    }
}

impl std::error::Error for Error {}

fn invalid(what: &'static str, detail: impl Into<String>) -> Error {
    Error::Invalid { what, detail: detail.into() }
}

/// A validated blob borrowed from memory or from a file.
#[derive(Clone, Copy)]
pub struct Blob<'a> {
    bytes: &'a [u8],
    header: BlobHeader,
}

/// Reads a `T` at `off` without trusting alignment; `None` if it does not fit.
fn read_pod<T: crate::writer::Pod>(bytes: &[u8], off: u64) -> Option<T> {
    let size = std::mem::size_of::<T>() as u64;
    let end = off.checked_add(size)?;
    if end > bytes.len() as u64 {
        return None;
    }
    // SAFETY: `off..off+size` was checked to lie inside `bytes`; `T` is plain old data for
    // which every bit pattern is valid, and read_unaligned has no alignment requirement.
    Some(unsafe { std::ptr::read_unaligned(bytes.as_ptr().add(off as usize).cast::<T>()) })
}

/// Reads just the header, for callers that must learn `total_size` before they can hand
/// over the whole blob (the agent, reading process memory). A version 4 header reads as a
/// version 5 one without OSR points.
pub fn parse_header(bytes: &[u8]) -> Result<BlobHeader, Error> {
    let need = std::mem::size_of::<BlobHeader>() as u64;
    if bytes.len() >= 8 && bytes[..8] != MAGIC {
        return Err(Error::BadMagic);
    }
    let version: Option<u32> = read_pod(bytes, 8);
    let (header, need) = match version {
        Some(VERSION_V4) => {
            // The first 128 bytes; the rest (OSR counts and offsets) stays zero.
            let v4 = HEADER_SIZE_V4 as usize;
            let have = bytes.get(..v4).ok_or(Error::Truncated { what: "header", need: v4 as u64, have: bytes.len() as u64 })?;
            let mut buf = [0u8; std::mem::size_of::<BlobHeader>()];
            buf[..v4].copy_from_slice(have);
            let mut h: BlobHeader = read_pod(&buf, 0).expect("buffer holds a header");
            h.n_osr = 0;
            (h, v4 as u64)
        }
        _ => (read_pod(bytes, 0).ok_or(Error::Truncated { what: "header", need, have: bytes.len() as u64 })?, need),
    };
    if header.version != VERSION && header.version != VERSION_V4 {
        return Err(Error::UnsupportedVersion(header.version));
    }
    if (header.header_size as u64) < need || header.header_size as u64 > header.total_size {
        return Err(invalid("header_size", format!("{} (expected at least {need})", header.header_size)));
    }
    Ok(header)
}

impl<'a> Blob<'a> {
    /// Validates `bytes` (exactly one blob, or a prefix longer than `total_size`).
    pub fn parse(bytes: &'a [u8]) -> Result<Blob<'a>, Error> {
        let h = parse_header(bytes)?;
        if h.total_size > bytes.len() as u64 {
            return Err(Error::Truncated { what: "blob", need: h.total_size, have: bytes.len() as u64 });
        }
        let bytes = &bytes[..h.total_size as usize];
        let table = |what: &'static str, off: u64, count: u64, size: usize| -> Result<(), Error> {
            let len = count.checked_mul(size as u64).ok_or_else(|| invalid(what, "size overflows"))?;
            let end = off.checked_add(len).ok_or_else(|| invalid(what, "offset overflows"))?;
            if off < h.header_size as u64 {
                return Err(invalid(what, format!("offset {off} overlaps the header")));
            }
            if end > h.total_size {
                return Err(Error::Truncated { what, need: end, have: h.total_size });
            }
            Ok(())
        };
        table("function table", h.functions_off, h.n_functions as u64, std::mem::size_of::<FunctionRecord>())?;
        table("site table", h.sites_off, h.n_sites as u64, std::mem::size_of::<SiteRecord>())?;
        table("global table", h.globals_off, h.n_globals as u64, std::mem::size_of::<GlobalRecord>())?;
        if h.version >= VERSION {
            table("OSR table", h.osr_off, h.n_osr as u64, std::mem::size_of::<OsrRecord>())?;
            table("OSR live table", h.osr_live_off, h.n_osr_live as u64, 4)?;
            table("OSR site table", h.osr_sites_off, h.n_osr_sites as u64, 4)?;
        }
        table("string table", h.strings_off, h.strings_size, 1)?;
        table("bitcode", h.bitcode_off, h.bitcode_size, 1)?;
        if h.bitcode_raw_size > MAX_BITCODE_RAW {
            return Err(invalid("bitcode_raw_size", format!("{} exceeds the {MAX_BITCODE_RAW}-byte limit", h.bitcode_raw_size)));
        }
        let blob = Blob { bytes, header: h };
        blob.string(h.source_name).map_err(|_| invalid("source_name", format!("string offset {}", h.source_name)))?;
        for (i, g) in blob.globals().enumerate() {
            blob.string(g.name).map_err(|e| invalid("global name", format!("global {i}: {e}")))?;
            if g.kind > GLOBAL_KIND_ALIAS {
                return Err(invalid("global kind", format!("global {i}: kind {}", g.kind)));
            }
        }
        let mut next_site = 0u64;
        for (i, f) in blob.functions().enumerate() {
            if f.global >= h.n_globals {
                return Err(invalid("function record", format!("function {i}: global {} of {}", f.global, h.n_globals)));
            }
            // Sites are stored function by function, in order: each function's run must
            // start where the previous one ended.
            if f.first_site as u64 != next_site {
                return Err(invalid("function record", format!("function {i}: first site {} (expected {next_site})", f.first_site)));
            }
            next_site += f.n_sites as u64;
            if next_site > h.n_sites as u64 {
                return Err(invalid("function record", format!("function {i}: sites beyond {}", h.n_sites)));
            }
        }
        if h.n_addrs < h.n_globals {
            return Err(invalid("n_addrs", format!("{} address slots for {} globals", h.n_addrs, h.n_globals)));
        }
        // Redirect slots: in range, one function each, present exactly when flagged.
        // Profiled entries: after the globals' address slots, one function each, only for a
        // redirectable function with sites.
        let mut taken = vec![false; h.n_slots as usize];
        let mut profiled_taken = vec![false; (h.n_addrs - h.n_globals) as usize];
        for (i, f) in blob.functions().enumerate() {
            let flagged = f.flags & FUNCTION_PATCHABLE != 0;
            if flagged != (f.slot != NO_SLOT) {
                return Err(invalid("function record", format!("function {i}: slot {} does not match its flags {:#x}", f.slot, f.flags)));
            }
            if f.flags & FUNCTION_NO_REDIRECT != 0 && (flagged || f.n_sites != 0) {
                return Err(invalid("function record", format!("function {i}: not redirectable but has a slot or sites")));
            }
            if flagged {
                let seen = taken.get_mut(f.slot as usize).ok_or_else(|| invalid("function record", format!("function {i}: slot {} of {}", f.slot, h.n_slots)))?;
                if std::mem::replace(seen, true) {
                    return Err(invalid("function record", format!("function {i}: slot {} is already taken", f.slot)));
                }
            }
            if f.profiled != NO_PROFILED {
                if !flagged || f.n_sites == 0 {
                    return Err(invalid("function record", format!("function {i}: a profiled entry without a redirect slot or sites")));
                }
                let seen = f
                    .profiled
                    .checked_sub(h.n_globals)
                    .and_then(|k| profiled_taken.get_mut(k as usize))
                    .ok_or_else(|| invalid("function record", format!("function {i}: profiled entry {} outside {}..{}", f.profiled, h.n_globals, h.n_addrs)))?;
                if std::mem::replace(seen, true) {
                    return Err(invalid("function record", format!("function {i}: profiled entry {} is already taken", f.profiled)));
                }
            }
        }
        if next_site != h.n_sites as u64 {
            return Err(invalid("site table", format!("{} sites, functions own {next_site}", h.n_sites)));
        }
        for (i, s) in blob.sites().enumerate() {
            let f = blob.function(s.function).ok_or_else(|| invalid("site record", format!("site {i}: function {}", s.function)))?;
            if !(f.first_site as usize..(f.first_site + f.n_sites) as usize).contains(&i) {
                return Err(invalid("site record", format!("site {i} is not within function {}'s sites", s.function)));
            }
        }
        blob.check_osr(&mut taken)?;
        Ok(blob)
    }

    /// Validates the OSR points: records grouped by function in order, each of a redirectable
    /// function with a profiled twin, at distinct headers; live refs and site ordinals in
    /// contiguous runs that cover their tables; every ordinal one of the function's sites;
    /// every slot in range and not `taken` (by a function or another point).
    fn check_osr(&self, taken: &mut [bool]) -> Result<(), Error> {
        let h = &self.header;
        let (mut next_live, mut next_site) = (0u64, 0u64);
        let mut prev_function = 0u32;
        let mut headers = std::collections::HashSet::new();
        for (i, p) in self.osr_points().enumerate() {
            let bad = |detail: String| invalid("OSR record", format!("point {i}: {detail}"));
            let f = self.function(p.function).ok_or_else(|| bad(format!("function {} of {}", p.function, h.n_functions)))?;
            if f.flags & FUNCTION_PATCHABLE == 0 || f.profiled == NO_PROFILED {
                return Err(bad(format!("function {} has no redirect slot or no profiled twin", p.function)));
            }
            if p.function < prev_function || !headers.insert((p.function, p.header)) {
                return Err(bad(format!("function {} header {}: out of function order or repeated", p.function, p.header)));
            }
            prev_function = p.function;
            if p.first_live as u64 != next_live || p.first_site as u64 != next_site {
                return Err(bad(format!("live refs at {} / sites at {} (expected {next_live} / {next_site})", p.first_live, p.first_site)));
            }
            next_live += p.n_live as u64;
            next_site += p.n_sites as u64;
            if next_live > h.n_osr_live as u64 || next_site > h.n_osr_sites as u64 {
                return Err(bad("live refs or sites beyond their tables".into()));
            }
            if p.n_sites == 0 {
                return Err(bad("a loop without sites".into()));
            }
            let ordinals: std::collections::HashSet<u32> = (f.first_site..f.first_site + f.n_sites).filter_map(|s| self.site(s)).map(|s| s.ordinal).collect();
            if let Some(o) = self.osr_sites(&p).find(|o| !ordinals.contains(o)) {
                return Err(bad(format!("site ordinal {o} is not one of function {}'s sites", p.function)));
            }
            let seen = taken.get_mut(p.slot as usize).ok_or_else(|| bad(format!("slot {} of {}", p.slot, h.n_slots)))?;
            if std::mem::replace(seen, true) {
                return Err(bad(format!("slot {} is already taken", p.slot)));
            }
        }
        if next_live != h.n_osr_live as u64 || next_site != h.n_osr_sites as u64 {
            return Err(invalid("OSR tables", format!("{} live refs and {} sites, points own {next_live} and {next_site}", h.n_osr_live, h.n_osr_sites)));
        }
        Ok(())
    }

    /// The validated header.
    pub fn header(&self) -> &BlobHeader {
        &self.header
    }

    /// The blob's bytes (exactly `total_size`).
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The string at `off` in the string table.
    pub fn string(&self, off: u32) -> Result<&'a str, Error> {
        let h = &self.header;
        let table = &self.bytes[h.strings_off as usize..(h.strings_off + h.strings_size) as usize];
        let rest = table.get(off as usize..).ok_or_else(|| invalid("string offset", format!("{off} beyond the table")))?;
        let end = rest.iter().position(|&b| b == 0).ok_or_else(|| invalid("string", format!("at {off}: no terminating NUL")))?;
        std::str::from_utf8(&rest[..end]).map_err(|_| invalid("string", format!("at {off}: not UTF-8")))
    }

    /// Source file the module was compiled from.
    pub fn source_name(&self) -> &'a str {
        self.string(self.header.source_name).unwrap_or("?")
    }

    /// Function `i`.
    pub fn function(&self, i: u32) -> Option<FunctionRecord> {
        (i < self.header.n_functions).then(|| read_pod(self.bytes, self.header.functions_off + i as u64 * std::mem::size_of::<FunctionRecord>() as u64)).flatten()
    }

    /// All function records.
    pub fn functions(&self) -> impl Iterator<Item = FunctionRecord> + '_ {
        (0..self.header.n_functions).filter_map(move |i| self.function(i))
    }

    /// Site `i`.
    pub fn site(&self, i: u32) -> Option<SiteRecord> {
        (i < self.header.n_sites).then(|| read_pod(self.bytes, self.header.sites_off + i as u64 * std::mem::size_of::<SiteRecord>() as u64)).flatten()
    }

    /// All site records.
    pub fn sites(&self) -> impl Iterator<Item = SiteRecord> + '_ {
        (0..self.header.n_sites).filter_map(move |i| self.site(i))
    }

    /// OSR point `i` (version 5; a version 4 blob has none).
    pub fn osr_point(&self, i: u32) -> Option<OsrRecord> {
        (i < self.header.n_osr).then(|| read_pod(self.bytes, self.header.osr_off + i as u64 * std::mem::size_of::<OsrRecord>() as u64)).flatten()
    }

    /// All OSR points, grouped by function in function order.
    pub fn osr_points(&self) -> impl Iterator<Item = OsrRecord> + '_ {
        (0..self.header.n_osr).filter_map(move |i| self.osr_point(i))
    }

    /// The encoded live refs of point `p` ([`OSR_LIVE_ARG`]), the continuation's parameters
    /// in order.
    pub fn osr_live(&self, p: &OsrRecord) -> impl Iterator<Item = u32> + '_ {
        self.u32_run(self.header.osr_live_off, self.header.n_osr_live, p.first_live, p.n_live)
    }

    /// The site ordinals of point `p` (F's sites inside the loop).
    pub fn osr_sites(&self, p: &OsrRecord) -> impl Iterator<Item = u32> + '_ {
        self.u32_run(self.header.osr_sites_off, self.header.n_osr_sites, p.first_site, p.n_sites)
    }

    /// Words `first..first+n` of the `u32` table at `off` of `len` words (only those in it).
    fn u32_run(&self, off: u64, len: u32, first: u32, n: u32) -> impl Iterator<Item = u32> + '_ {
        let end = (first as u64 + n as u64).min(len as u64);
        (first as u64..end).filter_map(move |k| read_pod::<u32>(self.bytes, off + k * 4))
    }

    /// Global `i`.
    pub fn global(&self, i: u32) -> Option<GlobalRecord> {
        (i < self.header.n_globals).then(|| read_pod(self.bytes, self.header.globals_off + i as u64 * std::mem::size_of::<GlobalRecord>() as u64)).flatten()
    }

    /// All global records.
    pub fn globals(&self) -> impl Iterator<Item = GlobalRecord> + '_ {
        (0..self.header.n_globals).filter_map(move |i| self.global(i))
    }

    /// IR name of global `i` ("" if out of range; validated names never fail).
    pub fn global_name(&self, i: u32) -> &'a str {
        self.global(i).and_then(|g| self.string(g.name).ok()).unwrap_or("")
    }

    /// IR name of function `i`.
    pub fn function_name(&self, i: u32) -> &'a str {
        self.function(i).map(|f| self.global_name(f.global)).unwrap_or("")
    }

    /// The compressed bitcode.
    pub fn bitcode_compressed(&self) -> &'a [u8] {
        let h = &self.header;
        &self.bytes[h.bitcode_off as usize..(h.bitcode_off + h.bitcode_size) as usize]
    }

    /// Decompresses the bitcode and checks its size and hash against the header.
    pub fn bitcode(&self) -> Result<Vec<u8>, Error> {
        let h = &self.header;
        let raw = decompress_bitcode(self.bitcode_compressed(), h.bitcode_raw_size)?;
        if fnv1a(&raw) != h.bitcode_hash {
            return Err(Error::Bitcode("hash mismatch".into()));
        }
        Ok(raw)
    }
}

/// Decompresses embedded bitcode (a zstd frame) of `raw_size` bytes, allocating no more
/// than that (at most `format::MAX_BITCODE_RAW`).
pub fn decompress_bitcode(compressed: &[u8], raw_size: u64) -> Result<Vec<u8>, Error> {
    if raw_size > crate::format::MAX_BITCODE_RAW {
        return Err(Error::Bitcode(format!("{raw_size} bytes is more than any module's bitcode")));
    }
    let raw = zstd::bulk::decompress(compressed, raw_size as usize).map_err(|e| Error::Bitcode(e.to_string()))?;
    if raw.len() as u64 != raw_size {
        return Err(Error::Bitcode(format!("{} bytes, header says {raw_size}", raw.len())));
    }
    Ok(raw)
}
