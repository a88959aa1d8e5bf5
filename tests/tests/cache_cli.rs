//! `drti cache stats|clear`: the persistent code cache's command-line view (the cache
//! itself is tested in cache/src; entries here are written through the library, as the
//! agent will).

use drti_cache::{Cache, KeyBuilder};
use drti_tests::*;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

fn drti_cache(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new(tool("drti"));
    cmd.arg("cache").args(args);
    clean_env(&mut cmd);
    cmd.envs(env.iter().copied());
    let out = cmd.output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn stats_and_clear_report_what_is_in_the_cache() {
    let base = scratch("cache_cli");
    let dir = base.join("cache");
    let _ = std::fs::remove_dir_all(&dir);
    let d = dir.to_str().unwrap();
    let (code, out, _) = drti_cache(&["stats"], &[("DRTI_CACHE_DIR", d)]);
    assert_eq!((code, out.contains("not created yet")), (0, true), "{out}");
    let cache = Cache::open(&dir, 1 << 20).unwrap();
    for i in 0..3u8 {
        let mut k = KeyBuilder::new("cli test");
        k.field("i", &[i]);
        cache.put(&k.finish(), &[i; 100]).unwrap();
    }
    let (code, out, _) = drti_cache(&["stats", "--dir", d], &[]);
    assert_eq!(code, 0);
    assert!(out.contains("entries: 3 "), "{out}");
    let (code, out, _) = drti_cache(&["verify", "--dir", d], &[]);
    assert!(code == 0 && out.contains("3 entries whole, 0 damaged"), "{out}");
    // A torn entry (a crash mid-write without the rename, a disk error) is found and removed.
    let entry = walk(&dir).into_iter().find(|p| p.extension().is_some_and(|e| e == "entry")).unwrap();
    let bytes = std::fs::read(&entry).unwrap();
    std::fs::write(&entry, &bytes[..bytes.len() / 2]).unwrap();
    let (code, out, _) = drti_cache(&["verify", "--dir", d], &[]);
    assert!(code == 1 && out.contains("2 entries whole, 1 damaged") && out.contains("damaged (removed)"), "{out}");
    let (code, out, _) = drti_cache(&["verify", "--dir", d], &[]);
    assert!(code == 0 && out.contains("2 entries whole, 0 damaged"), "{out}");
    let (code, out, _) = drti_cache(&["stats", "--dir", d], &[]);
    assert!(code == 0 && out.contains("entries: 2 "), "{out}");
    let (code, out, _) = drti_cache(&["clear"], &[("XDG_CACHE_HOME", base.to_str().unwrap()), ("DRTI_CACHE_DIR", d)]);
    assert!(code == 0 && out.contains("2 entries removed"), "{out}");
    assert_eq!(cache.stats().entries, 0);
    let (code, out, _) = drti_cache(&["stats"], &[("DRTI_CACHE", "0")]);
    assert!(code == 0 && out.contains("off"), "{out}");
}

#[test]
fn a_cache_others_can_write_is_refused_and_bad_usage_says_so() {
    let dir = scratch("cache_cli_open").join("cache");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let (code, _, err) = drti_cache(&["stats", "--dir", dir.to_str().unwrap()], &[]);
    assert!(code == 1 && err.contains("writable by others"), "{err}");
    let (code, _, err) = drti_cache(&["shrink"], &[]);
    assert!(code == 2 && err.contains("unexpected argument 'shrink'"), "{err}");
    let (code, _, err) = drti_cache(&[], &[]);
    assert!(code == 2 && err.contains("stats, verify or clear"), "{err}");
}

/// Every file under `dir`.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
