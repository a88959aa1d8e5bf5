//! Cache keys: SHA-256 over labelled fields, so two different plans can never produce the
//! same byte stream (every label and value is length-prefixed).

use sha2::{Digest, Sha256};

/// A cache key: the SHA-256 of what determines the cached code.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key(pub [u8; 32]);

impl Key {
    /// Lower-case hex, 64 characters.
    pub fn hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The key of a 64-character hex string.
    pub fn from_hex(s: &str) -> Option<Key> {
        if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let mut k = [0u8; 32];
        for (i, byte) in k.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(Key(k))
    }
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Key({})", self.hex())
    }
}

/// Builds a [`Key`] from labelled fields, in order.
pub struct KeyBuilder(Sha256);

impl KeyBuilder {
    /// A key for entries of `kind` (e.g. "f+ x86-64 object").
    pub fn new(kind: &str) -> KeyBuilder {
        let mut b = KeyBuilder(Sha256::new());
        b.field("kind", kind.as_bytes());
        b
    }

    /// Adds one field.
    pub fn field(&mut self, label: &str, value: &[u8]) -> &mut Self {
        for part in [label.as_bytes(), value] {
            self.0.update((part.len() as u64).to_le_bytes());
            self.0.update(part);
        }
        self
    }

    /// The key.
    pub fn finish(self) -> Key {
        Key(self.0.finalize().into())
    }
}

/// SHA-256 of `bytes` (module bitcode hashes, entry checksums).
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(fields: &[(&str, &[u8])]) -> Key {
        let mut b = KeyBuilder::new("test");
        for (l, v) in fields {
            b.field(l, v);
        }
        b.finish()
    }

    #[test]
    fn same_fields_same_key_and_hex_round_trips() {
        let a = key(&[("module", b"abc"), ("function", b"f")]);
        assert_eq!(a, key(&[("module", b"abc"), ("function", b"f")]));
        assert_eq!(Key::from_hex(&a.hex()), Some(a));
        assert_eq!(a.hex().len(), 64);
        assert_eq!(Key::from_hex("xyz"), None);
    }

    #[test]
    fn field_boundaries_and_labels_matter() {
        // "ab"+"c" and "a"+"bc" must differ: lengths are part of the stream.
        assert_ne!(key(&[("x", b"ab"), ("y", b"c")]), key(&[("x", b"a"), ("y", b"bc")]));
        assert_ne!(key(&[("x", b"1")]), key(&[("y", b"1")]));
        assert_ne!(KeyBuilder::new("a").finish(), KeyBuilder::new("b").finish());
    }
}
