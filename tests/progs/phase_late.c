/* A site that is cold when its function is compiled and hot later (a phase change):
 * apply() calls op() from the start and post() only in phase 2, when apply() already
 * runs as F+. Each phase runs for a fixed time; the output is per-round values, the same
 * however many rounds ran. Usage: phase_late [MS_PHASE1] [MS_PHASE2] */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static long twice(long x) { return 2 * x; }
static long mix(long x) { return x ^ (x >> 3); }

__attribute__((noinline)) long apply(long (*op)(long), long (*post)(long), long n, int late) {
    long s = 0;
    for (long i = 0; i < n; i++) {
        s += op(i);
        if (late) s = post(s);
    }
    return s;
}

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

int main(int argc, char **argv) {
    double ms1 = argc > 1 ? atof(argv[1]) : 400, ms2 = argc > 2 ? atof(argv[2]) : 600;
    long (*volatile op)(long) = twice;
    long (*volatile post)(long) = mix;
    long first = 0, second = 0;
    int same = 1;
    double t0 = now_ms();
    while (now_ms() - t0 < ms1) {
        long s = apply(op, post, 10000, 0);
        same &= first == 0 || s == first;
        first = s;
    }
    t0 = now_ms();
    while (now_ms() - t0 < ms2) {
        long s = apply(op, post, 10000, 1);
        same &= second == 0 || s == second;
        second = s;
    }
    printf("phase1=%ld phase2=%ld consistent=%d\n", first, second, same);
    return 0;
}
