#!/usr/bin/env python3
"""Generates budget.c: PHASES phase functions, each a loop calling a tiny callback through
a pointer (what drti speeds up 3-5x once inlined) plus a block of straight-line arithmetic
that makes each compile cost tens of milliseconds. main runs the phases one after another,
so new compile candidates keep appearing for the whole run: the JIT budget decides how
many of them get compiled in time."""
import sys

phases = int(sys.argv[1]) if len(sys.argv) > 1 else 120
bulk = int(sys.argv[2]) if len(sys.argv) > 2 else 60
out = []
w = out.append
w("#include <stdio.h>\n#include <stdlib.h>\n")
w("typedef long (*op_fn)(long);\n")
w("static long op_add(long x) { return x + 3; }\n")
w("static long op_mul(long x) { return x * 5; }\n")
w("op_fn volatile ops[2] = {op_add, op_mul};\n")
for k in range(phases):
    w(f"__attribute__((noinline)) long phase_{k}(op_fn f, long n, long seed) {{\n")
    w("  long a = seed, b = seed ^ 0x5bd1e995, c = seed * 31;\n")
    for i in range(bulk):
        w(f"  a = a * {2 * i + 3} + (b >> {i % 7 + 1}); b ^= c + {k * 131 + i}; c += a ^ (b << {i % 5 + 1});\n")
    w("  long s = 0;\n")
    w(f"  for (long i = 0; i < n; i++) s += f(i ^ {k});\n")
    w("  return s + a + b + c;\n}\n")
w("typedef long (*phase_fn)(op_fn, long, long);\n")
w("phase_fn phases[] = {" + ", ".join(f"phase_{k}" for k in range(phases)) + "};\n")
w("""int main(int argc, char **argv) {
  long calls = argc > 1 ? atol(argv[1]) : 20000;   /* calls per phase call */
  long reps = argc > 2 ? atol(argv[2]) : 400;      /* phase calls per phase */
  long total = 0;
  for (unsigned k = 0; k < sizeof phases / sizeof phases[0]; k++)
    for (long r = 0; r < reps; r++) total += phases[k](ops[k & 1], calls, r);
  printf("%ld\\n", total);
  return 0;
}
""")
sys.stdout.write("".join(out))
