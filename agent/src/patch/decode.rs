//! Recognising the bytes we may patch (iced-x86) and encoding the jump we write.

use iced_x86::{Code, Decoder, DecoderOptions, Instruction, Mnemonic};

/// What the 5 bytes at a patch point currently are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Site {
    /// Any 5-byte NOP: the entry as the instrumenter left it.
    Nop,
    /// `jmp rel32` to this absolute address.
    Jmp(u64),
}

fn decode_one(bytes: &[u8], ip: u64) -> Instruction {
    let mut d = Decoder::with_ip(64, bytes, ip, DecoderOptions::NONE);
    d.decode()
}

/// Classifies exactly 5 bytes at `ip`; `None` if they are not one 5-byte NOP or E9 jump.
pub(crate) fn classify(bytes: &[u8; 5], ip: u64) -> Option<Site> {
    let insn = decode_one(bytes, ip);
    if insn.is_invalid() || insn.len() != 5 {
        return None;
    }
    if insn.mnemonic() == Mnemonic::Nop {
        Some(Site::Nop)
    } else if insn.code() == Code::Jmp_rel32_64 && bytes[0] == 0xE9 {
        Some(Site::Jmp(insn.near_branch_target()))
    } else {
        None
    }
}

/// Offset of the patch point from the function entry, from the first bytes at `entry`:
/// an optional `endbr64`, then the 5 patchable bytes. `Err` says why not.
pub(crate) fn patch_offset(bytes: &[u8], entry: u64) -> Result<u64, &'static str> {
    let first = decode_one(bytes, entry);
    let off = if !first.is_invalid() && first.code() == Code::Endbr64 {
        first.len() as u64
    } else {
        0
    };
    let rest = bytes
        .get(off as usize..off as usize + 5)
        .ok_or("entry too short")?;
    let five: &[u8; 5] = rest.try_into().map_err(|_| "entry too short")?;
    match classify(five, entry + off) {
        Some(_) => Ok(off),
        None => Err("expected [endbr64] then a 5-byte NOP or jmp rel32"),
    }
}

/// `jmp rel32` at `at` to `to`, if `to` is within reach (±2 GiB of the next instruction).
pub(crate) fn jmp_rel32(at: u64, to: u64) -> Option<[u8; 5]> {
    let rel = i32::try_from((to as i64).wrapping_sub(at.wrapping_add(5) as i64)).ok()?;
    let r = rel.to_le_bytes();
    Some([0xE9, r[0], r[1], r[2], r[3]])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patch_decode_entries() {
        let clang = [0x0f, 0x1f, 0x44, 0x00, 0x08, 0xc3];
        assert_eq!(patch_offset(&clang, 0x1000), Ok(0));
        let cet = [0xf3, 0x0f, 0x1e, 0xfa, 0x0f, 0x1f, 0x44, 0x00, 0x08, 0xc3];
        assert_eq!(patch_offset(&cet, 0x1000), Ok(4));
        // gcc's five 1-byte NOPs are five instructions: a thread may sit between them.
        assert!(patch_offset(&[0x90; 6], 0x1000).is_err());
        assert!(patch_offset(&[0xb8, 2, 0, 0, 0, 0xc3], 0x1000).is_err());
        assert!(patch_offset(&[0xf3, 0x0f, 0x1e, 0xfa, 0x0f], 0x1000).is_err());
    }

    #[test]
    fn patch_decode_jump_roundtrip() {
        let at = 0x5555_0000_1000u64;
        for to in [at + 5, at - 0x7000_0000, at + 0x7fff_0000, at] {
            let j = jmp_rel32(at, to).unwrap();
            assert_eq!(classify(&j, at), Some(Site::Jmp(to)));
        }
        assert_eq!(jmp_rel32(at, at + (1 << 32)), None);
        assert_eq!(jmp_rel32(at, at - (1 << 31) - 1), None);
        assert_eq!(
            classify(&[0x0f, 0x1f, 0x44, 0x00, 0x00], at),
            Some(Site::Nop)
        );
        assert_eq!(
            classify(&[0x66, 0x0f, 0x1f, 0x40, 0x00], at),
            Some(Site::Nop)
        );
        assert_eq!(classify(&[0x0f, 0x1f, 0x40, 0x00, 0xc3], at), None); // 4-byte NOP, ret
    }
}
