//! What to compile, in which order, and when not to: the compile policy as pure code (no
//! clock, no globals, no LLVM), in the manner of HotSpot's and V8's compile queues.
//!
//! * **Heat is a rate.** Each edge keeps a decayed calls-per-second estimate ([`Rate`]);
//!   `DRTI_HOT_THRESHOLD` stays the minimum evidence (calls) before an edge counts at all.
//! * **Benefit** of compiling F is the calls per second of its hot edges times the saving
//!   per inlined call ([`SAVING_NS_PER_CALL`]): milliseconds of CPU saved per second.
//! * **Cost** is the compile's CPU time, estimated from what compiles of the same module
//!   cost so far ([`CostModel`]).
//! * **Order**: highest benefit per millisecond of compile first.
//! * **Payback**: a compile is only worth it if it pays for itself within the horizon the
//!   run has shown so far (a program that has run for T seconds is expected to run about
//!   as long again), never less than [`MIN_HORIZON_S`]. A mutex wrapper called 70k times
//!   a second never earns a 50 ms compile; an interpreter's hot callback does at once.
//!   A threshold the user gave (`DRTI_HOT_THRESHOLD`, "compile after N calls" in
//!   DESIGN.md; 1 = at first sight) skips this test: the default threshold is only the
//!   minimum evidence.
//! * **Budget**: the JIT's CPU time stays within `DRTI_JIT_BUDGET` (a share of the
//!   process's CPU time) plus a start-up allowance ([`INITIAL_BUDGET_MS`]).
//! * **Back-off**: after each deopt a function needs twice the evidence.

/// Estimated time saved by one inlined indirect call: the call and return, the indirect
/// branch, argument moves and the callee's prologue, before what inlining enables (the
/// demos save 3-5 ns per call at -O2 on this machine: 2.9-3.9x faster loops of ~4 ns).
pub const SAVING_NS_PER_CALL: f64 = 3.0;
/// Compile CPU assumed before any compile of a module was measured.
pub const DEFAULT_COMPILE_MS: f64 = 40.0;
/// The shortest payback horizon: short runs still compile what pays back this quickly.
/// Rates seen early in a run are often bursts (zstd -19's block compressor: 12M calls/s
/// for 50 ms in a 0.26 s run); at 2 s such a burst earned a 106 ms compile that could
/// never pay back, at 0.5 s it waits for the rate to hold.
pub const MIN_HORIZON_S: f64 = 0.5;
/// JIT CPU allowed before the share of process CPU applies (LLVM's first compile).
pub const INITIAL_BUDGET_MS: f64 = 1000.0;
/// Time constant of the decayed call rate.
pub const RATE_TAU_S: f64 = 0.5;

/// A decayed calls-per-second estimate of one edge.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Rate {
    /// Calls per second.
    pub per_s: f64,
    /// When the estimate was last updated (seconds since the agent started).
    pub at_s: f64,
    /// When the edge was first seen.
    pub since_s: f64,
    /// Calls observed during the first time constant.
    pub warmup_calls: f64,
    /// Whether any call was observed.
    pub seen: bool,
}

/// The shortest span a rate is averaged over (a first burst is not a rate of millions).
const MIN_SPAN_S: f64 = 0.01;

impl Rate {
    /// Adds `calls` observed at time `now_s`, made over the `span_s` seconds before it.
    /// During the first time constant the rate is the plain average since the start of
    /// the first observation's span (over at least [`MIN_SPAN_S`]); afterwards an
    /// exponentially decayed average with time constant [`RATE_TAU_S`].
    pub fn observe(&mut self, calls: f64, now_s: f64, span_s: f64) {
        if !self.seen {
            *self = Rate { per_s: 0.0, at_s: now_s, since_s: now_s - span_s.max(0.0), warmup_calls: 0.0, seen: true };
        }
        let age = (now_s - self.since_s).max(0.0);
        if age < RATE_TAU_S {
            self.warmup_calls += calls;
            self.per_s = self.warmup_calls / age.max(MIN_SPAN_S);
        } else {
            let dt = (now_s - self.at_s).max(0.0);
            let decay = (-dt / RATE_TAU_S).exp();
            self.per_s = self.per_s * decay + calls / RATE_TAU_S;
        }
        self.at_s = now_s;
    }

