//! On-stack replacement (issue 13), the agent's part: which OSR point of a function to
//! compile a continuation for. drti-cc places the points (loop headers whose loop holds an
//! indirect call, `drti_llvm_ir::osr`) and a check of each point's slot in F's profiled
//! twin; the JIT builds the continuation; the agent stores its address in the slot, and
//! every activation running the twin's loop moves into it at its next iteration.
//!
//! Used for functions that are entered once (`main`): their patched entry would never be
//! reached again. Pure code.

/// An OSR point of a function, from its module's metadata.
#[derive(Clone, Debug, PartialEq)]
pub struct Point {
    /// Index of the point's record in its module.
    pub index: u32,
    /// The loop header's block index in F.
    pub header: u32,
    /// The encoded live values (`jit_abi::OSR_LIVE_ARG`).
    pub live: Vec<u32>,
    /// The runtime-area slot index.
    pub slot: u32,
    /// Ordinals of F's sites inside the loop.
    pub sites: Vec<u32>,
}

/// The point to compile a continuation for, given the ordinals of F's sites that have hot
/// targets now: of the points whose loop holds one of them and that are not armed yet,
/// the innermost (the fewest sites; the activation reaches its header most often), the
/// first in F's order on a tie.
pub fn choose(points: &[Point], hot: &[u32], armed: &[u32]) -> Option<usize> {
    points
        .iter()
        .enumerate()
        .filter(|(_, p)| !armed.contains(&p.index) && p.sites.iter().any(|s| hot.contains(s)))
        .min_by_key(|(i, p)| (p.sites.len(), *i))
        .map(|(i, _)| i)
}

/// Samples from F's twin, of sites F's installed F+ guards, that show an activation still
/// running the twin, and the seconds they must span without a pause: activations in flight
/// at the patch (a recursion, a call that was running) leave it within milliseconds.
const STUCK_SAMPLES: u32 = 3;
const STUCK_AFTER_S: f64 = 0.05;

/// Whether an activation of a compiled F is stuck in F's twin (a loop from before the
/// patch), from the times of the twin's samples of F's guarded sites.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct StuckWatch {
    first_s: f64,
    last_s: f64,
    samples: u32,
}

impl StuckWatch {
    /// Records one such sample at `now_s`; true once they show a stuck activation (then
    /// the watch starts over).
    pub fn observe(&mut self, now_s: f64) -> bool {
        if self.samples == 0 || now_s - self.last_s > STUCK_AFTER_S {
            // The first sample, or one after a pause: what came before was activations
            // in flight, not a loop.
            *self = StuckWatch { first_s: now_s, last_s: now_s, samples: 0 };
        }
        self.last_s = now_s;
        self.samples += 1;
        let stuck = self.samples >= STUCK_SAMPLES && now_s - self.first_s >= STUCK_AFTER_S;
        if stuck {
            *self = StuckWatch::default();
        }
        stuck
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(index: u32, sites: &[u32]) -> Point {
        Point { index, header: index + 1, live: vec![], slot: index, sites: sites.to_vec() }
    }

    #[test]
    fn the_innermost_loop_holding_a_hot_site_is_chosen_once() {
        // An outer loop (sites 0, 1, 2) around an inner one (site 1), and a later loop (3).
        let points = [point(10, &[0, 1, 2]), point(11, &[1]), point(12, &[3])];
        assert_eq!(choose(&points, &[1], &[]), Some(1));
        assert_eq!(choose(&points, &[1], &[11]), Some(0), "once armed, the enclosing loop is next");
        assert_eq!(choose(&points, &[2], &[]), Some(0));
        assert_eq!(choose(&points, &[3], &[]), Some(2));
        assert_eq!(choose(&points, &[4], &[]), None, "no loop holds the hot site");
        assert_eq!(choose(&[], &[0], &[]), None);
    }

    #[test]
    fn a_twin_sampling_without_pause_for_50_ms_is_stuck_a_burst_is_not() {
        // A recursion in flight at the patch: a few samples within a millisecond, then none.
        let mut w = StuckWatch::default();
        assert!(!w.observe(1.0) && !w.observe(1.0005) && !w.observe(1.001));
        // Much later, samples again: the pause starts the watch over.
        assert!(!w.observe(2.0) && !w.observe(2.01) && !w.observe(2.03));
        assert!(w.observe(2.06), "sampling on for 50 ms: a loop");
        assert!(!w.observe(2.07), "the watch starts over once it has answered");
        // Sparse samples (more than 50 ms apart) never add up.
        let mut w = StuckWatch::default();
        assert!((0..20).all(|i| !w.observe(i as f64 * 0.06)));
    }
}
