//! The agent's configuration: the DRTI_* environment of DESIGN.md, read once at start.
//! A malformed value is one warning naming the variable; the default is used.

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
    /// `DRTI_DISABLE`: do nothing at all.
    pub disable: bool,
    /// `DRTI_TEST_JIT_FAIL`: (tests only) names of functions whose compile fails on purpose.
    pub test_jit_fail: Vec<String>,
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
            disable: false,
            test_jit_fail: Vec::new(),
        }
    }
}

impl Config {
    /// Reads the configuration through `get` (the process environment in the agent);
    /// returns it with the warnings to report once logging is up.
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> (Config, Vec<String>) {
        let mut c = Config::default();
        let mut warnings = Vec::new();
        let mut num = |name: &str, default: u64, min: u64, max: u64| -> u64 {
            match get(name) {
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
        c.hot_threshold = num("DRTI_HOT_THRESHOLD", c.hot_threshold, 1, u64::MAX / 2);
        c.max_targets = num("DRTI_MAX_TARGETS", c.max_targets as u64, 1, 16) as usize;
        let mut flag = |name: &str, default: bool| -> bool {
            match get(name).as_deref().map(str::trim) {
                None => default,
                Some("1") | Some("true") | Some("yes") | Some("on") => true,
                Some("0") | Some("false") | Some("no") | Some("off") => false,
                Some(v) => {
                    warnings.push(format!("{name}={v:?} is not 0 or 1; using the default {}", default as u8));
                    default
                }
            }
        };
        c.jit = flag("DRTI_JIT", c.jit);
        c.perf_map = flag("DRTI_PERF_MAP", c.perf_map);
        c.disable = flag("DRTI_DISABLE", c.disable);
        if let Some(v) = get("DRTI_LOG").filter(|v| !v.trim().is_empty()) {
            c.log = v;
        }
        c.log_file = get("DRTI_LOG_FILE").filter(|v| !v.is_empty());
        c.dump = get("DRTI_DUMP").filter(|v| !v.is_empty());
        c.test_jit_fail = get("DRTI_TEST_JIT_FAIL").map(|v| v.split(',').map(str::to_owned).collect()).unwrap_or_default();
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

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
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
    fn malformed_values_warn_and_default() {
        let (c, w) = Config::from_env(env(&[("DRTI_HOT_THRESHOLD", "lots"), ("DRTI_JIT", "maybe"), ("DRTI_MAX_TARGETS", "0")]));
        assert_eq!((c.hot_threshold, c.jit, c.max_targets), (10_000, true, 4));
        assert_eq!(w.len(), 3);
        assert!(w[0].contains("DRTI_HOT_THRESHOLD"));
    }
}
