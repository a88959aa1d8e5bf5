// Loops with `#pragma clang loop vectorize(enable)` that cannot be vectorized (issue 10
// item 4): LLVM's "loop not vectorized" remarks must not reach the program's stderr.
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

typedef double (*fn)(double);

double half(double x) { return x * 0.5 + 1.0; }
double sq(double x) { return x * x * 0.25; }

__attribute__((noinline)) double run(fn f, double *a, int n) {
  double s = 0;
#pragma clang loop vectorize(enable)
  for (int i = 0; i < n; i++) {
    a[i] = f(a[i]);
    if (a[i] > 1e300) break;  // an early exit: not vectorizable
    s += a[i];
  }
  return s;
}

int main(int argc, char **argv) {
  int n = argc > 1 ? atoi(argv[1]) : 2000;
  double *a = malloc(sizeof(double) * n);
  fn fs[2] = {half, sq};
  double total = 0;
  for (int r = 0; r < 40; r++) {
    if (r == 3 || r == 12) usleep(200000);  // time for the agent to compile
    for (int i = 0; i < n; i++) a[i] = i * 0.001 + r;
    total += run(fs[r & 1], a, n);
  }
  fprintf(stderr, "stderr line from the program\n");
  printf("%.6f\n", total);
  free(a);
  return 0;
}
