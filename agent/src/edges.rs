//! The edge table: (module, site, target) → what the agent knows about that call edge.
//! Only the agent thread (and dlopen/dlclose under the state lock) touch it.

use dashmap::DashMap;

/// Identifies an edge: module id, module-level site index, target address.
pub type EdgeKey = (usize, u32, u64);

/// Edge states of the dump (DESIGN.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EdgeState {
    /// Observed, below the threshold.
    Cold,
    /// Past the threshold, not (yet) inlined.
    Hot,
    /// Inlined into an active F+.
    Inlined,
    /// Cannot be inlined; the reason is logged and kept in `reason`.
    Rejected,
    /// Was inlined, the patch was reverted (dlclose, deopt).
    Invalidated,
}

impl EdgeState {
    /// The dump spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            EdgeState::Cold => "cold",
            EdgeState::Hot => "hot",
            EdgeState::Inlined => "inlined",
            EdgeState::Rejected => "rejected",
            EdgeState::Invalidated => "invalidated",
        }
    }
}

/// Where a target leads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Callee {
    /// Function `function` of decorated module `module`.
    Decorated { module: usize, function: u32 },
    /// Code drti has no bitcode for (libc, undecorated libraries): named by dladdr.
    Outside { name: String, object: String },
}

/// What is known about one edge.
#[derive(Clone, Debug)]
pub struct Edge {
    /// Estimated calls since the program started.
    pub calls: u64,
    /// Estimated calls since the last deopt of the caller (drives hotness).
    pub recent: u64,
    /// Samples received.
    pub samples: u64,
    /// Current state.
    pub state: EdgeState,
    /// The resolved target.
    pub callee: Callee,
    /// Why the edge is rejected / invalidated.
    pub reason: Option<String>,
    /// Decayed calls per second (the compile policy's heat).
    pub rate: crate::policy::Rate,
}

/// All edges.
#[derive(Default)]
pub struct EdgeTable {
    /// The edges by key.
    pub map: DashMap<EdgeKey, Edge>,
}

impl EdgeTable {
    /// Edges of one site, hottest (recent calls) first.
    pub fn of_site(&self, module: usize, site: u32) -> Vec<(EdgeKey, Edge)> {
        let mut v: Vec<(EdgeKey, Edge)> =
            self.map.iter().filter(|e| e.key().0 == module && e.key().1 == site).map(|e| (*e.key(), e.value().clone())).collect();
        v.sort_by_key(|(_, e)| std::cmp::Reverse(e.recent));
        v
    }

    /// Sets the state (and reason) of one edge.
    pub fn set_state(&self, key: EdgeKey, state: EdgeState, reason: Option<String>) {
        if let Some(mut e) = self.map.get_mut(&key) {
            e.state = state;
            if reason.is_some() {
                e.reason = reason;
            }
        }
    }
}
