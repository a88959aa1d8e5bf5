//! The agent's JSON dump (`DRTI_DUMP`), typed: one set of records for the writer (the
//! agent), the readers (`drti report`, its SVG/HTML renderer) and the tests.
//!
//! DESIGN.md's contract, version 1: the fields it lists stay (they are required here);
//! more may be added. So a reader ignores fields it does not know (a newer agent's), and
//! every field outside the contract has a default (an older agent's dump lacks it).

use serde::{Deserialize, Serialize};

/// The dump version this crate writes and reads.
pub const DUMP_VERSION: u64 = 1;

/// Edge states in the order an edge moves through them (`Dump::edges[].state`).
pub const EDGE_STATES: &[&str] = &["cold", "hot", "inlined", "rejected", "invalidated"];

/// The whole dump.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Dump {
    /// Always [`DUMP_VERSION`] when written; checked by [`Dump::from_json`].
    pub drti_dump_version: u64,
    pub pid: u32,
    /// The executable (`/proc/self/exe`), empty when unknown.
    pub exe: String,
    /// `DRTI_HOT_THRESHOLD`.
    pub threshold: u64,
    /// One sample every this many calls of a site.
    #[serde(default)]
    pub sample_period: u64,
    /// Samples the profiling queue dropped (full).
    #[serde(default)]
    pub samples_dropped: u64,
    /// Samples the profiling path took (dropped ones included).
    #[serde(default)]
    pub samples_taken: u64,
    /// Time to set the compiler up (the cache opened, the compiler found or connected);
    /// null when it never was.
    #[serde(default)]
    pub jit_load_ms: Option<f64>,
    /// The process's peak resident memory (VmHWM, KiB) when the dump was written: the
    /// application alone (the compiler process is another process); null if unreadable.
    #[serde(default)]
    pub peak_rss_kb: Option<u64>,
    /// Bytes of JIT code freed after their patches were reverted.
    #[serde(default)]
    pub jit_code_released: u64,
    /// JIT code blocks retired but not yet freed (a thread may still run them).
    #[serde(default)]
    pub jit_code_waiting: u64,
    /// Set in a forked child whose history is (partly) in the parent's dump.
    #[serde(default)]
    pub fork_child_note: Option<String>,
    /// CPU milliseconds spent in compiles.
    #[serde(default)]
    pub jit_cpu_ms: f64,
    /// `DRTI_JIT_BUDGET` (share of process CPU; 0 = unlimited).
    #[serde(default)]
    pub jit_budget: f64,
    /// Functions with hot edges the compile policy did not compile, and why.
    #[serde(default)]
    pub deferred: Vec<DumpDeferred>,
    pub modules: Vec<DumpModule>,
    /// Hottest (most calls) first.
    pub edges: Vec<DumpEdge>,
    pub compiles: Vec<DumpCompile>,
    pub patches: Vec<DumpPatch>,
    /// Decorated functions whose profiling was off at the end (their sites ran without
    /// sampling code), and why; every other function with sites was being profiled or
    /// ran compiled code.
    #[serde(default)]
    pub unprofiled: Vec<DumpUnprofiled>,
}

/// A function the agent stopped profiling (its redirect slot rests at null).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DumpUnprofiled {
    pub function: String,
    pub why: String,
}

/// A function the compile policy left uncompiled for now.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DumpDeferred {
    pub function: String,
    pub why: String,
}

/// A decorated module the agent found.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DumpModule {
    pub path: String,
    /// How it was found (`startup`, `dlopen`, ...).
    #[serde(default)]
    pub source: String,
    pub functions: u32,
    pub sites: u32,
    pub bitcode_bytes: u64,
    /// Still mapped at exit (false after dlclose).
    #[serde(default)]
    pub loaded: bool,
}

