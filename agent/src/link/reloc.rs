//! Relocation arithmetic for x86-64 (System V psABI, small code model): what each
//! supported type computes and whether the result fits its field. Pure functions on
//! numbers and byte slices, so every overflow check is unit-tested without a mapping.

use object::elf;

/// The relocation types we apply. Everything else is rejected by `Kind::from_elf`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `S + A`, 64 bits.
    Abs64,
    /// `S + A`, zero-extended 32 bits (`R_X86_64_32`).
    Abs32,
    /// `S + A`, sign-extended 32 bits (`R_X86_64_32S`).
    Abs32S,
    /// `S + A - P`, signed 32 bits.
    Pc32,
    /// `L + A - P` where L is S, or a stub that jumps to S when S is out of reach.
    Plt32,
    /// `G + A - P`: a slot of our GOT holding S (GOTPCREL, GOTPCRELX, REX_GOTPCRELX).
    GotPc32,
    /// `S + A - P`, 64 bits.
    Pc64,
}

impl Kind {
    pub fn from_elf(r_type: u32) -> Option<Kind> {
        Some(match r_type {
            elf::R_X86_64_64 => Kind::Abs64,
            elf::R_X86_64_32 => Kind::Abs32,
            elf::R_X86_64_32S => Kind::Abs32S,
            elf::R_X86_64_PC32 => Kind::Pc32,
            elf::R_X86_64_PLT32 => Kind::Plt32,
            elf::R_X86_64_GOTPCREL | elf::R_X86_64_GOTPCRELX | elf::R_X86_64_REX_GOTPCRELX => Kind::GotPc32,
            elf::R_X86_64_PC64 => Kind::Pc64,
            _ => return None,
        })
    }

    /// Bytes written at the relocated place.
    pub fn width(self) -> usize {
        match self {
            Kind::Abs64 | Kind::Pc64 => 8,
            _ => 4,
        }
    }
}

/// The value did not fit the relocation's field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Overflow {
    pub value: i128,
}

/// The little-endian bytes of `value` for a field of `kind`, or `Overflow`.
/// `value` is the exact `S + A`, `S + A - P` or `G + A - P`; like the processor, we take
/// it modulo 2^64 (a 64-bit field always holds it), and a 32-bit field must give back
/// that 64-bit value when zero-extended (`R_X86_64_32`) or sign-extended (all others).
pub fn encode(kind: Kind, value: i128) -> Result<Vec<u8>, Overflow> {
    let bad = Overflow { value };
    let word = value as u64; // modulo 2^64
    Ok(match kind {
        Kind::Abs64 | Kind::Pc64 => word.to_le_bytes().to_vec(),
        Kind::Abs32 => u32::try_from(word).map_err(|_| bad)?.to_le_bytes().to_vec(),
        Kind::Abs32S | Kind::Pc32 | Kind::Plt32 | Kind::GotPc32 => i32::try_from(word as i64).map_err(|_| bad)?.to_le_bytes().to_vec(),
    })
}

/// `S + A - P`, exact.
pub fn pc_relative(s: u64, a: i64, p: u64) -> i128 {
    s as i128 + a as i128 - p as i128
}

/// `S + A`, exact.
pub fn absolute(s: u64, a: i64) -> i128 {
    s as i128 + a as i128
}

/// Write `bytes` at `offset` of `section`, which must hold them entirely.
pub fn write_at(section: &mut [u8], offset: u64, bytes: &[u8]) -> Result<(), String> {
    let start = usize::try_from(offset).map_err(|_| format!("relocation offset {offset:#x} out of range"))?;
    let end = start.checked_add(bytes.len()).filter(|&e| e <= section.len());
    match end {
        Some(end) => {
            section[start..end].copy_from_slice(bytes);
            Ok(())
        }
        None => Err(format!("relocation at {offset:#x} (+{}) past the end of its section ({:#x} bytes)", bytes.len(), section.len())),
    }
}

/// A stub: `jmp *disp32(%rip)` through a GOT slot, padded with `int3` to `STUB_SIZE`.
pub const STUB_SIZE: usize = 8;

