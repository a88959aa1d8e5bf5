//! The reader rejects corrupt and truncated blobs with an error, never a panic, and never
//! reads outside the slice it is given.

use bitcode_embed::format::*;
use bitcode_embed::{Blob, BlobWriter, Error};

fn sample() -> Vec<u8> {
    let mut w = BlobWriter::new("demo.c");
    let apply = w.global("apply", GLOBAL_KIND_FUNCTION, GLOBAL_DEFINED);
    let twice = w.global("twice", GLOBAL_KIND_FUNCTION, GLOBAL_DEFINED);
    w.global("counter", GLOBAL_KIND_VARIABLE, GLOBAL_DEFINED | GLOBAL_LOCAL);
    let vfn = w.global("vfn", GLOBAL_KIND_FUNCTION, GLOBAL_DEFINED);
    w.function(apply, FUNCTION_DECORATED, 1);
    w.profiled_entry();
    w.site(0, 0);
    w.site(1, SITE_INVOKE);
    // Two loops in apply (the inner one holds site 1 only), one in twice; their OSR slots
    // follow the two functions' redirect slots.
    w.osr_point(3, &[OSR_LIVE_ARG, 5], 2, &[0, 1]);
    w.osr_point(5, &[7], 3, &[1]);
    w.function(twice, FUNCTION_DECORATED, 0);
    w.profiled_entry();
    w.site(0, 0);
    w.osr_point(1, &[], 4, &[0]);
    w.function(vfn, FUNCTION_NO_REDIRECT, NO_SLOT);
    w.finish(BITCODE).unwrap()
}

const BITCODE: &[u8] = b"BC\xc0\xde pretend bitcode, long enough to compress a little bit bit bit";

/// A version 4 blob (no OSR points): `sample()`'s records without the points, laid out
/// with the 128-byte header of version 4, `reserved` (now `n_osr`) set to `reserved`.
fn sample_v4(reserved: u32) -> Vec<u8> {
    let mut w = BlobWriter::new("demo.c");
    let apply = w.global("apply", GLOBAL_KIND_FUNCTION, GLOBAL_DEFINED);
    w.function(apply, FUNCTION_DECORATED, 0);
    w.profiled_entry();
    w.site(0, 0);
    let v5 = w.finish(BITCODE).unwrap();
    let h = header(&v5);
    assert_eq!((h.n_osr, h.header_size), (0, 160));
    let shift = (h.header_size - HEADER_SIZE_V4) as u64;
    let mut v4 = v5[..HEADER_SIZE_V4 as usize].to_vec();
    v4.extend_from_slice(&v5[h.header_size as usize..]);
    put(&mut v4, 8, VERSION_V4 as u64, 4);
    put(&mut v4, 12, HEADER_SIZE_V4 as u64, 4);
    put(&mut v4, 16, h.total_size - shift, 8);
    for (off, v) in [(40, h.functions_off), (48, h.sites_off), (56, h.globals_off), (64, h.strings_off), (80, h.bitcode_off)] {
        put(&mut v4, off, v - shift, 8);
    }
    put(&mut v4, 124, reserved as u64, 4);
    v4
}

fn header(b: &[u8]) -> BlobHeader {
    bitcode_embed::reader::parse_header(b).unwrap()
}

/// Writes a u32/u64 field at `off`.
fn put(b: &mut [u8], off: usize, v: u64, width: usize) {
    b[off..off + width].copy_from_slice(&v.to_le_bytes()[..width]);
}

#[test]
fn valid_blob_round_trips() {
    let b = sample();
    let blob = Blob::parse(&b).unwrap();
    assert_eq!(blob.source_name(), "demo.c");
    assert_eq!(blob.function_name(0), "apply");
    assert_eq!(blob.function(0).unwrap().n_sites, 2);
    assert_eq!(blob.site(1).unwrap().flags, SITE_INVOKE);
    assert_eq!((blob.function(0).unwrap().slot, blob.function(1).unwrap().slot), (1, 0));
    assert_ne!(blob.function(0).unwrap().flags & FUNCTION_PATCHABLE, 0);
    assert_eq!(blob.function(2).unwrap().slot, NO_SLOT);
    assert_eq!(blob.function(2).unwrap().flags & FUNCTION_PATCHABLE, 0);
    assert_eq!(blob.global_name(2), "counter");
    // Profiled entries follow the four globals in the address table.
    assert_eq!(blob.header().n_addrs, 6);
    assert_eq!((blob.function(0).unwrap().profiled, blob.function(1).unwrap().profiled), (4, 5));
    assert_eq!(blob.function(2).unwrap().profiled, NO_PROFILED);
    assert!(blob.bitcode().unwrap().starts_with(b"BC\xc0\xde"));
    // OSR points: grouped by function, live refs and sites in order, slots after the
    // functions' (n_slots counts them).
    assert_eq!(blob.header().n_slots, 5);
    let points: Vec<OsrRecord> = blob.osr_points().collect();
    assert_eq!(points.iter().map(|p| (p.function, p.header, p.slot)).collect::<Vec<_>>(), [(0, 3, 2), (0, 5, 3), (1, 1, 4)]);
    assert_eq!(blob.osr_live(&points[0]).collect::<Vec<_>>(), [OSR_LIVE_ARG, 5]);
    assert_eq!(blob.osr_live(&points[1]).collect::<Vec<_>>(), [7]);
    assert_eq!(blob.osr_live(&points[2]).count(), 0);
    assert_eq!(blob.osr_sites(&points[0]).collect::<Vec<_>>(), [0, 1]);
    assert_eq!(blob.osr_sites(&points[2]).collect::<Vec<_>>(), [0]);
    assert_eq!(blob.osr_point(3), None);
}

