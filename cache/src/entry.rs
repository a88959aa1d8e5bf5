//! The entry file format: a fixed header, then the payload.
//!
//! ```text
//! 0   8  magic "DRTICACH"
//! 8   4  format version (1), little endian
//! 12  4  reserved (0)
//! 16  32 key
//! 48  8  payload length, little endian
//! 56  32 SHA-256 of the payload
//! 88  .. payload
//! ```

use crate::key::{sha256, Key};

/// First bytes of every entry.
pub const MAGIC: [u8; 8] = *b"DRTICACH";
/// Version of this format.
pub const FORMAT: u32 = 1;
/// Bytes before the payload.
pub const HEADER: usize = 88;

/// The bytes of an entry holding `payload` under `key`.
pub fn encode(key: &Key, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + payload.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&FORMAT.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&key.0);
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&sha256(payload));
    out.extend_from_slice(payload);
    out
}

/// The payload of entry bytes `bytes` stored under `key`, or why they are not a valid one.
pub fn decode<'a>(key: &Key, bytes: &'a [u8]) -> Result<&'a [u8], String> {
    if bytes.len() < HEADER {
        return Err(format!("{} bytes, shorter than the {HEADER}-byte header", bytes.len()));
    }
    if bytes[..8] != MAGIC {
        return Err("not a drti cache entry (bad magic)".into());
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().unwrap());
    if version != FORMAT {
        return Err(format!("entry format {version}, expected {FORMAT}"));
    }
    if bytes[16..48] != key.0 {
        return Err("entry holds another key".into());
    }
    let len = u64::from_le_bytes(bytes[48..56].try_into().unwrap());
    let payload = &bytes[HEADER..];
    if payload.len() as u64 != len {
        return Err(format!("payload is {} bytes, header says {len}", payload.len()));
    }
    if sha256(payload)[..] != bytes[56..88] {
        return Err("payload checksum mismatch".into());
    }
    Ok(payload)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::KeyBuilder;

    #[test]
    fn round_trip_and_every_kind_of_damage_is_refused() {
        let k = KeyBuilder::new("t").finish();
        let other = KeyBuilder::new("u").finish();
        let e = encode(&k, b"payload bytes");
        assert_eq!(decode(&k, &e).unwrap(), b"payload bytes");
        assert!(decode(&other, &e).unwrap_err().contains("another key"));
        assert!(decode(&k, &e[..e.len() - 1]).unwrap_err().contains("header says"));
        assert!(decode(&k, &e[..40]).unwrap_err().contains("shorter"));
        let mut flipped = e.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(decode(&k, &flipped).unwrap_err().contains("checksum"));
        let mut magic = e.clone();
        magic[0] = b'X';
        assert!(decode(&k, &magic).unwrap_err().contains("magic"));
        let mut version = e;
        version[8] = 9;
        assert!(decode(&k, &version).unwrap_err().contains("format 9"));
        assert_eq!(decode(&k, &encode(&k, b"")).unwrap(), b"");
    }
}
