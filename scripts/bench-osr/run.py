"""Runs the bench-osr rounds (see ../bench-osr.sh) and prints medians and ratios."""
import os, statistics, subprocess, sys, time

BIN, OUT, ROUNDS = sys.argv[1], sys.argv[2], int(sys.argv[3])
AGENT = os.path.join(BIN, "libdrti_agent.so")
CASES = [("osr_main_c", ["50000"]), ("osr_main_cpp", ["100000"]), ("methcall", ["200000000"]), ("sort", ["asc", "4000", "2000"])]
VARIANTS = [("plain", "plain", {}), ("decorated", "drti", {}), ("agent", "drti", {"LD_PRELOAD": AGENT}), ("agent t=1", "drti", {"LD_PRELOAD": AGENT, "DRTI_HOT_THRESHOLD": "1"})]


def env_of(extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRTI_") and k != "LD_PRELOAD"}
    env["DRTI_CACHE"] = "0"  # every run compiles: what a first run costs
    env.update(extra)
    return env


times = {(c, v): [] for c, _ in CASES for v, _, _ in VARIANTS}
for r in range(ROUNDS):
    for case, args in CASES:
        want = None
        for label, build, extra in VARIANTS:
            t = time.perf_counter()
            out = subprocess.run([os.path.join(OUT, f"{case}-{build}")] + args, env=env_of(extra), capture_output=True, check=True).stdout
            times[(case, label)].append(time.perf_counter() - t)
            if want is None:
                want = out
            elif out != want:
                sys.exit(f"[bench-osr] {case} {label}: output differs from plain")
print(f"{ROUNDS} interleaved rounds, medians (s), code cache off (every agent run compiles); outputs identical")
print(f"| case | plain | decorated | agent | agent t=1 | plain/agent | plain/agent t=1 |")
print("|---|---:|---:|---:|---:|---:|---:|")
med = statistics.median
for case, _ in CASES:
    m = {v: med(times[(case, v)]) for v, _, _ in VARIANTS}
    print(f"| {case} | {m['plain']:.3f} | {m['decorated']:.3f} | {m['agent']:.3f} | {m['agent t=1']:.3f} | {m['plain'] / m['agent']:.2f}x | {m['plain'] / m['agent t=1']:.2f}x |")
