//! The agent's configuration: the DRTI_* environment of DESIGN.md, read once at start.
//! A malformed value (not UTF-8 included) is one warning naming the variable; the default
//! is used.

use std::ffi::OsString;

/// Everything the agent reads from the environment.
#[derive(Clone, Debug)]
pub struct Config {
    /// `DRTI_HOT_THRESHOLD`: calls on one edge before it is compiled.
    pub hot_threshold: u64,
    /// `DRTI_LOG`: tracing filter.
    pub log: String,
    /// `DRTI_LOG_FILE`: log destination (stderr when unset).
    pub log_file: Option<String>,
    /// `DRTI_DUMP`: JSON dump path.
    pub dump: Option<String>,
    /// `DRTI_JIT`: compile and patch hot edges.
    pub jit: bool,
    /// `DRTI_MAX_TARGETS`: guarded targets per site.
    pub max_targets: usize,
    /// `DRTI_PERF_MAP`: write `/tmp/perf-<pid>.map`.
    pub perf_map: bool,
    /// `DRTI_WARM`: compile the functions earlier runs found hot at start-up (see `warm`).
    pub warm: bool,
    /// `DRTI_DISABLE`: do nothing at all.
    pub disable: bool,
    /// `DRTI_TEST_JIT_FAIL`: (tests only) names of functions whose compile fails on purpose.
    pub test_jit_fail: Vec<String>,
    /// `DRTI_JIT_BUDGET`: JIT CPU time as a share of the process's CPU time (after a
    /// start-up allowance); 0 = unlimited.
    pub jit_budget: f64,
    /// `DRTI_JIT_NICE`: added to the program's nice value for the agent thread, which
    /// compiles (as `nice -n`, at most 19 in all): on a machine whose cores are busy,
    /// compiles then take mostly idle time instead of the application's.
    pub jit_nice: i32,
    /// `DRTI_CACHE`, `DRTI_CACHE_DIR`, `DRTI_CACHE_MAX_MB`: the persistent code cache.
    pub cache: drti_cache::Settings,
    /// `DRTI_JIT_SERVER`: a running compiler's socket (else the agent starts its own).
    pub jit_server: Option<OsString>,
    /// Whether `DRTI_HOT_THRESHOLD` was given: then every edge that reaches it is compiled
    /// (DESIGN.md's count); otherwise compiles must also pay back (see `policy`).
    pub threshold_given: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            hot_threshold: 10_000,
            log: "warn".into(),
            log_file: None,
            dump: None,
            jit: true,
            max_targets: 4,
            perf_map: false,
            warm: false,
            disable: false,
            test_jit_fail: Vec::new(),
            jit_budget: 0.25,
            jit_nice: 10,
            cache: drti_cache::Settings { dir: None, max_bytes: drti_cache::DEFAULT_MAX_BYTES },
            jit_server: None,
            threshold_given: false,
        }
    }
}