/// One call edge: (caller's site, target).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DumpEdge {
    pub caller: String,
    /// The site's ordinal inside the caller.
    pub site: u32,
    /// The site's index in its module.
    #[serde(default)]
    pub module_site: u32,
    pub callee: String,
    /// Estimated calls since the program started.
    pub calls: u64,
    #[serde(default)]
    pub samples: u64,
    /// One of [`EDGE_STATES`]; kept as text so a newer state still reads.
    pub state: String,
    /// Why the edge is rejected or invalidated.
    #[serde(default)]
    pub reason: Option<String>,
    /// The target address, `0x...`.
    #[serde(default)]
    pub target: String,
    #[serde(default)]
    pub caller_module: String,
    #[serde(default)]
    pub callee_module: String,
}

/// One compile (successful or not).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DumpCompile {
    pub function: String,
    pub inlined: Vec<String>,
    /// Wall time of the whole compile.
    pub ms: f64,
    pub code_bytes: u64,
    pub ok: bool,
    pub error: Option<String>,
    /// From the edge getting hot to the patch being live; null when not patched.
    #[serde(default)]
    pub hot_to_patch_ms: Option<f64>,
    /// From the first sample of the earliest inlined edge to the patch being live.
    #[serde(default)]
    pub seen_to_patch_ms: Option<f64>,
    /// Where the compile's time went; null when the JIT did not report it.
    #[serde(default)]
    pub phases: Option<DumpPhases>,
    /// Sites of inlined targets guarded inside their copies in F+ (composed
    /// specialisations; `inlined` lists F's own sites' targets).
    #[serde(default)]
    pub nested: Vec<DumpNested>,
    /// Unguarded sites of F+ (F's and its inlined copies') that keep sampling.
    #[serde(default)]
    pub sampled_sites: u32,
    /// "hit" when the code came from the persistent code cache (no compile), "miss" when
    /// it was compiled (and stored); null when the cache is off.
    #[serde(default)]
    pub cache: Option<String>,
    /// For an on-stack-replacement continuation (not F+): the loop header's block index
    /// in F; the continuation was stored in that point's slot, so F's running activation
    /// moves into it at its next iteration.
    #[serde(default)]
    pub osr_header: Option<u32>,
}

/// A site of an inlined target, guarded inside the target's copy in F+.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DumpNested {
    /// The target whose site it is.
    pub owner: String,
    /// The site's ordinal within the owner.
    pub ordinal: u32,
    /// The guarded targets, hottest first.
    pub targets: Vec<String>,
}

/// A compile's time by phase.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DumpPhases {
    /// Reading the bitcode into IR.
    pub parse_ms: f64,
    /// Resolving F+'s references to the process's addresses.
    pub bind_ms: f64,
    /// The optimisation pipeline.
    pub optimise_ms: f64,
    /// Machine code generation and linking.
    pub codegen_ms: f64,
    /// CPU time of the whole compile (the phases above are wall-clock time).
    pub cpu_ms: f64,
}

impl From<&crate::jit_abi::JitResult> for DumpPhases {
    fn from(r: &crate::jit_abi::JitResult) -> Self {
        DumpPhases { parse_ms: r.parse_ms, bind_ms: r.bind_ms, optimise_ms: r.optimise_ms, codegen_ms: r.codegen_ms, cpu_ms: r.cpu_ms }
    }
}

/// One redirect of a function to its compiled F+.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DumpPatch {
    pub function: String,
    /// The original entry, `0x...`.
    pub from: String,
    /// The compiled code, `0x...`.
    pub to: String,
    /// False once reverted (dlclose, deopt).
    pub active: bool,
    /// The redirect slot, `0x...`.
    #[serde(default)]
    pub slot: String,
}

/// Display is the record as JSON (pretty with `{:#}`): what failure messages show.
macro_rules! display_as_json {
    ($($t:ty),*) => {$(
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                let text = if f.alternate() { serde_json::to_string_pretty(self) } else { serde_json::to_string(self) };
                f.write_str(&text.map_err(|_| std::fmt::Error)?)
            }
        }
    )*};
}
display_as_json!(Dump, DumpModule, DumpEdge, DumpCompile, DumpPhases, DumpPatch);

/// Why a text is not a dump this crate reads.
#[derive(Debug)]
pub enum DumpError {
    /// Not JSON at all.
    NotJson(String),
    /// JSON without `drti_dump_version`: not a drti dump.
    NoVersion,
    /// A dump of another version.
    Version(u64),
    /// A version-1 dump with a field missing or of the wrong type.
    Malformed(String),
}

