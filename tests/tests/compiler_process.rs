//! The compiler process and the code cache (issue 12), as a user meets them: the
//! application maps no LLVM; a second run patches from the cache; many processes share one
//! cache; a compiler that is killed, dies on every compile, or cannot be reached changes
//! nothing the program prints or returns. The program is tests/progs/many_hot.cpp (64
//! drivers, each hot in its own phase: 64 compiles per run at threshold 100).

use drti_tests::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(240);

fn dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = scratch("compiler_process");
        compile(&d, "drti-c++", &["tests/progs/many_hot.cpp"], "many_hot", &[]);
        d
    })
}

/// What many_hot prints for `reps` (without the agent).
fn plain(reps: &str) -> String {
    stdout_ok(&output_within(program(dir(), "many_hot", &[reps], None), LIMIT), "many_hot")
}

/// many_hot `reps` under the agent at threshold 100 with `env`, dumping to `dump`.
fn with_agent_cmd(reps: &str, dump: &Path, env: &[(&str, &str)]) -> Command {
    let mut e = vec![("DRTI_HOT_THRESHOLD", "100"), ("DRTI_DUMP", dump.to_str().unwrap())];
    e.extend_from_slice(env);
    program(dir(), "many_hot", &[reps], Some(&e))
}

fn same_as_plain(out: &Output, want: &str, what: &str) {
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout) == want, "{what}: expected exit 0 and\n{want}got {}", describe(out));
}

fn cache_use(d: &Dump) -> Vec<Option<String>> {
    d.compiles.iter().map(|c| c.cache.clone()).collect()
}

/// Pids of running `drti-jitd --stdin --for <app>` servers (not the process the agent
/// started, which detaches the server and exits at once).
fn compilers_of(app: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else { continue };
        let args: Vec<String> = cmd.split(|&b| b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
        // /proc/<pid>/stat: "pid (comm) state ppid ...".
        let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
        let detached = fields.first().is_some_and(|s| *s != "Z") && fields.get(1).is_some_and(|pp| *pp != app.to_string());
        if detached && args.first().is_some_and(|a| a.ends_with("drti-jitd")) && args.windows(2).any(|w| w[0] == "--for" && w[1] == app.to_string()) {
            out.push(pid);
        }
    }
    out
}