impl Config {
    /// Reads the configuration through `get` (the process environment in the agent, raw
    /// bytes as the kernel gave them); returns it with the warnings to report once logging
    /// is up. A value that is not UTF-8 is one warning naming the variable, and the default.
    pub fn from_env(get: impl Fn(&str) -> Option<OsString>) -> (Config, Vec<String>) {
        let mut c = Config::default();
        let mut warnings = Vec::new();
        // Which variables are set at all (read once each, through this wrapper).
        let present = std::cell::RefCell::new(Vec::<String>::new());
        let get = |name: &str| {
            let v = get(name);
            if v.is_some() {
                present.borrow_mut().push(name.to_owned());
            }
            v
        };
        // The value of `name` as text: None when unset, Err(the start of a warning) when it
        // is not UTF-8; each caller finishes the warning with its default.
        let text = |name: &str| -> Result<Option<String>, String> {
            match get(name) {
                None => Ok(None),
                Some(v) => v.into_string().map(Some).map_err(|raw| format!("{name}={raw:?} is not valid UTF-8")),
            }
        };
        let string = |name: &str, default: &str, warnings: &mut Vec<String>| -> Option<String> {
            text(name).unwrap_or_else(|w| {
                warnings.push(format!("{w}; using the default ({default})"));
                None
            })
        };
        let num = |name: &str, default: u64, min: u64, max: u64, warnings: &mut Vec<String>| -> u64 {
            match string(name, &default.to_string(), warnings) {
                None => default,
                Some(v) => match v.trim().parse::<u64>() {
                    Ok(n) if (min..=max).contains(&n) => n,
                    _ => {
                        warnings.push(format!("{name}={v:?} is not a whole number in {min}..={max}; using the default {default}"));
                        default
                    }
                },
            }
        };
        c.hot_threshold = num("DRTI_HOT_THRESHOLD", c.hot_threshold, 1, u64::MAX / 2, &mut warnings);
        c.threshold_given = present.borrow().iter().any(|n| n == "DRTI_HOT_THRESHOLD");
        c.max_targets = num("DRTI_MAX_TARGETS", c.max_targets as u64, 1, 16, &mut warnings) as usize;
        c.jit_nice = num("DRTI_JIT_NICE", c.jit_nice as u64, 0, 19, &mut warnings) as i32;
        let flag = |name: &str, default: bool, warnings: &mut Vec<String>| -> bool {
            match string(name, &(default as u8).to_string(), warnings).as_deref().map(str::trim) {
                None => default,
                Some("1") | Some("true") | Some("yes") | Some("on") => true,
                Some("0") | Some("false") | Some("no") | Some("off") => false,
                Some(v) => {
                    warnings.push(format!("{name}={v:?} is not 0 or 1; using the default {}", default as u8));
                    default
                }
            }
        };
        c.jit = flag("DRTI_JIT", c.jit, &mut warnings);
        c.perf_map = flag("DRTI_PERF_MAP", c.perf_map, &mut warnings);
        c.warm = flag("DRTI_WARM", c.warm, &mut warnings);
        c.disable = flag("DRTI_DISABLE", c.disable, &mut warnings);
        if let Some(v) = string("DRTI_LOG", &c.log, &mut warnings).filter(|v| !v.trim().is_empty()) {
            c.log = v;
        }
        c.log_file = string("DRTI_LOG_FILE", "stderr", &mut warnings).filter(|v| !v.is_empty());
        c.dump = string("DRTI_DUMP", "no dump", &mut warnings).filter(|v| !v.is_empty());
        if let Some(v) = string("DRTI_JIT_BUDGET", &c.jit_budget.to_string(), &mut warnings) {
            match v.trim().parse::<f64>() {
                Ok(b) if (0.0..=1.0).contains(&b) => c.jit_budget = b,
                _ => warnings.push(format!("DRTI_JIT_BUDGET={v:?} is not a share in 0..=1 (0 = unlimited); using the default {}", c.jit_budget)),
            }
        }
        c.test_jit_fail = string("DRTI_TEST_JIT_FAIL", "none", &mut warnings).map(|v| v.split(',').map(str::to_owned).collect()).unwrap_or_default();
        c.jit_server = string("DRTI_JIT_SERVER", "a private compiler process", &mut warnings).filter(|v| !v.is_empty()).map(OsString::from);
        let (cache, cache_warnings) = drti_cache::Settings::from_env(get);
        c.cache = cache;
        warnings.extend(cache_warnings);
        (c, warnings)
    }