#[test]
fn version_4_blobs_read_without_osr_points() {
    let b = sample_v4(0);
    let blob = Blob::parse(&b).unwrap();
    assert_eq!((blob.header().version, blob.header().n_osr), (VERSION_V4, 0));
    assert_eq!(blob.function_name(0), "apply");
    assert_eq!(blob.osr_points().count(), 0);
    assert!(blob.bitcode().unwrap().starts_with(b"BC\xc0\xde"));
    // The reserved word of version 4 never counts points.
    let b = sample_v4(7);
    assert_eq!(Blob::parse(&b).unwrap().osr_points().count(), 0);
    for len in 0..b.len() {
        assert!(Blob::parse(&b[..len]).is_err(), "v4 truncated to {len} bytes accepted");
    }
    // Other versions are refused, with both readable versions named.
    let mut m = sample();
    put(&mut m, 8, 6, 4);
    let e = Blob::parse(&m).err().unwrap();
    assert_eq!(e, Error::UnsupportedVersion(6));
    assert!(e.to_string().contains("version 6, this reader reads 4 and 5"), "{e}");
}

#[test]
fn every_truncation_is_an_error() {
    let b = sample();
    for len in 0..b.len() {
        assert!(Blob::parse(&b[..len]).is_err(), "truncated to {len} bytes accepted");
    }
}

#[test]
fn mutated_headers_are_rejected() {
    let b = sample();
    let h = header(&b);
    // Field offsets in BlobHeader (see format.rs).
    let cases: Vec<(&str, usize, u64, usize)> = vec![
        ("magic", 0, 0x58, 1),
        ("version 0", 8, 0, 4),
        ("version 1 (entry NOPs, no redirect slots)", 8, 1, 4),
        ("version 2 (shared per-site counters, three-argument hook)", 8, 2, 4),
        ("version 3 (no profiled entries)", 8, 3, 4),
        ("version 6", 8, 6, 4),
        ("header_size of version 4", 12, 128, 4),
        ("header_size small", 12, 8, 4),
        ("header_size huge", 12, 1 << 30, 4),
        ("total_size small", 16, 50, 8),
        ("total_size huge", 16, u64::MAX, 8),
        ("n_functions huge", 24, u32::MAX as u64, 4),
        ("n_sites huge", 28, 1000, 4),
        ("n_sites less", 28, 1, 4),
        ("n_globals huge", 32, 1 << 31, 4),
        ("functions_off past end", 40, h.total_size, 8),
        ("functions_off into header", 40, 8, 8),
        ("sites_off overflow", 48, u64::MAX - 3, 8),
        ("globals_off past end", 56, h.total_size - 2, 8),
        ("strings_off past end", 64, h.total_size + 100, 8),
        ("strings_size huge", 72, u64::MAX, 8),
        ("bitcode_off past end", 80, h.total_size, 8),
        ("bitcode_size huge", 88, 1 << 40, 8),
        ("bitcode_raw_size huge", 96, 1 << 40, 8),
        ("source_name past strings", 112, 1 << 20, 4),
        ("n_slots less than used", 116, 1, 4),
        ("n_addrs less than the globals", 120, 2, 4),
        ("n_addrs less than used", 120, 5, 4),
        ("n_osr huge", 124, 1000, 4),
        ("n_osr less", 124, 1, 4),
        ("n_osr_live huge", 128, 1 << 30, 4),
        ("n_osr_live less", 128, 1, 4),
        ("n_osr_sites less", 132, 2, 4),
        ("n_osr_sites more", 132, 5, 4),
        ("osr_off into header", 136, 8, 8),
        ("osr_off past end", 136, h.total_size, 8),
        ("osr_live_off overflow", 144, u64::MAX - 1, 8),
        ("osr_sites_off past end", 152, h.total_size - 2, 8),
    ];
    assert!(cases.len() >= 20);
    for (what, off, v, width) in cases {
        let mut m = b.clone();
        put(&mut m, off, v, width);
        assert!(Blob::parse(&m).is_err(), "{what}: accepted");
    }
}

