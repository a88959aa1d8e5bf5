//! The set of patch points, read by the SIGTRAP handler: fixed size, lock-free, no
//! allocation (a signal handler may run while the interrupted thread holds the malloc lock).
//!
//! Open addressing over `AtomicU64` slots with linear probing. Only the patcher writes
//! (under its mutex); handlers only read, so a slot goes empty → address → tombstone and
//! readers never see a half-made entry.

use std::sync::atomic::{AtomicU64, Ordering};

const EMPTY: u64 = 0;
/// Code addresses are never 1; a removed entry keeps probe chains intact.
const TOMBSTONE: u64 = 1;

pub(crate) struct PointTable<const N: usize> {
    slots: [AtomicU64; N],
}

fn home<const N: usize>(addr: u64) -> usize {
    // Fibonacci hashing: neighbouring entries spread over the table.
    (addr.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as usize % N
}

impl<const N: usize> PointTable<N> {
    pub(crate) const fn new() -> Self {
        PointTable {
            slots: [const { AtomicU64::new(EMPTY) }; N],
        }
    }

    /// Async-signal-safe.
    pub(crate) fn contains(&self, addr: u64) -> bool {
        if addr <= TOMBSTONE {
            return false;
        }
        let h = home::<N>(addr);
        for i in 0..N {
            match self.slots[(h + i) % N].load(Ordering::SeqCst) {
                EMPTY => return false,
                v if v == addr => return true,
                _ => {}
            }
        }
        false
    }

    /// Adds `addr` (no-op if present). `false` if the table is full. Single writer only.
    pub(crate) fn insert(&self, addr: u64) -> bool {
        debug_assert!(addr > TOMBSTONE);
        if self.contains(addr) {
            return true;
        }
        let h = home::<N>(addr);
        for i in 0..N {
            let slot = &self.slots[(h + i) % N];
            let v = slot.load(Ordering::SeqCst);
            if v == EMPTY || v == TOMBSTONE {
                slot.store(addr, Ordering::SeqCst);
                return true;
            }
        }
        false
    }

    /// Removes every address in `[start, end)`. Single writer only.
    pub(crate) fn remove_range(&self, start: u64, end: u64) {
        for slot in &self.slots {
            let v = slot.load(Ordering::SeqCst);
            if v > TOMBSTONE && (start..end).contains(&v) {
                slot.store(TOMBSTONE, Ordering::SeqCst);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patch_points_table() {
        let t = PointTable::<8>::new();
        assert!(!t.contains(0x1000));
        assert!(!t.contains(0) && !t.contains(1));
        for a in 1..=8u64 {
            assert!(t.insert(a * 0x1000));
        }
        assert!(
            t.insert(0x3000),
            "re-inserting a present entry needs no slot"
        );
        assert!(!t.insert(0x9000), "full");
        assert!((1..=8u64).all(|a| t.contains(a * 0x1000)));
        assert!(!t.contains(0x9000));
        t.remove_range(0x2000, 0x4000);
        assert!(!t.contains(0x2000) && !t.contains(0x3000));
        assert!(t.contains(0x4000) && t.contains(0x1000) && t.contains(0x8000));
        // Tombstones are reused and do not cut probe chains.
        assert!(t.insert(0x9000) && t.insert(0xa000));
        assert!(!t.insert(0xb000));
        assert!(
            [0x1000u64, 0x4000, 0x5000, 0x6000, 0x7000, 0x8000, 0x9000, 0xa000]
                .iter()
                .all(|&a| t.contains(a))
        );
    }

    #[test]
    fn patch_points_collisions_probe_on() {
        let t = PointTable::<64>::new();
        // Many addresses; whichever collide must still all be found.
        let addrs: Vec<u64> = (0..48u64).map(|i| 0x5555_0000_0000 + i * 64).collect();
        for &a in &addrs {
            assert!(t.insert(a));
        }
        assert!(addrs.iter().all(|&a| t.contains(a)));
        t.remove_range(addrs[0], addrs[24]);
        assert!(addrs[..24].iter().all(|&a| !t.contains(a)));
        assert!(addrs[24..].iter().all(|&a| t.contains(a)));
    }
}