impl std::fmt::Display for DumpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DumpError::NotJson(e) => write!(f, "not JSON: {e}"),
            DumpError::NoVersion => write!(f, "not a drti dump (no drti_dump_version)"),
            DumpError::Version(v) => write!(f, "dump version {v}; this drti reads version {DUMP_VERSION} — use the drti that wrote it"),
            DumpError::Malformed(e) => write!(f, "a version {DUMP_VERSION} dump, but malformed: {e}"),
        }
    }
}

impl std::error::Error for DumpError {}

impl Dump {
    /// Parses a dump, checking its version first (a dump of another version is refused
    /// whatever else it contains).
    pub fn from_json(text: &str) -> Result<Dump, DumpError> {
        #[derive(Deserialize)]
        struct Version {
            drti_dump_version: Option<serde_json::Value>,
        }
        let v: Version = serde_json::from_str(text).map_err(|e| DumpError::NotJson(e.to_string()))?;
        let version = match v.drti_dump_version {
            None | Some(serde_json::Value::Null) => return Err(DumpError::NoVersion),
            Some(x) => x.as_u64().ok_or_else(|| DumpError::Malformed(format!("drti_dump_version is {x}, not a version number")))?,
        };
        if version != DUMP_VERSION {
            return Err(DumpError::Version(version));
        }
        serde_json::from_str(text).map_err(|e| DumpError::Malformed(e.to_string()))
    }

    /// The dump as pretty JSON (what the agent writes).
    pub fn to_json(&self) -> serde_json::Result<String> {
        serde_json::to_string_pretty(self)
    }

    /// The first edge caller → callee (any site).
    pub fn edge(&self, caller: &str, callee: &str) -> Option<&DumpEdge> {
        self.edges.iter().find(|e| e.caller == caller && e.callee == callee)
    }

    /// Compiles of `function`.
    pub fn compiles_of<'a>(&'a self, function: &'a str) -> impl Iterator<Item = &'a DumpCompile> + 'a {
        self.compiles.iter().filter(move |c| c.function == function)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Dump {
        Dump {
            drti_dump_version: DUMP_VERSION,
            pid: 4242,
            exe: "/opt/app".into(),
            threshold: 50,
            sample_period: 3,
            samples_dropped: 7,
            samples_taken: 700,
            jit_load_ms: Some(9.25),
            peak_rss_kb: Some(5120),
            jit_code_released: 4096,
            jit_code_waiting: 1,
            fork_child_note: None,
            jit_cpu_ms: 12.5,
            jit_budget: 0.25,
            deferred: vec![DumpDeferred { function: "locked".into(), why: "does not pay back yet".into() }],
            unprofiled: vec![DumpUnprofiled { function: "qsort_cmp".into(), why: "every site calls only code outside decorated modules".into() }],
            modules: vec![DumpModule { path: "/opt/app".into(), source: "startup".into(), functions: 9, sites: 4, bitcode_bytes: 1000, loaded: true }],
            edges: vec![DumpEdge {
                caller: "apply".into(),
                site: 0,
                module_site: 2,
                callee: "twice".into(),
                calls: 120_000,
                samples: 40,
                state: "inlined".into(),
                reason: None,
                target: "0x401000".into(),
                caller_module: "/opt/app".into(),
                callee_module: "/opt/app".into(),
            }],
            compiles: vec![
                DumpCompile {
                    function: "apply".into(),
                    inlined: vec!["twice".into()],
                    ms: 11.5,
                    code_bytes: 600,
                    ok: true,
                    error: None,
                    hot_to_patch_ms: Some(14.0),
                    seen_to_patch_ms: Some(20.0),
                    phases: Some(DumpPhases { parse_ms: 1.5, bind_ms: 0.25, optimise_ms: 6.0, codegen_ms: 3.75, cpu_ms: 9.5 }),
                    nested: vec![DumpNested { owner: "twice".into(), ordinal: 0, targets: vec!["inc".into()] }],
                    sampled_sites: 1,
                    cache: Some("miss".into()),
                    osr_header: None,
                },
                DumpCompile { function: "run".into(), ok: false, error: Some("setjmp".into()), ..Default::default() },
            ],
            patches: vec![DumpPatch { function: "apply".into(), from: "0x401100".into(), to: "0x7f0000".into(), active: true, slot: "0x402000".into() }],
        }
    }

