/* Targets change over time: run() first calls a() only, then b() only. Under the agent
 * a() is inlined first; in phase two every call misses the guard, so drti must revert
 * (deopt) and recompile run() with b(). stdout never depends on what drti does. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

int a(int x) { return x * 3 + 1; }
int b(int x) { return x ^ 0x55; }

__attribute__((noinline)) long run(int (*f)(int), int n) {
    long s = 0;
    for (int i = 0; i < n; i++)
        s += f(i);
    return s;
}

int main(int argc, char **argv) {
    long reps = argc > 1 ? atol(argv[1]) : 3000;
    int (*volatile fa)(int) = a;
    int (*volatile fb)(int) = b;
    long s1 = 0, s2 = 0;
    for (long r = 0; r < reps; r++)
        s1 += run(fa, 1000);
    for (long r = 0; r < 3 * reps; r++)
        s2 += run(fb, 1000);
    printf("phase1=%ld phase2=%ld\n", s1, s2);
    /* Optional: stay blocked for MS milliseconds before exit (freeing retired JIT code
     * needs every thread seen outside it, e.g. blocked in a system call). */
    long ms = argc > 2 ? atol(argv[2]) : 0;
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
    if (ms > 0) nanosleep(&t, NULL);
    return 0;
}
