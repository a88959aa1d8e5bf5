/* Entry kinds under redirection: a byval struct (no slot: LLVM 19 miscompiles musttail with
 * byval), a variadic function that reads its arguments (slot, but the JIT refuses it), a
 * variadic one that does not (redirected, musttail forwards the varargs), recursion (calls
 * of F inside F+ go through F's slot to F+), exceptions thrown through F+ and an sret
 * return. stdout must match the plain build. Usage: patch_entry_kinds [N [MASK]] */
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
struct Big { long a[8]; };
int inc(int x) { return x + 1; }
int dbl(int x) { return x * 2; }
int thrower(int x) { if (x % 1000 == 999) throw std::runtime_error("boom"); return x; }
// byval struct + indirect call
__attribute__((noinline)) long by_value(Big b, int (*f)(int)) { long s = 0; for (int i = 0; i < 8; i++) s += f((int)b.a[i]); return s; }
// variadic that reads its arguments (va_start): JIT rejects, entry must still forward
__attribute__((noinline)) long vsum(int (*f)(int), int n, ...) { va_list ap; va_start(ap, n); long s = 0; for (int i = 0; i < n; i++) s += f(va_arg(ap, int)); va_end(ap); return s; }
// variadic that ignores its varargs: compilable, musttail forwards
__attribute__((noinline)) long vign(int (*f)(int), int x, ...) { return f(x) + f(x + 1); }
// recursion through an indirect call
__attribute__((noinline)) long rec(int (*f)(int), int d) { if (d == 0) return 0; return f(d) + rec(f, d - 1); }
// exceptions through F (and F+)
__attribute__((noinline)) long ex(int (*f)(int), int x) { return f(x) + 1; }
// sret return
struct Pair { long a, b, c, d; };
__attribute__((noinline)) Pair mkpair(int (*f)(int), int x) { Pair p = {f(x), f(x + 1), f(x + 2), f(x + 3)}; return p; }
int main(int argc, char **argv) {
  long n = argc > 1 ? atol(argv[1]) : 200000; int m = argc > 2 ? atoi(argv[2]) : 127;
  int (*volatile fi)(int) = inc; int (*volatile fd)(int) = dbl; int (*volatile ft)(int) = thrower;
  Big b; for (int i = 0; i < 8; i++) b.a[i] = i * 3;
  long s1 = 0, s2 = 0, s3 = 0, s4 = 0, s5 = 0, s6 = 0, caught = 0;
  for (long r = 0; r < n; r++) {
    if (m & 1) s1 += by_value(b, r & 1 ? fi : fd);
    b.a[r & 7] += 1;
    if (m & 2) s2 += vsum(fi, 4, (int)r, 2, 3, (int)(r >> 3));
    if (m & 4) s3 += vign(fd, (int)r, 1.5, "x", 7L);
    if ((m & 8) && r % 16 == 0) s4 += rec(fi, 20);
    if (m & 16) try { s5 += ex(ft, (int)r); } catch (const std::runtime_error &e) { caught++; }
    if (m & 32) { Pair p = mkpair(fd, (int)r); s6 += p.a - p.b + p.c * 3 + p.d; }
  }
  printf("%ld %ld %ld %ld %ld %ld caught=%ld\n", s1, s2, s3, s4, s5, s6, caught);
}