    /// The rate at `now_s`, decayed for the time without observations.
    pub fn at(&self, now_s: f64) -> f64 {
        if !self.seen {
            return 0.0;
        }
        let idle = (now_s - self.at_s).max(0.0);
        if idle <= RATE_TAU_S {
            self.per_s
        } else {
            self.per_s * (-(idle - RATE_TAU_S) / RATE_TAU_S).exp()
        }
    }
}

/// Learns what compiles cost: a decayed average of measured compile CPU milliseconds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CostModel {
    /// Expected CPU ms of the next compile.
    pub expected_ms: f64,
    /// Compiles measured.
    pub samples: u32,
}

impl Default for CostModel {
    fn default() -> Self {
        CostModel { expected_ms: DEFAULT_COMPILE_MS, samples: 0 }
    }
}

impl CostModel {
    /// Takes in one measured compile.
    pub fn observe(&mut self, ms: f64) {
        self.expected_ms = if self.samples == 0 { ms } else { 0.7 * self.expected_ms + 0.3 * ms };
        self.samples += 1;
    }
}

/// One function waiting for a compile.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Candidate {
    /// Calls per second over its hot edges.
    pub calls_per_s: f64,
    /// Expected compile CPU ms.
    pub cost_ms: f64,
}

impl Candidate {
    /// CPU milliseconds saved per second of run time once compiled.
    pub fn benefit_ms_per_s(&self) -> f64 {
        self.calls_per_s * SAVING_NS_PER_CALL / 1e6
    }

    /// Seconds of run time until the compile has paid for itself.
    pub fn payback_s(&self) -> f64 {
        let b = self.benefit_ms_per_s();
        if b <= 0.0 {
            f64::INFINITY
        } else {
            self.cost_ms / b
        }
    }

    /// Benefit per millisecond of compile: the queue's order.
    pub fn priority(&self) -> f64 {
        self.benefit_ms_per_s() / self.cost_ms.max(0.1)
    }
}

/// The process facts a decision needs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Process {
    /// Seconds since the agent started.
    pub run_s: f64,
    /// CPU ms the process has used (all threads).
    pub cpu_ms: f64,
    /// CPU ms the JIT has used.
    pub jit_cpu_ms: f64,
}

/// The policy's knobs (from the configuration).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Knobs {
    /// `DRTI_HOT_THRESHOLD`.
    pub threshold: u64,
    /// `DRTI_JIT_BUDGET`: JIT CPU as a share of process CPU; 0 = unlimited.
    pub budget_share: f64,
    /// Compiles must pay back (the threshold is only the minimum evidence).
    pub require_payback: bool,
}

/// What to do with the waiting functions now.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Decision {
    /// Compile candidate `i`.
    Compile(usize),
    /// Nothing now: the budget is spent (try again later).
    OverBudget,
    /// Nothing pays back yet (rates may still rise).
    NothingPays,
    /// No candidate.
    Idle,
}

/// Whether the JIT may spend more CPU.
pub fn within_budget(k: &Knobs, p: &Process) -> bool {
    k.budget_share <= 0.0 || p.jit_cpu_ms <= INITIAL_BUDGET_MS + k.budget_share * p.cpu_ms
}

/// Whether compiling `c` pays back within the horizon the run has shown.
pub fn pays_back(k: &Knobs, c: &Candidate, p: &Process) -> bool {
    !k.require_payback || c.payback_s() <= p.run_s.max(MIN_HORIZON_S)
}

