/* counter.c - correctness test: an inlined callee must keep its single static.
 *
 * bump() increments a file-static counter and returns x + 1.  run() calls it
 * through a function pointer in a loop, and main() calls run() many times.
 * When drti inlines bump() into run(), the inlined copy must update the very
 * same `calls` variable (not a copy of it), so the printed count must be
 * exactly ITERS * N, and the sum must be unchanged.
 *
 * Usage: counter [ITERS [N]]   (defaults 200000 and 1000)
 * Output: calls=<ITERS*N> expected=<ITERS*N> sum=<...>
 */
#include <stdio.h>
#include <stdlib.h>

#define NOINLINE __attribute__((noinline))

static int calls;

int bump(int x) {
    calls++;
    return x + 1;
}

/* The hot indirect call site. */
NOINLINE long long run(int (*f)(int), int n) {
    long long sum = 0;
    for (int i = 0; i < n; i++) sum += f(i);
    return sum;
}

int main(int argc, char **argv) {
    long iters = argc > 1 ? atol(argv[1]) : 200000;
    int n = argc > 2 ? atoi(argv[2]) : 1000;
    if (iters < 1 || n < 1 || (long long)iters * n > 2000000000LL) {
        fprintf(stderr, "usage: counter [ITERS [N]]  (ITERS*N <= 2e9)\n");
        return 2;
    }
    /* volatile: keep the compiler from propagating the constant target into
     * run() at build time; the target is known only at run time. */
    int (*volatile fp)(int) = bump;

    long long sum = 0;
    for (long it = 0; it < iters; it++) sum += run(fp, n);
    printf("calls=%d expected=%lld sum=%lld\n", calls, (long long)iters * n, sum);
    return 0;
}