/// The bytes of a stub at `stub` that jumps through the 8-byte slot at `slot`.
pub fn stub(stub: u64, slot: u64) -> Result<[u8; STUB_SIZE], Overflow> {
    // The displacement is relative to the end of the 6-byte instruction.
    let disp = encode(Kind::Pc32, pc_relative(slot, 0, stub + 6))?;
    Ok([0xff, 0x25, disp[0], disp[1], disp[2], disp[3], 0xcc, 0xcc])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pc32_limits() {
        let p = 0x7000_0000_0000u64;
        // Largest forward and backward reach of a signed 32-bit displacement.
        assert_eq!(encode(Kind::Pc32, pc_relative(p + 0x7fff_ffff, 0, p)).unwrap(), 0x7fff_ffffi32.to_le_bytes());
        assert_eq!(encode(Kind::Pc32, pc_relative(p - 0x8000_0000, 0, p)).unwrap(), i32::MIN.to_le_bytes());
        assert!(encode(Kind::Pc32, pc_relative(p + 0x8000_0000, 0, p)).is_err());
        assert!(encode(Kind::Pc32, pc_relative(p - 0x8000_0001, 0, p)).is_err());
        // The addend counts: -4 brings an out-of-range target just back in.
        assert!(encode(Kind::Plt32, pc_relative(p + 0x8000_0003, -4, p)).is_ok());
        assert!(encode(Kind::Plt32, pc_relative(p + 0x8000_0004, -4, p)).is_err());
        // A weak undefined symbol (0) is far from code in the upper half of user space.
        assert!(encode(Kind::GotPc32, pc_relative(0, -4, 0x7fff_ffff_f000)).is_err());
        assert!(encode(Kind::Pc32, pc_relative(0x7fff_ffff_f000, 0, 0)).is_err());
    }

    #[test]
    fn abs32_zero_and_sign_extension() {
        assert_eq!(encode(Kind::Abs32, absolute(0xffff_fff0, 0xf)).unwrap(), u32::MAX.to_le_bytes());
        assert!(encode(Kind::Abs32, absolute(0xffff_fff0, 0x10)).is_err());
        assert!(encode(Kind::Abs32, absolute(0, -1)).is_err());
        assert_eq!(encode(Kind::Abs32S, absolute(0x7fff_ffff, 0)).unwrap(), i32::MAX.to_le_bytes());
        assert!(encode(Kind::Abs32S, absolute(0x8000_0000, 0)).is_err());
        // 0xffffffff80000000 is the sign extension of i32::MIN: representable in 32S.
        assert_eq!(encode(Kind::Abs32S, absolute(0xffff_ffff_8000_0000, 0)).unwrap(), i32::MIN.to_le_bytes());
        assert!(encode(Kind::Abs32S, absolute(0xffff_ffff_7fff_ffff, 0)).is_err());
        assert!(encode(Kind::Abs32S, absolute(0x5555_0000_1000, 8)).is_err());
    }

    #[test]
    fn sixty_four_bit_fields() {
        assert_eq!(encode(Kind::Abs64, absolute(0x7fff_1234_5678, 8)).unwrap(), 0x7fff_1234_5680u64.to_le_bytes());
        assert_eq!(encode(Kind::Abs64, absolute(u64::MAX, 0)).unwrap(), u64::MAX.to_le_bytes());
        // 64-bit fields wrap like the address arithmetic that uses them.
        assert_eq!(encode(Kind::Abs64, absolute(u64::MAX, 1)).unwrap(), 0u64.to_le_bytes());
        assert_eq!(encode(Kind::Abs64, absolute(0x1000, -0x1001)).unwrap(), u64::MAX.to_le_bytes());
        assert_eq!(encode(Kind::Pc64, pc_relative(0, 0, 0x10)).unwrap(), (-16i64).to_le_bytes());
        assert_eq!(encode(Kind::Pc64, pc_relative(0x7fff_0000_0000, 8, 0x1000)).unwrap(), 0x7ffe_ffff_f008u64.to_le_bytes());
    }

    #[test]
    fn stub_encoding_and_reach() {
        let s = stub(0x1000, 0x2000).unwrap();
        assert_eq!(&s[..2], &[0xff, 0x25]);
        assert_eq!(i32::from_le_bytes(s[2..6].try_into().unwrap()), 0x2000 - 0x1006);
        assert!(stub(0x1000, 0x1000 + (1 << 32)).is_err());
    }

    #[test]
    fn writes_stay_inside_the_section() {
        let mut sec = [0u8; 8];
        write_at(&mut sec, 4, &[1, 2, 3, 4]).unwrap();
        assert_eq!(sec, [0, 0, 0, 0, 1, 2, 3, 4]);
        assert!(write_at(&mut sec, 5, &[1, 2, 3, 4]).is_err());
        assert!(write_at(&mut sec, u64::MAX, &[1]).is_err());
    }

    #[test]
    fn unknown_types_are_rejected() {
        assert_eq!(Kind::from_elf(elf::R_X86_64_PLT32), Some(Kind::Plt32));
        for t in [elf::R_X86_64_TPOFF32, elf::R_X86_64_GOTTPOFF, elf::R_X86_64_TLSGD, elf::R_X86_64_GOTOFF64, elf::R_X86_64_COPY, 200] {
            assert_eq!(Kind::from_elf(t), None, "type {t}");
        }
    }
}
