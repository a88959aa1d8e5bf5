#!/usr/bin/env python3
"""bench-real runner: runs the workloads of a spec file on the four build variants,
interleaved, checks that every output is identical, and prints one Markdown table.

Spec file (TSV, one workload a line): PROGRAM <tab> WORKLOAD <tab> COMMAND, where COMMAND
is split like a shell would (shlex) after replacing {bin} with the variant's directory of
binaries and {data} with the scripts/bench-real directory.

  run.py train SPEC PROGRAM BINDIR PROFDIR   run PROGRAM's workloads once (PGO training)
  run.py bench SPEC OUTDIR ROUNDS AGENT_SO   the benchmark; OUTDIR holds plain/ pgo/ drti/

Variants: plain (clang-19 -O2), pgo (clang-19 -O2 -fprofile-use), decorated (drti-cc -O2,
no agent), agent (the decorated binary with LD_PRELOAD=AGENT_SO and a DRTI_DUMP per run).
Extra environment for the agent runs: BENCH_REAL_AGENT_ENV="K=V K=V".
Each run is timed with the wall clock; os.wait4 gives its CPU time (the agent's plus the
compiler process's compile CPU from its dump), GNU time its peak RSS (the agent's: its dump).
Exit status: 0, or 1 when a run failed or an output differed from the plain build's.
"""
import json
import os
import shlex
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
VARIANTS = ["plain", "pgo", "decorated", "agent"]
BINDIR = {"plain": "plain", "pgo": "pgo", "decorated": "drti", "agent": "drti"}


def log(msg):
    print(f"[bench-real] {msg}", file=sys.stderr, flush=True)


def read_spec(path):
    rows = []
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if not line or line.startswith("#"):
                continue
            program, workload, command = line.split("\t")
            rows.append((program, workload, command))
    return rows


def command(template, bindir):
    return shlex.split(template.replace("{bin}", bindir).replace("{data}", HERE))


def clean_env():
    """The caller's drti and preload settings must not leak into any run."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRTI_") and k != "LD_PRELOAD"}
    env.pop("LLVM_PROFILE_FILE", None)
    return env


def run(argv, env):
    """Runs argv; returns (wall ms, cpu ms, peak RSS KiB, exit status, stdout, stderr).

    The peak RSS is GNU time's (the program's own: os.wait4's would also count this
    Python's memory, which the child had before exec); None without /usr/bin/time."""
    out_path = os.path.join(RUN_TMP, "stdout")
    err_path = os.path.join(RUN_TMP, "stderr")
    rss_path = os.path.join(RUN_TMP, "rss")
    timed = os.path.exists("/usr/bin/time")
    if timed:
        argv = ["/usr/bin/time", "-f", "%M", "-o", rss_path] + argv
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env)
        _, status, ru = os.wait4(proc.pid, 0)
        wall = (time.perf_counter() - t0) * 1000.0
        proc.returncode = os.waitstatus_to_exitcode(status)
    with open(out_path, "rb") as f:
        stdout = f.read()
    with open(err_path, "rb") as f:
        stderr = f.read()
    cpu = (ru.ru_utime + ru.ru_stime) * 1000.0
    rss = None
    if timed:
        try:
            rss = int(open(rss_path).read().split()[-1])
        except (OSError, ValueError, IndexError):
            rss = None
    return wall, cpu, rss, proc.returncode, stdout, stderr


def dump_stats(path):
    """(compiles that succeeded, compiles attempted, JIT ms summed over compiles, active
    patches, % of profiling samples dropped, compile CPU ms, the application's peak RSS KiB)
    from an agent dump; None when the agent wrote none."""
    try:
        with open(path) as f:
            d = json.load(f)
    except (OSError, ValueError):
        return None
    compiles = d.get("compiles") or []
    ok = sum(1 for c in compiles if c.get("ok"))
    ms = sum(float(c.get("ms") or 0.0) for c in compiles)
    patches = sum(1 for p in (d.get("patches") or []) if p.get("active"))
    dropped = int(d.get("samples_dropped") or 0)
    taken = sum(int(e.get("samples") or 0) for e in (d.get("edges") or []))
    dropped_pct = 100.0 * dropped / (dropped + taken) if dropped + taken else 0.0
    return ok, len(compiles), ms, patches, dropped_pct, float(d.get("jit_cpu_ms") or 0.0), d.get("peak_rss_kb")


def train(spec, program, bindir, profdir):
    env = clean_env()
    env["LLVM_PROFILE_FILE"] = os.path.join(profdir, "%p-%m.profraw")
    for prog, workload, template in read_spec(spec):
        if prog != program:
            continue
        wall, _, _, rc, _, err = run(command(template, bindir), env)
        if rc != 0:
            log(f"PGO training run of {workload} exited {rc}: {err[-2000:].decode(errors='replace')}")
            return 1
        log(f"PGO training: {workload} ({wall:.0f} ms)")
    return 0


def fmt_ms(x):
    return f"{x:.0f}" if x >= 100 else f"{x:.1f}"


