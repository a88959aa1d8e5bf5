//! Where the cache lives and how big it may grow, from the environment:
//!
//! | variable | meaning | default |
//! |---|---|---|
//! | `DRTI_CACHE` | `0` turns the cache off, `1` on | on |
//! | `DRTI_CACHE_DIR` | the cache directory (absolute path) | `$XDG_CACHE_HOME/drti`, else `$HOME/.cache/drti` |
//! | `DRTI_CACHE_MAX_MB` | size bound in MiB; least recently used entries go first | 256 |
//!
//! A malformed value is one warning naming the variable, and the default is used.

use std::ffi::OsString;
use std::path::PathBuf;

/// Default size bound.
pub const DEFAULT_MAX_BYTES: u64 = 256 << 20;

/// The cache settings of a process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// The directory; None: the cache is off.
    pub dir: Option<PathBuf>,
    /// Size bound in bytes.
    pub max_bytes: u64,
}

impl Settings {
    /// Reads the settings through `get` (the process environment, or a test's); returns them
    /// with the warnings to report.
    pub fn from_env(get: impl Fn(&str) -> Option<OsString>) -> (Settings, Vec<String>) {
        let mut warnings = Vec::new();
        let text = |name: &str, warnings: &mut Vec<String>| -> Option<String> {
            let v = get(name)?;
            match v.into_string() {
                Ok(s) => Some(s),
                Err(bad) => {
                    warnings.push(format!("{name}={bad:?} is not valid UTF-8; using the default"));
                    None
                }
            }
        };
        let on = match text("DRTI_CACHE", &mut warnings).as_deref().map(str::trim) {
            None | Some("1") => true,
            Some("0") => false,
            Some(v) => {
                warnings.push(format!("DRTI_CACHE={v:?} is not 0 or 1; using the default 1"));
                true
            }
        };
        let max_bytes = match text("DRTI_CACHE_MAX_MB", &mut warnings) {
            None => DEFAULT_MAX_BYTES,
            Some(v) => match v.trim().parse::<u64>() {
                Ok(mb) if (1..=1 << 20).contains(&mb) => mb << 20,
                _ => {
                    warnings.push(format!("DRTI_CACHE_MAX_MB={v:?} is not a whole number in 1..=1048576; using the default {}", DEFAULT_MAX_BYTES >> 20));
                    DEFAULT_MAX_BYTES
                }
            },
        };
        let absolute = |name: &str, warnings: &mut Vec<String>| -> Option<PathBuf> {
            let v = text(name, warnings)?;
            let p = PathBuf::from(&v);
            if p.is_absolute() {
                Some(p)
            } else {
                if name == "DRTI_CACHE_DIR" {
                    warnings.push(format!("DRTI_CACHE_DIR={v:?} is not an absolute path; using the default"));
                }
                None
            }
        };
        let dir = if !on {
            None
        } else if let Some(d) = absolute("DRTI_CACHE_DIR", &mut warnings) {
            Some(d)
        } else if let Some(x) = absolute("XDG_CACHE_HOME", &mut warnings) {
            Some(x.join("drti"))
        } else {
            // None without HOME either (a daemon): the cache is off, which `drti cache
            // stats` says; not worth a warning at every start.
            absolute("HOME", &mut warnings).map(|h| h.join(".cache").join("drti"))
        };
        (Settings { dir, max_bytes }, warnings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<OsString> + 'a {
        move |k| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| OsString::from(v))
    }

    #[test]
    fn defaults_follow_xdg_then_home() {
        let (s, w) = Settings::from_env(env(&[("HOME", "/home/u")]));
        assert_eq!(s, Settings { dir: Some("/home/u/.cache/drti".into()), max_bytes: DEFAULT_MAX_BYTES });
        assert!(w.is_empty());
        let (s, _) = Settings::from_env(env(&[("HOME", "/home/u"), ("XDG_CACHE_HOME", "/x")]));
        assert_eq!(s.dir, Some("/x/drti".into()));
        // A relative XDG_CACHE_HOME is ignored, as the XDG spec says.
        let (s, w) = Settings::from_env(env(&[("HOME", "/home/u"), ("XDG_CACHE_HOME", "rel")]));
        assert_eq!((s.dir, w.len()), (Some("/home/u/.cache/drti".into()), 0));
    }

    #[test]
    fn explicit_values_and_off() {
        let (s, w) = Settings::from_env(env(&[("DRTI_CACHE_DIR", "/c"), ("DRTI_CACHE_MAX_MB", "8"), ("HOME", "/h")]));
        assert_eq!((s.dir, s.max_bytes, w.len()), (Some("/c".into()), 8 << 20, 0));
        let (s, w) = Settings::from_env(env(&[("DRTI_CACHE", "0"), ("DRTI_CACHE_DIR", "/c")]));
        assert_eq!((s.dir, w.len()), (None, 0));
    }

    #[test]
    fn malformed_values_warn_once_each_and_default() {
        let (s, w) = Settings::from_env(env(&[("DRTI_CACHE", "yes"), ("DRTI_CACHE_DIR", "rel/dir"), ("DRTI_CACHE_MAX_MB", "0"), ("HOME", "/h")]));
        assert_eq!((s.dir, s.max_bytes), (Some("/h/.cache/drti".into()), DEFAULT_MAX_BYTES));
        assert_eq!(w.len(), 3, "{w:?}");
        let (s, w) = Settings::from_env(env(&[]));
        assert_eq!(s.dir, None);
        assert!(w.is_empty(), "{w:?}");
    }
}