/// Picks the candidate to compile next: highest priority among those that pay back.
pub fn decide(k: &Knobs, cands: &[Candidate], p: &Process) -> Decision {
    if cands.is_empty() {
        return Decision::Idle;
    }
    if !within_budget(k, p) {
        return Decision::OverBudget;
    }
    cands
        .iter()
        .enumerate()
        .filter(|(_, c)| pays_back(k, c, p))
        .max_by(|a, b| a.1.priority().total_cmp(&b.1.priority()))
        .map_or(Decision::NothingPays, |(i, _)| Decision::Compile(i))
}

/// Calls an edge of a function deoptimised `deopts` times needs before it is hot again.
pub fn evidence_needed(threshold: u64, deopts: u32) -> u64 {
    threshold.saturating_mul(1u64 << deopts.min(16))
}

/// What the edges of one profiled call site say, for [`profiling_decided`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SiteEvidence {
    /// Samples of the site since its function's profiling (re)started.
    pub samples: u64,
    /// Some target of the site is decorated code the JIT has not rejected: inlining it may
    /// still pay.
    pub open: bool,
}

/// Samples a site needs before its evidence counts: a target with 1% of the site's calls
/// is missing from them with probability 0.99^512 < 1%. At the agent's target rate that
/// is some 50 ms of a busy site; a site that rarely runs costs little anyway.
pub const DECIDED_SAMPLES: u64 = 512;

/// Whether profiling a function whose sites show `sites` can stop: it has sites, and each
/// has [`DECIDED_SAMPLES`] samples, all of them of targets outside decorated code (or
/// rejected by the JIT). Nothing it calls could be inlined, so its sites should cost
/// nothing (profiling restarts when a new module is loaded).
pub fn profiling_decided(sites: &[SiteEvidence]) -> bool {
    !sites.is_empty() && sites.iter().all(|s| s.samples >= DECIDED_SAMPLES && !s.open)
}

#[cfg(test)]
mod tests {
    use super::*;

    const K: Knobs = Knobs { threshold: 10_000, budget_share: 0.25, require_payback: true };

    fn proc_at(run_s: f64) -> Process {
        Process { run_s, cpu_ms: run_s * 1000.0, jit_cpu_ms: 0.0 }
    }

    #[test]
    fn rate_of_a_steady_edge_converges_and_decays_when_idle() {
        let mut r = Rate::default();
        for i in 0..200 {
            r.observe(10_000.0, i as f64 * 0.01, 0.01); // 1M calls/s
        }
        assert!((r.per_s - 1e6).abs() / 1e6 < 0.1, "{r:?}");
        assert!(r.at(2.0 + 2.0) < r.at(2.0) / 10.0, "idle edges cool down");
        let mut burst = Rate::default();
        burst.observe(5000.0, 0.0, 0.0);
        assert!(burst.per_s > 0.0 && burst.per_s <= 5000.0 / MIN_SPAN_S, "a first burst counts, bounded: {burst:?}");
        // A first sample standing for 20,000 calls made over the last 0.33 s is 60k calls/s
        // (a cold wrapper after a hot phase), not 20,000 calls in an instant.
        let mut late = Rate::default();
        late.observe(20_000.0, 5.0, 0.333);
        assert!((late.per_s - 60_000.0).abs() < 1000.0, "{late:?}");
    }

    #[test]
    fn an_early_burst_does_not_earn_a_compile_it_cannot_repay_soon() {
        // zstd -19: a burst in the first 50 ms of a 0.26 s run and a 106 ms compile. At 20M
        // calls/s it is repaid in 1.8 s: within the old 2 s minimum horizon (so it was
        // compiled), beyond what the run had shown (0.05 s) and the 0.5 s minimum.
        let burst = Candidate { calls_per_s: 20e6, cost_ms: 106.0 };
        assert!(!pays_back(&K, &burst, &proc_at(0.05)));
        // The same rate held for 3 s has shown it will last: it pays back.
        assert!(pays_back(&K, &burst, &proc_at(3.0)));
    }

