//! Warm start (`DRTI_WARM=1`, issue 12): the edges a run inlined are kept per module, by
//! the hash of the module's embedded bitcode, in the code cache's directory; a later
//! process running the same module marks them hot as soon as both ends are loaded, so its
//! known-hot functions are compiled (from the cache, usually: no compile at all) at
//! start-up instead of after they get hot again. The guards keep the code right whatever
//! this run's targets are; a warm edge that is not hot this time costs one compile.
//!
//! Stored as a cache entry (`drti_cache`, atomic and checksummed) of text lines
//! `site<TAB>target module hash (hex)<TAB>target IR name<TAB>calls/s`.

use bitcode_embed::protocol::Hash;
use drti_cache::{Key, KeyBuilder};

/// One inlined edge of a module, as a later run can find it again.
#[derive(Clone, Debug, PartialEq)]
pub struct WarmEdge {
    /// The site's index in the caller's module.
    pub site: u32,
    /// The target's module, by hash of its embedded bitcode.
    pub target_module: Hash,
    /// The target's IR name.
    pub target: String,
    /// Its last call rate (calls/s), which the compile policy weighs.
    pub calls_per_s: f64,
}

/// Most edges kept per module.
const MAX_EDGES: usize = 4096;

/// The cache key of module `hash`'s warm edges.
pub fn key(hash: &Hash) -> Key {
    let mut k = KeyBuilder::new("drti warm edges v1");
    k.field("module", hash);
    k.finish()
}

fn hex(h: &Hash) -> String {
    h.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Hash> {
    Key::from_hex(s).map(|k| k.0)
}

/// The stored form of `edges`.
pub fn encode(edges: &[WarmEdge]) -> Vec<u8> {
    let mut out = String::new();
    for e in edges.iter().take(MAX_EDGES) {
        // IR names never hold tabs or newlines (LLVM would quote them; we skip such edges).
        if e.target.contains(['\t', '\n']) {
            continue;
        }
        out.push_str(&format!("{}\t{}\t{}\t{}\n", e.site, hex(&e.target_module), e.target, e.calls_per_s));
    }
    out.into_bytes()
}

/// The edges stored in `bytes`; lines that do not parse are left out.
pub fn decode(bytes: &[u8]) -> Vec<WarmEdge> {
    let text = String::from_utf8_lossy(bytes);
    text.lines()
        .take(MAX_EDGES)
        .filter_map(|l| {
            let mut f = l.split('\t');
            let site = f.next()?.parse().ok()?;
            let target_module = unhex(f.next()?)?;
            let target = f.next()?.to_owned();
            let calls_per_s: f64 = f.next()?.parse().ok().filter(|r: &f64| r.is_finite() && *r >= 0.0)?;
            (f.next().is_none() && !target.is_empty()).then_some(WarmEdge { site, target_module, target, calls_per_s })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edges_round_trip_and_damage_is_left_out() {
        let edges = vec![
            WarmEdge { site: 3, target_module: [7; 32], target: "_ZN2Op4stepEl".into(), calls_per_s: 1.5e8 },
            WarmEdge { site: 0, target_module: [1; 32], target: "twice".into(), calls_per_s: 0.0 },
        ];
        assert_eq!(decode(&encode(&edges)), edges);
        let mut text = String::from_utf8(encode(&edges)).unwrap();
        text.push_str("x\tnothex\tf\t1\n4\t");
        text.push_str(&"ab".repeat(32));
        text.push_str("\tg\t-1\n\n");
        assert_eq!(decode(text.as_bytes()), edges, "bad lines are skipped");
        assert_ne!(key(&[1; 32]), key(&[2; 32]));
    }
}