#[test]
fn mutated_records_are_rejected() {
    let b = sample();
    let h = header(&b);
    let f0 = h.functions_off as usize;
    let s0 = h.sites_off as usize;
    let g0 = h.globals_off as usize;
    let o0 = h.osr_off as usize;
    let os = h.osr_sites_off as usize;
    let cases: Vec<(&str, usize, u64, usize)> = vec![
        ("function global out of range", f0, 99, 4),
        ("function first_site gap", f0 + 4, 1, 4),
        ("function n_sites too many", f0 + 8, 5, 4),
        ("slot flag without a slot", f0 + 12 + 48, (FUNCTION_NO_REDIRECT | FUNCTION_PATCHABLE) as u64, 4),
        ("slot without the flag", f0 + 12, FUNCTION_DECORATED as u64, 4),
        ("slot out of range", f0 + 16, 2, 4),
        ("slot shared by two functions", f0 + 16, 0, 4),
        ("not redirectable with a slot", f0 + 12, (FUNCTION_NO_REDIRECT | FUNCTION_PATCHABLE | FUNCTION_DECORATED) as u64, 4),
        ("profiled entry among the globals", f0 + 20, 1, 4),
        ("profiled entry out of range", f0 + 20, 6, 4),
        ("profiled entry shared by two functions", f0 + 20, 5, 4),
        ("profiled entry without a slot", f0 + 48 + 20, 4, 4),
        ("site function out of range", s0, 7, 4),
        ("site owned by the wrong function", s0, 1, 4),
        ("global name out of range", g0, 1 << 20, 4),
        ("global kind unknown", g0 + 4, 9, 1),
        ("point function out of range", o0, 9, 4),
        ("point of a function without a slot", o0, 2, 4),
        ("points out of function order", o0, 1, 4),
        ("two points at one header", o0 + 28 + 4, 3, 4),
        ("point live refs gap", o0 + 8, 1, 4),
        ("point live refs too many", o0 + 12, 5, 4),
        ("point live refs beyond the table", o0 + 28 + 12, 1 << 20, 4),
        ("point slot out of range", o0 + 16, 5, 4),
        ("point slot of a function", o0 + 16, 0, 4),
        ("point slot of another point", o0 + 16, 3, 4),
        ("point sites gap", o0 + 20, 1, 4),
        ("point without sites", o0 + 2 * 28 + 24, 0, 4),
        ("point site not the function's", os, 2, 4),
        ("point site of another function", os + 12, 1, 4),
    ];
    for (what, off, v, width) in cases {
        let mut m = b.clone();
        put(&mut m, off, v, width);
        assert!(Blob::parse(&m).is_err(), "{what}: accepted");
    }
    // A string without its terminating NUL.
    let mut m = b.clone();
    let end = (h.strings_off + h.strings_size) as usize;
    m[end - 1] = b'x';
    assert!(Blob::parse(&m).is_err(), "unterminated string accepted");
    // Wrong version is reported as such.
    let mut m = b.clone();
    put(&mut m, 8, 1, 4);
    assert_eq!(Blob::parse(&m).err(), Some(Error::UnsupportedVersion(1)));
    // A corrupt payload parses but does not decompress.
    let mut m = b.clone();
    let bc = h.bitcode_off as usize;
    for x in &mut m[bc..bc + 8] {
        *x ^= 0xff;
    }
    assert!(Blob::parse(&m).unwrap().bitcode().is_err());
}

#[test]
fn random_corruption_never_panics() {
    let b = sample();
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    for _ in 0..20_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let mut m = b.clone();
        for k in 0..(1 + x % 4) {
            let pos = ((x >> (8 * k)) as usize) % m.len();
            m[pos] ^= (x >> 40) as u8 | 1;
        }
        if let Ok(blob) = Blob::parse(&m) {
            // Whatever parses must be safe to walk.
            for i in 0..blob.header().n_functions {
                let _ = blob.function_name(i);
            }
            for s in blob.sites() {
                let _ = blob.function(s.function);
            }
            for p in blob.osr_points() {
                let _ = (blob.function(p.function), blob.osr_live(&p).count(), blob.osr_sites(&p).count());
            }
            let _ = blob.bitcode();
        }
    }
}