    #[test]
    fn a_cold_wrapper_never_earns_a_compile_a_hot_callback_does() {
        let mutex = Candidate { calls_per_s: 70_000.0, cost_ms: 50.0 };
        let callback = Candidate { calls_per_s: 50e6, cost_ms: 50.0 };
        assert!(!pays_back(&K, &mutex, &proc_at(1.5)));
        assert!(pays_back(&K, &callback, &proc_at(0.1)));
        assert_eq!(decide(&K, &[mutex, callback], &proc_at(1.5)), Decision::Compile(1));
        assert_eq!(decide(&K, &[mutex], &proc_at(1.5)), Decision::NothingPays);
        // A long run makes the same compile worth it: 50 ms pays back in 238 s.
        assert!(pays_back(&K, &mutex, &proc_at(300.0)));
    }

    #[test]
    fn a_given_threshold_compiles_whatever_reaches_it() {
        let k = Knobs { threshold: 1, require_payback: false, ..K };
        let slow = Candidate { calls_per_s: 10.0, cost_ms: 500.0 };
        assert_eq!(decide(&k, &[slow], &proc_at(0.01)), Decision::Compile(0));
    }

    #[test]
    fn highest_benefit_per_cost_first() {
        let big_cheap = Candidate { calls_per_s: 10e6, cost_ms: 10.0 };
        let big_dear = Candidate { calls_per_s: 20e6, cost_ms: 400.0 };
        let small = Candidate { calls_per_s: 1e6, cost_ms: 10.0 };
        assert_eq!(decide(&K, &[small, big_dear, big_cheap], &proc_at(5.0)), Decision::Compile(2));
    }

    #[test]
    fn budget_caps_jit_cpu_after_the_allowance() {
        let c = Candidate { calls_per_s: 50e6, cost_ms: 50.0 };
        let mut p = proc_at(4.0);
        p.jit_cpu_ms = INITIAL_BUDGET_MS + 0.25 * p.cpu_ms + 1.0;
        assert_eq!(decide(&K, &[c], &p), Decision::OverBudget);
        p.jit_cpu_ms = 500.0;
        assert_eq!(decide(&K, &[c], &p), Decision::Compile(0));
        let unlimited = Knobs { budget_share: 0.0, ..K };
        p.jit_cpu_ms = 1e9;
        assert_eq!(decide(&unlimited, &[c], &p), Decision::Compile(0));
    }

    #[test]
    fn cost_model_learns_and_deopts_back_off() {
        let mut m = CostModel::default();
        assert_eq!(m.expected_ms, DEFAULT_COMPILE_MS);
        m.observe(1000.0);
        assert_eq!(m.expected_ms, 1000.0);
        m.observe(10.0);
        assert!(m.expected_ms < 1000.0 && m.expected_ms > 10.0);
        assert_eq!(evidence_needed(100, 0), 100);
        assert_eq!(evidence_needed(100, 2), 400);
        assert_eq!(evidence_needed(u64::MAX, 3), u64::MAX);
    }

    #[test]
    fn profiling_stops_only_when_every_site_calls_outside_with_enough_evidence() {
        let out = SiteEvidence { samples: DECIDED_SAMPLES, open: false };
        assert!(profiling_decided(&[out]));
        assert!(profiling_decided(&[out, SiteEvidence { samples: 10 * DECIDED_SAMPLES, open: false }]));
        // No sites: nothing to decide (such a function has no profiled entry anyway).
        assert!(!profiling_decided(&[]));
        // Too few samples at one site.
        assert!(!profiling_decided(&[out, SiteEvidence { samples: DECIDED_SAMPLES - 1, open: false }]));
        // One site reaches decorated code that may still be inlined.
        assert!(!profiling_decided(&[out, SiteEvidence { samples: 1000, open: true }]));
        assert!(!profiling_decided(&[SiteEvidence { samples: 0, open: false }]));
    }
}
