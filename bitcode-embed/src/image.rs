//! Locating blobs in a loaded image: a set of segments (address → bytes) plus the note
//! segments to search. The same code serves process memory (the agent, from
//! `dl_iterate_phdr`) and an ELF file on disk ([`crate::elf`]).

use crate::format::{drti_notes, NoteDesc};
use crate::reader::{parse_header, Blob, Error};

/// Address ranges of one module: `(start address, readable bytes, size in memory)`.
/// In a file, a segment's memory size may exceed its bytes (`.bss`).
#[derive(Default)]
pub struct Segments<'a> {
    ranges: Vec<(u64, &'a [u8], u64)>,
}

impl<'a> Segments<'a> {
    /// Adds a range of `mem_size` bytes whose first `bytes.len()` bytes are readable.
    pub fn add(&mut self, addr: u64, bytes: &'a [u8], mem_size: u64) {
        self.ranges.push((addr, bytes, mem_size.max(bytes.len() as u64)));
    }

    /// The bytes from `addr` to the end of the range that contains it.
    pub fn tail(&self, addr: u64) -> Option<&'a [u8]> {
        self.ranges.iter().find_map(|&(start, bytes, _)| {
            let off = addr.checked_sub(start)?;
            (off < bytes.len() as u64).then(|| &bytes[off as usize..])
        })
    }

    /// Whether `len` bytes from `addr` are all inside one range's memory size.
    pub fn contains(&self, addr: u64, len: u64) -> bool {
        self.ranges.iter().any(|&(start, _, size)| {
            addr.checked_sub(start).and_then(|off| off.checked_add(len)).is_some_and(|end| end <= size)
        })
    }
}

/// One drti note found in an image, with its validated blob.
pub struct FoundModule<'a> {
    /// Address of the note.
    pub note_addr: u64,
    /// The note's offsets.
    pub desc: NoteDesc,
    /// The validated blob.
    pub blob: Blob<'a>,
}

impl FoundModule<'_> {
    /// Address of the address table (`n_addrs` u64 slots).
    pub fn addrs_addr(&self) -> u64 {
        self.note_addr.wrapping_add(self.desc.addrs_rel as u64)
    }

    /// Address of the runtime area.
    pub fn runtime_addr(&self) -> u64 {
        self.note_addr.wrapping_add(self.desc.runtime_rel as u64)
    }

    /// Address of the first redirect slot (see [`crate::format::runtime_slots_offset`]).
    pub fn slots_addr(&self) -> u64 {
        self.runtime_addr().wrapping_add(crate::format::runtime_slots_offset(self.blob.header().n_sites))
    }
}

/// Searches `notes` (address and bytes of each PT_NOTE segment) for drti notes and parses
/// each one's blob out of `space`. A note whose metadata is bad yields `Err((note address,
/// error))` and does not stop the others.
pub fn find_modules<'a>(space: &Segments<'a>, notes: &[(u64, &[u8])]) -> Vec<Result<FoundModule<'a>, (u64, Error)>> {
    let mut out = Vec::new();
    for &(seg_addr, seg) in notes {
        for (off, desc) in drti_notes(seg) {
            let note_addr = seg_addr + off as u64;
            out.push(load(space, note_addr, desc).map_err(|e| (note_addr, e)));
        }
    }
    out
}

fn load<'a>(space: &Segments<'a>, note_addr: u64, desc: NoteDesc) -> Result<FoundModule<'a>, Error> {
    let blob_addr = note_addr.wrapping_add(desc.blob_rel as u64);
    let bytes = space.tail(blob_addr).ok_or(Error::Invalid {
        what: "note",
        detail: format!("blob address {blob_addr:#x} is outside the module"),
    })?;
    let header = parse_header(bytes)?;
    let blob = Blob::parse(bytes)?;
    let found = FoundModule { note_addr, desc, blob };
    let n_addrs = header.n_addrs as u64;
    if !space.contains(found.addrs_addr(), n_addrs * 8) && n_addrs > 0 {
        return Err(Error::Invalid { what: "note", detail: "address table outside the module".into() });
    }
    // Counters and redirect slots: the agent writes the slots, so the whole area must lie
    // inside the module, and the slots must be 8-aligned for atomic stores.
    let runtime_len = crate::format::runtime_area_size(header.n_sites, header.n_slots);
    if header.n_slots > 0 && !found.slots_addr().is_multiple_of(8) {
        return Err(Error::Invalid { what: "note", detail: "redirect slots are not 8-byte aligned".into() });
    }
    if !space.contains(found.runtime_addr(), runtime_len) {
        return Err(Error::Invalid { what: "note", detail: "runtime area outside the module".into() });
    }
    Ok(found)
}
