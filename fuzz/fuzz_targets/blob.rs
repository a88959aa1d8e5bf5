//! Fuzzes the metadata reader: `Blob::parse` on arbitrary bytes, then walks everything a
//! validated blob hands out (header, strings, function / site / global records and names,
//! the compressed and decompressed bitcode). The reader promises never to panic and never
//! to read outside the slice; every accessor of a validated blob must hold to that too.
#![no_main]

use bitcode_embed::reader::{parse_header, Blob};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = parse_header(data);
    let Ok(blob) = Blob::parse(data) else { return };
    let h = *blob.header();
    assert!(blob.bytes().len() as u64 == h.total_size);
    let _ = blob.source_name();
    for i in 0..h.n_functions {
        let f = blob.function(i).expect("validated function index");
        let _ = blob.function_name(i);
        let _ = blob.global(f.global).expect("validated function -> global");
        for s in f.first_site..f.first_site + f.n_sites {
            let site = blob.site(s).expect("validated site index");
            assert_eq!(site.function, i, "site {s} belongs to function {i}");
        }
    }
    assert_eq!(blob.functions().count() as u64, h.n_functions as u64);
    assert_eq!(blob.sites().count() as u64, h.n_sites as u64);
    for (i, g) in blob.globals().enumerate() {
        assert!(blob.string(g.name).is_ok(), "validated global name {i}");
        let _ = blob.global_name(i as u32);
    }
    // Out-of-range lookups answer None / "" rather than panic.
    assert!(blob.function(h.n_functions).is_none());
    assert!(blob.site(h.n_sites).is_none());
    assert!(blob.global(h.n_globals).is_none());
    let _ = blob.string(u32::MAX);
    let _ = blob.bitcode_compressed();
    // Decompressing is bounded by bitcode_raw_size (<= MAX_BITCODE_RAW): keep the fuzzer's
    // memory sane by only decompressing what a real module could hold.
    if h.bitcode_raw_size <= 64 << 20 {
        if let Ok(raw) = blob.bitcode() {
            assert_eq!(raw.len() as u64, h.bitcode_raw_size);
        }
    }
});
