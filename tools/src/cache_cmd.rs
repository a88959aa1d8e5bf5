//! `drti cache stats|verify|clear [--dir DIR]`: the persistent code cache, from the command
//! line.
//! The directory is the one the agent would use (`DRTI_CACHE_DIR`, `XDG_CACHE_HOME`,
//! `HOME`; see `drti_cache::settings`) unless `--dir` names another.

use drti_cache::{Cache, Settings};
use std::path::PathBuf;

/// Runs `drti cache ARGS`; returns the exit status (0 ok, 1 the cache could not be read or
/// cleared or had damaged entries, 2 usage).
pub fn run(args: &[String]) -> i32 {
    let mut action = None;
    let mut dir: Option<PathBuf> = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--dir" => match it.next() {
                Some(d) if !d.is_empty() => dir = Some(PathBuf::from(d)),
                _ => return usage("cache: --dir needs a DIR"),
            },
            s if s.starts_with("--dir=") => dir = Some(PathBuf::from(&s[6..])),
            "stats" | "verify" | "clear" if action.is_none() => action = Some(a.as_str()),
            other => return usage(&format!("cache: unexpected argument '{other}'")),
        }
    }
    let Some(action) = action else { return usage("cache needs stats, verify or clear") };
    let (settings, warnings) = Settings::from_env(|k| std::env::var_os(k));
    for w in &warnings {
        eprintln!("drti: warning: {w}");
    }
    let Some(dir) = dir.or(settings.dir.clone()) else {
        println!("code cache: off");
        return 0;
    };
    if !dir.exists() {
        println!("code cache: {} (not created yet)\nentries: 0", dir.display());
        return 0;
    }
    let cache = match Cache::open(&dir, settings.max_bytes) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("drti: {e}");
            return 1;
        }
    };
    match action {
        "stats" => {
            let s = cache.stats();
            let mib = |b: u64| b as f64 / (1 << 20) as f64;
            println!("code cache: {}", dir.display());
            println!("entries: {} ({:.1} MiB of {:.0} MiB)", s.entries, mib(s.bytes), mib(cache.max_bytes()));
            if s.temporaries > 0 {
                println!("writes in progress or abandoned: {}", s.temporaries);
            }
            0
        }
        "verify" => {
            let (good, bad) = cache.verify();
            for b in &bad {
                println!("damaged (removed): {b}");
            }
            println!("code cache: {}: {good} entries whole, {} damaged", dir.display(), bad.len());
            i32::from(!bad.is_empty())
        }
        _ => match cache.clear() {
            Ok(n) => {
                println!("code cache: {}: {n} entries removed", dir.display());
                0
            }
            Err(e) => {
                eprintln!("drti: {e}");
                1
            }
        },
    }
}

fn usage(msg: &str) -> i32 {
    eprintln!("drti: {msg}\n\n{}", crate::help::DRTI);
    2
}