    /// Calls per profiling sample: the hook runs about once per `period` calls of a site,
    /// so an edge needs about 16 samples (threshold/period) to get hot; fewer samples
    /// keep the profiling path cheap, more would only sharpen counts nobody needs.
    pub fn sample_period(&self) -> u32 {
        (self.hot_threshold / 16).clamp(1, 1024) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::os::unix::ffi::OsStringExt;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<OsString> + 'a {
        move |k| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| OsString::from(v))
    }

    fn raw_env(pairs: Vec<(&'static str, Vec<u8>)>) -> impl Fn(&str) -> Option<OsString> {
        move |k| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| OsString::from_vec(v.clone()))
    }

    #[test]
    fn defaults_and_values() {
        let (c, w) = Config::from_env(env(&[]));
        assert_eq!((c.hot_threshold, c.max_targets, c.jit, c.disable), (10_000, 4, true, false));
        assert!(w.is_empty());
        let (c, w) = Config::from_env(env(&[("DRTI_HOT_THRESHOLD", "1"), ("DRTI_JIT", "0"), ("DRTI_MAX_TARGETS", "2")]));
        assert_eq!((c.hot_threshold, c.jit, c.max_targets, c.sample_period()), (1, false, 2, 1));
        assert!(w.is_empty());
    }

    #[test]
    fn threshold_given_and_jit_budget() {
        let (c, _) = Config::from_env(env(&[]));
        assert!(!c.threshold_given && c.jit_budget == 0.25);
        let (c, w) = Config::from_env(env(&[("DRTI_HOT_THRESHOLD", "10000"), ("DRTI_JIT_BUDGET", "0.5")]));
        assert!(c.threshold_given && c.jit_budget == 0.5 && w.is_empty());
        let (c, w) = Config::from_env(env(&[("DRTI_JIT_NICE", "19")]));
        assert!(c.jit_nice == 19 && w.is_empty());
        let (c, w) = Config::from_env(env(&[("DRTI_JIT_NICE", "-5")]));
        assert!(c.jit_nice == 10 && w.len() == 1 && w[0].contains("DRTI_JIT_NICE"), "{w:?}");
        let (c, w) = Config::from_env(env(&[("DRTI_JIT_BUDGET", "2")]));
        assert_eq!(c.jit_budget, 0.25);
        assert!(w.len() == 1 && w[0].contains("DRTI_JIT_BUDGET"), "{w:?}");
    }

    #[test]
    fn malformed_values_warn_and_default() {
        let (c, w) = Config::from_env(env(&[("DRTI_HOT_THRESHOLD", "lots"), ("DRTI_JIT", "maybe"), ("DRTI_MAX_TARGETS", "0")]));
        assert_eq!((c.hot_threshold, c.jit, c.max_targets), (10_000, true, 4));
        assert_eq!(w.len(), 3);
        assert!(w[0].contains("DRTI_HOT_THRESHOLD"));
    }

    #[test]
    fn non_utf8_values_warn_once_each_and_default() {
        let (c, w) = Config::from_env(raw_env(vec![
            ("DRTI_HOT_THRESHOLD", b"1\xff".to_vec()),
            ("DRTI_JIT", vec![0xff]),
            ("DRTI_DUMP", b"/tmp/d\xfe.json".to_vec()),
            ("DRTI_MAX_TARGETS", b"2".to_vec()),
        ]));
        assert_eq!((c.hot_threshold, c.jit, c.dump, c.max_targets), (10_000, true, None, 2));
        assert_eq!(w.len(), 3, "{w:?}");
        for (warning, name) in w.iter().zip(["DRTI_HOT_THRESHOLD", "DRTI_JIT", "DRTI_DUMP"]) {
            assert!(warning.starts_with(name) && warning.contains("not valid UTF-8"), "{warning}");
        }
        assert!(w[0].ends_with("using the default (10000)"), "{}", w[0]);
    }

    #[test]
    fn every_variable_is_read_once() {
        let seen = std::cell::RefCell::new(Vec::new());
        let (_, w) = Config::from_env(|k| {
            seen.borrow_mut().push(k.to_owned());
            Some(OsString::from_vec(vec![0xff]))
        });
        let mut names = seen.into_inner();
        let n = names.len();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), n, "a variable was read twice: {names:?}");
        // The cache's default directory comes from XDG_CACHE_HOME or HOME.
        assert!(names.iter().all(|k| k.starts_with("DRTI_") || k == "XDG_CACHE_HOME" || k == "HOME"), "{names:?}");
        assert!(names.iter().any(|k| k == "DRTI_CACHE_DIR") && names.iter().any(|k| k == "DRTI_JIT_SERVER"));
        assert_eq!(w.len(), n, "one warning per unreadable variable: {w:?}");
    }
}