def bench(spec, outdir, rounds, agent_so):
    rows = read_spec(spec)
    dumps = os.path.join(outdir, "dumps")
    os.makedirs(dumps, exist_ok=True)
    base_env = clean_env()
    agent_env = dict(base_env)
    agent_env["LD_PRELOAD"] = agent_so
    extra = os.environ.get("BENCH_REAL_AGENT_ENV", "").split()
    for kv in extra:
        k, _, v = kv.partition("=")
        agent_env[k] = v
    # times[(workload, variant)] = [(wall, cpu, rss)] in round order
    times = {}
    stats = {}
    reference = {}
    failures = []
    load_start = os.getloadavg()
    for r in range(rounds):
        # Rotate the variant order each round so no variant always runs first or last.
        order = VARIANTS[r % 4:] + VARIANTS[:r % 4]
        log(f"round {r + 1}/{rounds} ({', '.join(order)}); load {os.getloadavg()[0]:.1f}")
        for program, workload, template in rows:
            for v in order:
                argv = command(template, os.path.join(outdir, BINDIR[v]))
                env = base_env
                if v == "agent":
                    env = dict(agent_env)
                    dump = os.path.join(dumps, f"{workload}-{r + 1}.json")
                    if os.path.exists(dump):
                        os.remove(dump)
                    env["DRTI_DUMP"] = dump
                wall, cpu, rss, rc, out, err = run(argv, env)
                if v == "agent" and rc == 0:
                    # The compiler process is not the program's child: its CPU (the dump's
                    # jit_cpu_ms) is added; the program's own peak RSS is the dump's (GNU
                    # time's would count the compiler's starter, which the agent reaps).
                    s = dump_stats(env["DRTI_DUMP"])
                    if s is not None:
                        cpu += s[5]
                        rss = s[6] if s[6] is not None else rss
                if rc != 0:
                    failures.append(f"{workload} [{v}] round {r + 1}: exit status {rc}: "
                                    f"{err[-1500:].decode(errors='replace')}")
                    continue
                ref = reference.setdefault(workload, (v, out))
                if out != ref[1]:
                    failures.append(f"{workload} [{v}] round {r + 1}: OUTPUT DIFFERS from {ref[0]}:\n"
                                    f"  {ref[0]}: {ref[1][:300]!r}\n  {v}: {out[:300]!r}")
                    continue
                if v == "agent" and err.strip():
                    log(f"note: {workload} [agent] stderr: {err[:300].decode(errors='replace')}")
                times.setdefault((workload, v), [None] * rounds)[r] = (wall, cpu, rss)
                if v == "agent":
                    s = dump_stats(env["DRTI_DUMP"])
                    if s is None:
                        failures.append(f"{workload} [agent] round {r + 1}: no dump written")
                    else:
                        stats.setdefault(workload, []).append(s)
    load_end = os.getloadavg()

    def med(workload, v, i):
        xs = [t[i] for t in times.get((workload, v), []) if t is not None and t[i] is not None]
        return statistics.median(xs) if xs else None

    def paired(workload, v, i=0):
        a, p = times.get((workload, v), []), times.get((workload, "plain"), [])
        xs = [x[i] / y[i] for x, y in zip(a, p) if x is not None and y is not None]
        return statistics.median(xs) if xs else None

    def cell(x, f="{:.2f}"):
        return "—" if x is None else f.format(x)

    agent_desc = "LD_PRELOAD=libdrti_agent.so" + ("".join(" " + kv for kv in extra) if extra else
                                                 " (default settings)")
    print(f"## Real programs (`make bench-real`): medians of {rounds} interleaved rounds")
    print()
    print("| program: workload | plain ms | PGO ms | decorated ms | agent ms | PGO/plain | decorated/plain "
          "| agent/plain | agent/plain CPU | compiles ok/all | JIT ms | patched | samples dropped | peak RSS MB plain / agent |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for program, workload, _ in rows:
        s = stats.get(workload, [])
        comp = f"{statistics.median([x[0] for x in s]):.0f}/{statistics.median([x[1] for x in s]):.0f}" if s else "—"
        jit = f"{statistics.median([x[2] for x in s]):.0f}" if s else "—"
        patched = f"{statistics.median([x[3] for x in s]):.0f}" if s else "—"
        dropped = f"{statistics.median([x[4] for x in s]):.1f}%" if s else "—"
        rp, ra = med(workload, "plain", 2), med(workload, "agent", 2)
        rss = "—" if not rp or not ra else f"{rp / 1024:.1f} / {ra / 1024:.1f}"
        print(f"| {program}: {workload} | {cell(med(workload, 'plain', 0), '{:.0f}')} "
              f"| {cell(med(workload, 'pgo', 0), '{:.0f}')} | {cell(med(workload, 'decorated', 0), '{:.0f}')} "
              f"| {cell(med(workload, 'agent', 0), '{:.0f}')} | {cell(paired(workload, 'pgo'))} "
              f"| {cell(paired(workload, 'decorated'))} | **{cell(paired(workload, 'agent'))}** "
              f"| {cell(paired(workload, 'agent', 1))} | {comp} | {jit} | {patched} | {dropped} | {rss} |")
    print()
    print(f"Wall-clock medians; ratios are medians of per-round ratios to the plain run of the same round; "
          f"\"agent/plain CPU\" compares user+system CPU (the agent's includes the compiler process's compile CPU). "
          f"Compiles, JIT ms (sum of the dump's compile times), patched functions and the share of "
          f"profiling samples the agent dropped are per run (median). "
          f"Agent: {agent_desc}. Load average at start {load_start[0]:.1f}, at end {load_end[0]:.1f} "
          f"({os.cpu_count()} CPUs).")
    print()
    if failures:
        print(f"**{len(failures)} run(s) failed or differed** (see stderr).")
        for f in failures:
            log("FAIL: " + f)
        return 1
    n = sum(1 for t in times.values() for x in t if x is not None)
    print(f"outputs: all {n} runs identical to the plain build's output, per workload.")
    return 0


RUN_TMP = None


def main():
    global RUN_TMP
    if len(sys.argv) < 2 or sys.argv[1] not in ("train", "bench"):
        print(__doc__, file=sys.stderr)
        return 2
    import tempfile
    with tempfile.TemporaryDirectory(prefix="bench-real.") as tmp:
        RUN_TMP = tmp
        if sys.argv[1] == "train":
            return train(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5])
        return bench(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5])


if __name__ == "__main__":
    sys.exit(main())