    #[test]
    fn round_trips() {
        let d = sample();
        let text = d.to_json().unwrap();
        assert_eq!(Dump::from_json(&text).unwrap(), d);
        // nullable fields are written as null, not left out (readers of version 1 expect them)
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert!(v["compiles"][1]["error"] == "setjmp" && v["compiles"][1]["phases"].is_null() && v["fork_child_note"].is_null());
        assert_eq!(v["compiles"][0]["phases"]["optimise_ms"], 6.0);
        assert_eq!(format!("{}", d.patches[0]), r#"{"function":"apply","from":"0x401100","to":"0x7f0000","active":true,"slot":"0x402000"}"#);
        assert_eq!(format!("{d:#}"), text);
    }

    #[test]
    fn tolerates_unknown_fields_and_missing_newer_ones() {
        // DESIGN.md's example: only the contract fields, plus fields of some future agent.
        let text = r#"{ "drti_dump_version": 1, "pid": 1234, "exe": "/path/app", "threshold": 10000,
          "future_top": {"x": [1, 2]},
          "modules":  [{"path": "/path/app", "functions": 12, "sites": 3, "bitcode_bytes": 4567, "future": 1}],
          "edges":    [{"caller": "apply", "site": 0, "callee": "twice", "calls": 120000, "state": "inlined", "future": null}],
          "compiles": [{"function": "apply", "inlined": ["twice"], "ms": 11.5, "code_bytes": 600, "ok": true, "error": null,
                        "phases": {"parse_ms": 1.0, "codegen_ms": 2.0, "future_ms": 3.0}}],
          "patches":  [{"function": "apply", "from": "0x5555", "to": "0x7f", "active": true}] }"#;
        let d = Dump::from_json(text).unwrap();
        assert_eq!((d.pid, d.threshold, d.sample_period, d.jit_load_ms), (1234, 10000, 0, None));
        assert_eq!(d.edge("apply", "twice").map(|e| (e.calls, e.state.as_str(), e.caller_module.as_str())), Some((120_000, "inlined", "")));
        assert_eq!(d.compiles[0].phases, Some(DumpPhases { parse_ms: 1.0, bind_ms: 0.0, optimise_ms: 0.0, codegen_ms: 2.0, cpu_ms: 0.0 }));
        assert_eq!(d.compiles[0].hot_to_patch_ms, None);
        assert_eq!(d.patches[0].slot, "");
        assert!(!d.modules[0].loaded);
    }

    #[test]
    fn refuses_other_versions_and_non_dumps_clearly() {
        let e = Dump::from_json(r#"{"drti_dump_version": 99}"#).unwrap_err();
        assert!(matches!(e, DumpError::Version(99)), "{e:?}");
        assert!(e.to_string().contains("version 99") && e.to_string().contains("reads version 1"), "{e}");
        // the version decides before anything else: a v2 dump with a v1 shape is still refused
        let mut v: serde_json::Value = serde_json::from_str(&sample().to_json().unwrap()).unwrap();
        v["drti_dump_version"] = 2.into();
        assert!(matches!(Dump::from_json(&v.to_string()), Err(DumpError::Version(2))));
        assert!(matches!(Dump::from_json(r#"{"pid": 1}"#), Err(DumpError::NoVersion)));
        assert!(matches!(Dump::from_json(r#"{"drti_dump_version": "1"}"#), Err(DumpError::Malformed(_))));
        assert!(matches!(Dump::from_json("[1"), Err(DumpError::NotJson(_))));
        let e = Dump::from_json(r#"{"drti_dump_version": 1, "pid": 1}"#).unwrap_err();
        assert!(matches!(e, DumpError::Malformed(_)) && e.to_string().contains("exe"), "{e}");
    }
}
