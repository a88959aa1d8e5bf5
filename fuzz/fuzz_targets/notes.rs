//! Fuzzes the note walker `format::drti_notes` and, through `image::find_modules`, the
//! whole path the agent takes from a PT_NOTE segment to a validated blob. The input is a
//! 4-byte length N followed by the bytes of one loaded segment at a fixed address; its first
//! N bytes are also the note segment (PT_NOTE lies inside a PT_LOAD in a real image), so
//! the notes' relative offsets point into the same bytes.
#![no_main]

use bitcode_embed::format::drti_notes;
use bitcode_embed::image::{find_modules, Segments};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The walker on its own, on everything.
    for (off, desc) in drti_notes(data) {
        assert!(off + 12 <= data.len());
        let _ = desc.to_bytes();
    }
    if data.len() < 4 {
        return;
    }
    let n = u32::from_le_bytes(data[..4].try_into().unwrap()) as usize % (data.len() - 3);
    let load = &data[4..];
    let notes = &load[..n];
    const BASE: u64 = 0x40_0000;
    let mut space = Segments::default();
    space.add(BASE, load, load.len() as u64 + 4096);
    for m in find_modules(&space, &[(BASE, notes)]).into_iter().flatten() {
        let _ = m.addrs_addr();
        let _ = m.runtime_addr();
        let _ = m.blob.functions().count();
        let _ = m.blob.source_name();
    }
});