#[test]
fn notes_are_found_and_malformed_notes_stop_cleanly() {
    let mut note = Vec::new();
    note.extend_from_slice(&5u32.to_le_bytes());
    note.extend_from_slice(&(NOTE_DESC_SIZE as u32).to_le_bytes());
    note.extend_from_slice(&NOTE_TYPE.to_le_bytes());
    note.extend_from_slice(b"drti\0\0\0\0");
    note.extend_from_slice(&NoteDesc { blob_rel: 64, addrs_rel: -8, runtime_rel: 4096 }.to_bytes());
    let found = drti_notes(&note);
    assert_eq!(found, vec![(0, NoteDesc { blob_rel: 64, addrs_rel: -8, runtime_rel: 4096 })]);
    for len in 0..note.len() {
        assert!(drti_notes(&note[..len]).is_empty());
    }
    let mut huge = note.clone();
    huge[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(drti_notes(&huge).is_empty());
}

/// Every input of the checked-in fuzz corpora (and regressions, if any) still parses or
/// fails cleanly.
#[test]
fn fuzz_corpus_replays_without_panic() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut n = 0;
    for dir in ["corpus/blob", "corpus/notes", "regressions"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir)) else { continue };
        for e in entries.flatten() {
            let data = std::fs::read(e.path()).unwrap();
            if let Ok(blob) = Blob::parse(&data) {
                for i in 0..blob.header().n_functions {
                    let _ = blob.function_name(i);
                }
                let _ = blob.bitcode();
            }
            let _ = drti_notes(&data);
            n += 1;
        }
    }
    assert!(n >= 20, "fuzz corpus missing or too small ({n} inputs)");
}

/// `find_modules` accepts a runtime area that holds the counters and the redirect slots,
/// and rejects one that ends before the last slot (the agent stores into the slots).
#[test]
fn runtime_area_must_hold_every_redirect_slot() {
    use bitcode_embed::image::{find_modules, Segments};
    let blob = sample();
    let h = header(&blob);
    let need = runtime_area_size(h.n_sites, h.n_slots);
    assert_eq!(runtime_slots_offset(h.n_sites), 32, "16-byte header, 3 counters, aligned to 8");
    // Two redirect slots and three OSR slots.
    assert_eq!(need, 32 + 5 * 8);
    // Image: note at 0x1000, blob at 0x2000, address table at 0x8000, runtime area at 0x9000.
    let mut note = Vec::new();
    note.extend_from_slice(&5u32.to_le_bytes());
    note.extend_from_slice(&(NOTE_DESC_SIZE as u32).to_le_bytes());
    note.extend_from_slice(&NOTE_TYPE.to_le_bytes());
    note.extend_from_slice(b"drti\0\0\0\0");
    note.extend_from_slice(&NoteDesc { blob_rel: 0x1000, addrs_rel: 0x7000, runtime_rel: 0x8000 }.to_bytes());
    let addrs = vec![0u8; h.n_addrs as usize * 8];
    for (size, ok) in [(need, true), (need - 1, false), (need - 8, false)] {
        let area = vec![0u8; size as usize];
        let mut space = Segments::default();
        space.add(0x1000, &note, note.len() as u64);
        space.add(0x2000, &blob, blob.len() as u64);
        space.add(0x8000, &addrs, addrs.len() as u64);
        space.add(0x9000, &area, size);
        let found = find_modules(&space, &[(0x1000, &note)]);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].is_ok(), ok, "runtime area of {size} bytes (need {need})");
        if let Ok(m) = &found[0] {
            assert_eq!(m.slots_addr(), 0x9000 + 32);
        }
    }
}

/// Real blobs of the fuzz corpus: those of version 4 (demo binaries built before OSR
/// points) still read, without points; those of version 5 (tests/progs/osr_main.c and
/// .cpp) read with their points.
#[test]
fn corpus_blobs_of_versions_4_and_5_read() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/blob");
    let (mut v4, mut v5) = (0, 0);
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let data = std::fs::read(e.path()).unwrap();
        let Ok(h) = bitcode_embed::reader::parse_header(&data) else { continue };
        let Ok(blob) = Blob::parse(&data) else { continue };
        if blob.bitcode().is_err() {
            continue;
        }
        match h.version {
            VERSION_V4 => {
                assert_eq!(blob.osr_points().count(), 0);
                v4 += 1;
            }
            VERSION => {
                let p = blob.osr_points().next().unwrap_or_else(|| panic!("{}: no OSR point", e.path().display()));
                assert_eq!(blob.function_name(p.function), "main");
                assert!(blob.osr_sites(&p).count() > 0 && blob.osr_live(&p).count() == p.n_live as usize);
                v5 += 1;
            }
            _ => {}
        }
    }
    assert!(v4 >= 4 && v5 >= 2, "{v4} version 4 and {v5} version 5 blobs read");
}
