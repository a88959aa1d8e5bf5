"""Runs the bench-memory rounds (see ../bench-memory.sh) and prints medians."""
import json, os, shutil, statistics, subprocess, sys, threading, time

BIN, OUT, ROUNDS = sys.argv[1], sys.argv[2], int(sys.argv[3])
AGENT = os.path.join(BIN, "libdrti_agent.so")


def clean_env(extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRTI_") and k != "LD_PRELOAD"}
    env.update(extra)
    return env


def compilers_of(pid):
    """Detached drti-jitd servers started for `pid` (by their --for argument)."""
    out = []
    for e in os.listdir("/proc"):
        if not e.isdigit():
            continue
        try:
            args = open(f"/proc/{e}/cmdline", "rb").read().split(b"\0")
        except OSError:
            continue
        if args and args[0].endswith(b"drti-jitd") and b"--for" in args and str(pid).encode() in args:
            out.append(int(e))
    return out


def hwm_kb(pid):
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def run(argv, env):
    """(stdout, peak RSS of the process in KiB, peak of its compiler process in KiB or None).

    The process's peak is what GNU time reports for it (its own ru_maxrss; a Python
    parent's wait4 would count the interpreter's memory the child had before exec). Under
    the agent, time's figure would also count the compiler process the agent started and
    reaped (the detaching starter), so the agent's dump (`peak_rss_kb`, the application's
    VmHWM at exit) is used there instead."""
    rss_file = os.path.join(OUT, "rss.txt")
    p = subprocess.Popen(["/usr/bin/time", "-f", "%M", "-o", rss_file] + argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    peak = {}
    done = threading.Event()

    def watch():
        while not done.is_set():
            try:
                apps = [int(c) for c in open(f"/proc/{p.pid}/task/{p.pid}/children").read().split()]
            except OSError:
                apps = []
            for c in [c for a in apps for c in compilers_of(a)]:
                h = hwm_kb(c)
                if h:
                    peak[c] = max(peak.get(c, 0), h)
            time.sleep(0.01)

    t = threading.Thread(target=watch)
    t.start()
    out = p.stdout.read()
    status = p.wait()
    done.set()
    t.join()
    if status != 0:
        sys.exit(f"[bench-memory] {argv} exited with status {status}")
    rss = int(open(rss_file).read().split()[-1])
    return out, rss, (max(peak.values()) if peak else None)


def dump_of(path):
    with open(path) as f:
        return json.load(f)


many = os.path.join(OUT, "many_hot")
cache = os.path.join(OUT, "cache")
dump = os.path.join(OUT, "dump.json")
rows = {"plain": [], "agent, cache empty": [], "agent, cache filled": []}
jitd, compiles, hits = [], [], []
want = None
for r in range(ROUNDS):
    out, rss, _ = run([many, "20000"], clean_env({}))
    want = want or out
    rows["plain"].append(rss)
    shutil.rmtree(cache, ignore_errors=True)
    for label in ("agent, cache empty", "agent, cache filled"):
        env = clean_env({"LD_PRELOAD": AGENT, "DRTI_HOT_THRESHOLD": "100", "DRTI_CACHE_DIR": cache, "DRTI_DUMP": dump})
        out, _, peak = run([many, "20000"], env)
        if out != want:
            sys.exit(f"[bench-memory] output differs under the agent ({label})")
        d = dump_of(dump)
        rows[label].append(d["peak_rss_kb"])
        ok = [c for c in d["compiles"] if c["ok"]]
        if label == "agent, cache empty":
            compiles.append(len(ok))
            if peak:
                jitd.append(peak)
        else:
            hits.append(sum(c.get("cache") == "hit" for c in ok))

med = statistics.median
print(f"many_hot 20000 (C++, 64 hot virtual-call drivers, threshold 100), {ROUNDS} interleaved rounds, medians:")
for label, v in rows.items():
    delta = med(v) - med(rows["plain"])
    print(f"  {label:22s} peak RSS {med(v) / 1024:6.1f} MiB  ({delta / 1024:+.1f} MiB vs plain)")
print(f"  compiles linked per run (cache empty): {med(compiles):.0f}; cache hits per run (cache filled): {med(hits):.0f}")
if jitd:
    print(f"  compiler process (drti-jitd) peak RSS: {med(jitd) / 1024:.1f} MiB (a process of its own)")

kernel = os.path.join(OUT, "kernel")
first, hit = [], []
for r in range(ROUNDS):
    shutil.rmtree(cache, ignore_errors=True)
    for into in (first, hit):
        env = clean_env({"LD_PRELOAD": AGENT, "DRTI_CACHE_DIR": cache, "DRTI_DUMP": dump})
        run([kernel, "twice"], env)
        c = [c for c in dump_of(dump)["compiles"] if c["ok"]]
        if c and c[0].get("hot_to_patch_ms") is not None:
            into.append(c[0]["hot_to_patch_ms"])
if first and hit:
    print(f"kernel twice, hot-to-patch of apply, {ROUNDS} rounds, medians: first compile {med(first):.1f} ms, cache hit {med(hit):.2f} ms")
