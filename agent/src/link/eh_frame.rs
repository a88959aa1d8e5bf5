//! Unwind registration: libgcc's unwinder (the one libstdc++ and Rust use here) finds
//! frames of code outside any loaded ELF module only through `__register_frame`. It takes
//! the start of a complete `.eh_frame` (CIEs and FDEs up to a zero terminator, which the
//! linker reserves after each section) and walks it (at registration in recent libgcc,
//! else at the first unwind). libgcc trusts that data: a bad length reads out of bounds,
//! a bad pointer encoding aborts the process. So `check` walks the section first, as
//! libgcc will, and refuses what it would stumble on. (`object` does not read .eh_frame.)

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

/// Where an FDE's `pc_begin` is (offset in the section) and how it is encoded.
#[derive(Debug, Clone, Copy)]
pub struct Fde {
    at: usize,
    encoding: u8,
}

/// Check the structure of an (unrelocated) `.eh_frame`: every record lies inside the
/// section, every FDE points back at a CIE before it, and every CIE has an augmentation
/// and pointer encodings libgcc can read. Relocations only change pointer values, so the
/// FDEs it returns are checked again after relocation by `check_ranges`.
pub fn check(data: &[u8]) -> Result<Vec<Fde>, String> {
    let mut fdes = Vec::new();
    let mut cies = std::collections::HashMap::new(); // offset -> (FDE pointer encoding, has 'z')
    let mut pos = 0usize;
    while pos < data.len() {
        let length = read_u32(data, pos).ok_or("truncated record length")?;
        match length {
            0 => return Err(format!("terminator at {pos:#x} before the end")),
            0xffff_ffff => return Err("64-bit DWARF records are not supported".into()),
            _ => {}
        }
        let end = (pos + 4).checked_add(length as usize).filter(|&e| e <= data.len()).ok_or_else(|| format!("record at {pos:#x} overruns the section"))?;
        let id = read_u32(data, pos + 4).filter(|_| length >= 4).ok_or_else(|| format!("record at {pos:#x} too short"))?;
        let mut r = Reader { data: &data[..end], at: pos + 8 };
        if id == 0 {
            cies.insert(pos, cie(&mut r).map_err(|e| format!("CIE at {pos:#x}: {e}"))?);
        } else {
            let cie_at = (pos + 4).checked_sub(id as usize).ok_or_else(|| format!("FDE at {pos:#x}: CIE pointer out of range"))?;
            let &(encoding, z) = cies.get(&cie_at).ok_or_else(|| format!("FDE at {pos:#x}: no CIE at {cie_at:#x}"))?;
            fdes.push(Fde { at: r.at, encoding });
            // pc_begin, pc_range, then the augmentation data length.
            r.skip(2 * pointer_size(encoding, false)?).map_err(|e| format!("FDE at {pos:#x}: {e}"))?;
            if z {
                let n = r.uleb().map_err(|e| format!("FDE at {pos:#x}: {e}"))?;
                r.skip(n as usize).map_err(|e| format!("FDE at {pos:#x}: {e}"))?;
            }
        }
        pos = end;
    }
    Ok(fdes)
}

/// After relocation: every FDE of the section at `address` (bytes `data`) describes code
/// inside `[text.0, text.1)`, so registering it never claims code the object does not own.
pub fn check_ranges(data: &[u8], address: u64, fdes: &[Fde], text: (u64, u64)) -> Result<(), String> {
    for f in fdes {
        let n = pointer_size(f.encoding, false)?;
        let read = |at: usize| -> Option<i128> {
            let b = data.get(at..at + n)?;
            let mut w = [0u8; 8];
            w[..n].copy_from_slice(b);
            let u = u64::from_le_bytes(w);
            Some(match f.encoding & 0x0f {
                0x0a => i128::from(u as u16 as i16),
                0x0b => i128::from(u as u32 as i32),
                0x0c => i128::from(u as i64),
                _ => i128::from(u),
            })
        };
        let (begin, range) = read(f.at).zip(read(f.at + n)).ok_or("FDE truncated")?;
        let begin = if f.encoding & 0x70 == 0x10 { begin + i128::from(address) + f.at as i128 } else { begin };
        if begin < i128::from(text.0) || begin + range > i128::from(text.1) || range < 0 {
            return Err(format!("FDE at {:#x} covers {begin:#x}+{range:#x}, outside the object's code", f.at));
        }
    }
    Ok(())
}

fn read_u32(data: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(data.get(at..at.checked_add(4)?)?.try_into().ok()?))
}

struct Reader<'a> {
    data: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn byte(&mut self) -> Result<u8, String> {
        let b = *self.data.get(self.at).ok_or("truncated")?;
        self.at += 1;
        Ok(b)
    }
    fn uleb(&mut self) -> Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("LEB128 too long".into())
    }
    fn skip(&mut self, n: usize) -> Result<(), String> {
        self.at = self.at.checked_add(n).filter(|&e| e <= self.data.len()).ok_or("truncated")?;
        Ok(())
    }
}