#[test]
fn the_application_maps_no_llvm_and_links_every_compile() {
    let d = scratch("cp_nollvm");
    let dump = d.join("dump.json");
    let want = plain("20000");
    let child = with_agent_cmd("20000", &dump, &[]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let pid = child.id();
    // Look at the process's mappings while it runs and compiles.
    let started = Instant::now();
    let mut seen_compiler = false;
    let mut maps_checked = 0;
    while started.elapsed() < Duration::from_secs(60) {
        // Gone, or a zombie (its maps read empty): the run is over.
        let Ok(maps) = std::fs::read_to_string(format!("/proc/{pid}/maps")) else { break };
        if maps.is_empty() {
            break;
        }
        let llvm: Vec<&str> = maps.lines().filter(|l| l.contains("LLVM") || l.contains("drti_jit") || l.contains("drti-jitd")).collect();
        assert!(llvm.is_empty(), "the application maps LLVM or the JIT:\n{}", llvm.join("\n"));
        maps_checked += 1;
        seen_compiler |= !compilers_of(pid).is_empty();
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = wait_within(child, LIMIT);
    same_as_plain(&out, &want, "many_hot under the agent");
    assert!(maps_checked > 0 && seen_compiler, "the compiler process was never seen ({maps_checked} looks)");
    let v = read_dump_typed(&dump);
    let ok = v.compiles.iter().filter(|c| c.ok).count();
    assert!(ok >= 50, "{ok} compiles linked: {:?}", v.compiles.iter().map(|c| (&c.function, &c.error)).collect::<Vec<_>>());
    assert!(v.compiles.iter().all(|c| c.cache.as_deref() == Some("miss")), "a private cache starts empty: {:?}", cache_use(&v));
    // The compiler process ends with the application.
    let gone = Instant::now();
    while !compilers_of(pid).is_empty() && gone.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(compilers_of(pid).is_empty(), "the compiler process outlived the application");
}

#[test]
fn a_second_run_is_served_by_the_cache() {
    let d = scratch("cp_second");
    let cache = d.join("cache");
    let c = cache.to_str().unwrap();
    let want = plain("3000");
    let first = d.join("first.json");
    same_as_plain(&output_within(with_agent_cmd("3000", &first, &[("DRTI_CACHE_DIR", c)]), LIMIT), &want, "first run");
    let v1 = read_dump_typed(&first);
    let compiled: Vec<&str> = v1.compiles.iter().filter(|c| c.ok).map(|c| c.function.as_str()).collect();
    assert!(compiled.len() >= 50 && v1.compiles.iter().all(|c| c.cache.as_deref() == Some("miss")), "{:?}", cache_use(&v1));
    assert_no_got_loads(&cache);
    let second = d.join("second.json");
    same_as_plain(&output_within(with_agent_cmd("3000", &second, &[("DRTI_CACHE_DIR", c)]), LIMIT), &want, "second run");
    let v2 = read_dump_typed(&second);
    // Every F+ of the second run comes from the cache. (main's on-stack-replacement
    // continuations inline whichever driver was hot when its loop was moved, which
    // depends on timing: they may differ from run to run.)
    let fplus: Vec<&DumpCompile> = v2.compiles.iter().filter(|c| c.osr_header.is_none()).collect();
    assert!(fplus.iter().all(|c| c.ok && c.cache.as_deref() == Some("hit")), "every F+ of the second run comes from the cache: {:?}", v2.compiles.iter().map(|c| (&c.function, &c.cache, &c.error, c.osr_header)).collect::<Vec<_>>());
    assert!(fplus.len() >= 50, "{} compiles in the second run", fplus.len());
    assert!(v2.compiles.iter().all(|c| c.ok), "{:?}", v2.compiles.iter().map(|c| (&c.function, &c.error)).collect::<Vec<_>>());
    // Served from the cache, nothing was compiled: no phases, no compile CPU.
    assert!(fplus.iter().all(|c| c.phases.as_ref().is_none_or(|p| p.cpu_ms == 0.0)), "cache hits report compile time");
    // Off: no cache use is recorded.
    let off = d.join("off.json");
    same_as_plain(&output_within(with_agent_cmd("3000", &off, &[("DRTI_CACHE_DIR", c), ("DRTI_CACHE", "0")]), LIMIT), &want, "cache off");
    let v3 = read_dump_typed(&off);
    assert!(!v3.compiles.is_empty() && v3.compiles.iter().all(|c| c.cache.is_none()), "{:?}", cache_use(&v3));
}

#[test]
fn warm_start_compiles_what_an_earlier_run_found_hot_before_it_gets_hot() {
    let d = scratch("cp_warm");
    let cache = d.join("cache");
    let c = cache.to_str().unwrap();
    let want = plain("3000");
    let first = d.join("first.json");
    same_as_plain(&output_within(with_agent_cmd("3000", &first, &[("DRTI_CACHE_DIR", c), ("DRTI_WARM", "1")]), LIMIT), &want, "first run");
    // F+ only: main's on-stack-replacement continuations are not warm-started (the loop they
    // move is not running yet at start-up).
    let compiled: Vec<String> = read_dump_typed(&first).compiles.iter().filter(|c| c.ok && c.osr_header.is_none()).map(|c| c.function.clone()).collect();
    assert!(!compiled.is_empty());
    // No edge can get hot in these runs (a threshold no program reaches): only warm start
    // compiles, and without DRTI_WARM nothing is.
    let never = [("DRTI_CACHE_DIR", c), ("DRTI_HOT_THRESHOLD", "1000000000")];
    let cold = d.join("cold.json");
    same_as_plain(&output_within(with_agent_cmd("3000", &cold, &never), LIMIT), &want, "without DRTI_WARM");
    assert!(read_dump_typed(&cold).compiles.is_empty());
    let warm = d.join("warm.json");
    let env = [never[0], never[1], ("DRTI_WARM", "1")];
    same_as_plain(&output_within(with_agent_cmd("3000", &warm, &env), LIMIT), &want, "DRTI_WARM=1");
    let v = read_dump_typed(&warm);
    let mut again: Vec<String> = v.compiles.iter().filter(|c| c.ok && c.osr_header.is_none() && c.cache.as_deref() == Some("hit")).map(|c| c.function.clone()).collect();
    let mut compiled = compiled;
    compiled.sort();
    compiled.dedup();
    again.sort();
    again.dedup();
    assert_eq!(again, compiled, "every function the first run compiled is patched from the cache at start");
}

#[test]
fn twenty_processes_share_one_cache() {
    let d = scratch("cp_twenty");
    let cache = d.join("cache");
    let c = cache.to_str().unwrap().to_owned();
    let want = plain("1000");
    let runs: Vec<_> = (0..20)
        .map(|i| {
            let dump = d.join(format!("dump{i}.json"));
            let cmd = with_agent_cmd("1000", &dump, &[("DRTI_CACHE_DIR", &c)]);
            std::thread::spawn(move || output_within(cmd, LIMIT))
        })
        .collect();
    for (i, r) in runs.into_iter().enumerate() {
        same_as_plain(&r.join().unwrap(), &want, &format!("process {i} of 20"));
    }
    let mut cmd = Command::new(tool("drti"));
    cmd.args(["cache", "verify", "--dir", &c]);
    clean_env(&mut cmd);
    let out = output_within(cmd, LIMIT);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains(" 0 damaged"), "the shared cache is consistent: {}", describe(&out));
    let entries: u64 = text.split_whitespace().zip(text.split_whitespace().skip(1)).find(|(_, w)| *w == "entries").and_then(|(n, _)| n.parse().ok()).unwrap_or(0);
    assert!(entries >= 50, "{text}");
    // A process after them finds their code.
    let after = d.join("after.json");
    same_as_plain(&output_within(with_agent_cmd("1000", &after, &[("DRTI_CACHE_DIR", &c)]), LIMIT), &want, "the 21st process");
    let v = read_dump_typed(&after);
    assert!(v.compiles.iter().any(|c| c.cache.as_deref() == Some("hit")), "{:?}", cache_use(&v));
}

#[test]
fn killing_the_compiler_mid_run_changes_nothing_the_program_prints() {
    let d = scratch("cp_kill");
    let dump = d.join("dump.json");
    let log = d.join("log.txt");
    let want = plain("20000");
    // Every compile takes 300 ms more: the kill lands while one is in progress.
    let env = [("DRTI_TEST_JITD_DELAY_MS", "300"), ("DRTI_LOG_FILE", log.to_str().unwrap())];
    let child = with_agent_cmd("20000", &dump, &env).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let pid = child.id();
    let started = Instant::now();
    let mut killed = None;
    while killed.is_none() && started.elapsed() < Duration::from_secs(30) {
        if let Some(&c) = compilers_of(pid).first() {
            std::thread::sleep(Duration::from_millis(400));
            let st = Command::new("kill").args(["-9", &c.to_string()]).status().unwrap();
            assert!(st.success(), "kill -9 {c}");
            killed = Some(c);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let out = wait_within(child, LIMIT);
    same_as_plain(&out, &want, "many_hot with its compiler killed");
    assert!(killed.is_some(), "no compiler process appeared");
    let v = read_dump_typed(&dump);
    let lost: Vec<&DumpCompile> = v.compiles.iter().filter(|c| c.error.as_deref().is_some_and(|e| e.contains("compiler process"))).collect();
    assert_eq!(lost.len(), 1, "one compile is lost with the compiler: {:?}", v.compiles.iter().map(|c| (&c.function, &c.error)).collect::<Vec<_>>());
    assert!(v.compiles.iter().filter(|c| c.ok).count() >= 1, "a new compiler process compiles after the kill");
    let text = std::fs::read_to_string(&log).unwrap();
    let warnings = text.lines().filter(|l| l.contains("WARN") && l.contains("compiler process")).count();
    assert_eq!(warnings, 1, "one warning:\n{text}");
}

#[test]
fn a_compiler_that_dies_on_every_compile_ends_in_profile_only() {
    let d = scratch("cp_abort");
    let dump = d.join("dump.json");
    let log = d.join("log.txt");
    let want = plain("3000");
    let out = output_within(with_agent_cmd("3000", &dump, &[("DRTI_TEST_JITD_ABORT", "1"), ("DRTI_LOG_FILE", log.to_str().unwrap())]), LIMIT);
    same_as_plain(&out, &want, "many_hot with a compiler that aborts");
    let v = read_dump_typed(&dump);
    // The first start and 3 restarts, each losing the compile it was given; then none.
    assert!(v.compiles.iter().all(|c| !c.ok), "nothing compiled");
    assert_eq!(v.compiles.len(), 4, "{:?}", v.compiles.iter().map(|c| (&c.function, &c.error)).collect::<Vec<_>>());
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("no compiler process") && text.contains("without further optimisation"), "{text}");
}

#[test]
fn an_unreachable_compiler_is_one_warning() {
    let d = scratch("cp_unreachable");
    let want = plain("1000");
    for server in ["/nonexistent/drti.sock", "relative.sock"] {
        let dump = d.join("dump.json");
        let out = output_within(with_agent_cmd("1000", &dump, &[("DRTI_JIT_SERVER", server)]), LIMIT);
        same_as_plain(&out, &want, server);
        let err = String::from_utf8_lossy(&out.stderr);
        let warnings: Vec<&str> = err.lines().filter(|l| l.contains("WARN")).collect();
        assert!(warnings.len() == 1 && warnings[0].contains("compiler"), "{server}: {err}");
        assert!(read_dump_typed(&dump).compiles.is_empty());
    }
}

#[test]
fn a_shared_server_compiles_for_the_program() {
    let d = scratch("cp_shared");
    let sock = d.join("jitd.sock");
    let mut server = Command::new(tool("drti-jitd")).arg("--listen").arg(&sock).stderr(Stdio::null()).spawn().unwrap();
    let t = Instant::now();
    while !sock.exists() && t.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(10));
    }
    let want = plain("3000");
    let dump = d.join("dump.json");
    let out = output_within(with_agent_cmd("3000", &dump, &[("DRTI_JIT_SERVER", sock.to_str().unwrap())]), LIMIT);
    let _ = server.kill();
    let _ = server.wait();
    same_as_plain(&out, &want, "many_hot with a shared compiler");
    let v = read_dump_typed(&dump);
    assert!(v.compiles.iter().filter(|c| c.ok).count() >= 50, "{:?}", v.compiles.iter().map(|c| (&c.function, &c.error)).collect::<Vec<_>>());
}

/// The objects in `cache` refer to the process's addresses by 64-bit immediates (the large
/// code model), as the in-process JIT's constants did: a GOT load at every use of a global
/// made the plugin demo's loop 1.5x slower than the in-process code.
fn assert_no_got_loads(cache: &Path) {
    let mut objects = 0;
    for shard in std::fs::read_dir(cache.join("v1")).unwrap().flatten() {
        for entry in std::fs::read_dir(shard.path()).unwrap().flatten() {
            let bytes = std::fs::read(entry.path()).unwrap();
            let Some(at) = bytes.windows(4).position(|w| w == b"\x7fELF") else { continue };
            let obj = entry.path().with_extension("o");
            std::fs::write(&obj, &bytes[at..]).unwrap();
            let out = Command::new("objdump").arg("-r").arg(&obj).output().expect("objdump");
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(out.status.success() && text.contains("R_X86_64_64"), "{}: {text}", obj.display());
            assert!(!text.contains("GOTPC"), "a GOT load in {}:\n{text}", obj.display());
            std::fs::remove_file(&obj).unwrap();
            objects += 1;
        }
    }
    assert!(objects >= 50, "{objects} objects in the cache");
}
