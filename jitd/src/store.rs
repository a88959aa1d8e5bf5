//! Modules the server holds, by bitcode hash, shared by all sessions and bounded in size
//! (least recently used modules go first).

use bitcode_embed::protocol::Hash;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Default bound on the bitcode kept: a few large programs' modules.
pub const DEFAULT_MAX_BYTES: u64 = 1 << 30;

/// A module the server holds.
pub struct StoredModule {
    /// Raw clean bitcode.
    pub bitcode: Vec<u8>,
    /// Global names in address-table order.
    pub globals: Vec<String>,
}

struct Entry {
    module: Arc<StoredModule>,
    last_use: u64,
}

struct Inner {
    modules: HashMap<Hash, Entry>,
    bytes: u64,
    clock: u64,
}

/// The module store.
pub struct Store {
    inner: Mutex<Inner>,
    max_bytes: u64,
}

impl Store {
    /// An empty store keeping at most `max_bytes` of bitcode (one module larger than that
    /// is still kept while it is the only one).
    pub fn new(max_bytes: u64) -> Store {
        Store { inner: Mutex::new(Inner { modules: HashMap::new(), bytes: 0, clock: 0 }), max_bytes }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a module (its embedded, compressed bitcode) after checking its hash and
    /// decompressing it; Err says why it was refused.
    pub fn put(&self, hash: Hash, compressed: &[u8], raw_size: u64, globals: Vec<String>) -> Result<(), String> {
        if drti_cache::key::sha256(compressed) != hash {
            return Err("module bitcode does not match its hash".into());
        }
        let bitcode = bitcode_embed::reader::decompress_bitcode(compressed, raw_size).map_err(|e| format!("module bitcode: {e}"))?;
        let mut s = self.lock();
        s.clock += 1;
        let now = s.clock;
        let len = bitcode.len() as u64;
        if let Some(old) = s.modules.insert(hash, Entry { module: Arc::new(StoredModule { bitcode, globals }), last_use: now }) {
            s.bytes -= old.module.bitcode.len() as u64;
        }
        s.bytes += len;
        while s.bytes > self.max_bytes && s.modules.len() > 1 {
            let oldest = *s.modules.iter().filter(|(h, _)| **h != hash).min_by_key(|(_, e)| e.last_use).map(|(h, _)| h).unwrap();
            let gone = s.modules.remove(&oldest).unwrap();
            s.bytes -= gone.module.bitcode.len() as u64;
        }
        Ok(())
    }

    /// A module, marking it used.
    pub fn get(&self, hash: &Hash) -> Option<Arc<StoredModule>> {
        let mut s = self.lock();
        s.clock += 1;
        let now = s.clock;
        let e = s.modules.get_mut(hash)?;
        e.last_use = now;
        Some(e.module.clone())
    }

    /// The hashes in `wanted` the store does not hold, each once.
    pub fn missing(&self, wanted: impl IntoIterator<Item = Hash>) -> Vec<Hash> {
        let s = self.lock();
        let mut out: Vec<Hash> = Vec::new();
        for h in wanted {
            if !s.modules.contains_key(&h) && !out.contains(&h) {
                out.push(h);
            }
        }
        out
    }

    /// Bytes of bitcode held.
    pub fn bytes(&self) -> u64 {
        self.lock().bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (hash, compressed bytes, raw size) of `len` bytes of `fill`.
    fn module(fill: u8, len: usize) -> (Hash, Vec<u8>, u64) {
        let b = zstd::bulk::compress(&vec![fill; len], 3).unwrap();
        (drti_cache::key::sha256(&b), b, len as u64)
    }

    #[test]
    fn modules_are_checked_kept_and_bounded() {
        let store = Store::new(250);
        let (ha, a, na) = module(1, 100);
        let (hb, b, nb) = module(2, 100);
        let (hc, c, nc) = module(3, 100);
        assert!(store.put(ha, &b, nb, vec![]).unwrap_err().contains("hash"));
        assert!(store.put(ha, &a, na + 1, vec![]).unwrap_err().contains("bitcode"), "a wrong size is refused");
        assert!(store.put(ha, &a, 1 << 40, vec![]).unwrap_err().contains("bitcode"), "a huge size is refused before allocating");
        store.put(ha, &a, na, vec![]).unwrap();
        store.put(hb, &b, nb, vec![]).unwrap();
        assert_eq!(store.missing([ha, hb, hc, hc]), vec![hc]);
        // Using a makes b the least recently used: adding c evicts b.
        assert!(store.get(&ha).is_some());
        store.put(hc, &c, nc, vec![]).unwrap();
        assert_eq!(store.missing([ha, hb, hc]), vec![hb]);
        assert_eq!(store.bytes(), 200);
        // A module over the bound alone is kept.
        let (hbig, big, nbig) = module(4, 1000);
        store.put(hbig, &big, nbig, vec![]).unwrap();
        assert_eq!(store.missing([hbig]), Vec::<Hash>::new());
    }
}