/// The size of a pointer in encoding `enc` (DW_EH_PE_*): absolute or PC-relative, maybe
/// indirect (personality only), fixed size; what clang and GCC emit.
fn pointer_size(enc: u8, indirect_ok: bool) -> Result<usize, String> {
    let bad = || Err(format!("unsupported pointer encoding {enc:#x}"));
    if enc & 0x80 != 0 && !indirect_ok {
        return bad();
    }
    if !matches!(enc & 0x70, 0x00 | 0x10) {
        return bad();
    }
    match enc & 0x0f {
        0x00 | 0x04 | 0x0c => Ok(8),
        0x03 | 0x0b => Ok(4),
        0x02 | 0x0a => Ok(2),
        _ => bad(),
    }
}

/// Parse a CIE body after its id; the encoding of its FDEs' pointers and whether they
/// carry augmentation data.
fn cie(r: &mut Reader) -> Result<(u8, bool), String> {
    let version = r.byte()?;
    if version != 1 && version != 3 {
        return Err(format!("version {version}"));
    }
    let mut aug = Vec::new();
    loop {
        match r.byte()? {
            0 => break,
            c => aug.push(c),
        }
    }
    r.uleb()?; // code alignment
    r.uleb()?; // data alignment (SLEB128: same byte structure)
    if version == 1 {
        r.byte()?;
    } else {
        r.uleb()?;
    }
    let mut pointer = 0; // DW_EH_PE_absptr
    match aug.first() {
        None => return Ok((pointer, false)),
        Some(b'z') => {}
        Some(_) => return Err(format!("augmentation {:?}", String::from_utf8_lossy(&aug))),
    }
    let len = r.uleb()? as usize;
    let end = r.at.checked_add(len).filter(|&e| e <= r.data.len()).ok_or("augmentation data overruns the record")?;
    for &c in &aug[1..] {
        match c {
            b'R' => {
                pointer = r.byte()?;
                pointer_size(pointer, false)?;
            }
            b'L' => {
                pointer_size(r.byte()?, false)?;
            }
            b'P' => {
                let n = pointer_size(r.byte()?, true)?;
                r.skip(n)?;
            }
            b'S' => {}
            _ => return Err(format!("augmentation {:?}", String::from_utf8_lossy(&aug))),
        }
    }
    if r.at > end {
        return Err("augmentation data overruns its length".into());
    }
    Ok((pointer, true))
}

#[cfg(test)]
mod tests {
    use super::check;

    /// A CIE "zR" (FDE pointers pcrel|sdata4) and one FDE, as clang emits them.
    fn sample() -> Vec<u8> {
        let mut v = Vec::new();
        // CIE: length 0x14, id 0, version 1, "zR", code 1, data -8, ra 16, aug len 1, enc 0x1b, CFA ops, padding.
        v.extend_from_slice(&[0x14, 0, 0, 0, 0, 0, 0, 0, 1, b'z', b'R', 0, 1, 0x78, 0x10, 1, 0x1b, 0x0c, 7, 8, 0x90, 1, 0, 0]);
        // FDE: length 0x14, CIE pointer 0x1c (back to 0), pc_begin, pc_range, aug len 0, nops.
        v.extend_from_slice(&[0x14, 0, 0, 0, 0x1c, 0, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        v
    }

    #[test]
    fn accepts_a_clang_like_section() {
        assert_eq!(check(&sample()).unwrap().len(), 1);
        assert!(check(&[]).unwrap().is_empty());
    }

    #[test]
    fn fde_ranges_must_lie_in_the_code() {
        // The FDE's pc_begin field is at 0x20; pcrel sdata4 value 0 there means 0x1000+0x20.
        let mut s = sample();
        let fdes = check(&s).unwrap();
        super::check_ranges(&s, 0x1000, &fdes, (0x1020, 0x1030)).unwrap();
        assert!(super::check_ranges(&s, 0x1000, &fdes, (0x1020, 0x102f)).is_err());
        assert!(super::check_ranges(&s, 0x1000, &fdes, (0x1021, 0x1040)).is_err());
        s[32..36].copy_from_slice(&(-0x20i32).to_le_bytes());
        super::check_ranges(&s, 0x1000, &fdes, (0x1000, 0x1010)).unwrap();
    }

    #[test]
    fn refuses_what_libgcc_would_stumble_on() {
        let s = sample();
        let mut long = s.clone();
        long[24] = 0x40; // FDE length past the end
        assert!(check(&long).unwrap_err().contains("overruns"));
        let mut orphan = s.clone();
        orphan[28] = 0x18; // CIE pointer to the middle of the CIE
        assert!(check(&orphan).unwrap_err().contains("no CIE"));
        let mut enc = s.clone();
        enc[16] = 0x1f; // no such pointer format
        assert!(check(&enc).unwrap_err().contains("encoding"));
        let mut aug = s.clone();
        aug[10] = b'Q';
        assert!(check(&aug).unwrap_err().contains("augmentation"));
        let mut term = s.clone();
        term.extend_from_slice(&[0, 0, 0, 0]);
        term.extend_from_slice(&s[24..]);
        assert!(check(&term).unwrap_err().contains("terminator"));
        assert!(check(&s[..30]).is_err());
        for cut in 0..s.len() {
            let _ = check(&s[..cut]);
        }
    }
}
