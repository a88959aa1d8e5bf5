/* A site that is cold when its function is compiled and hot later (a phase change):
 * apply() calls op() from the start and post() only in phase 2, when apply() already
 * runs as F+. The same one level down: drive() calls stage() through a pointer, and
 * stage() calls op() and, in phase 2, post(): the late site is inside stage()'s copy in
 * drive()'s F+. Each phase runs for a fixed time; the output is per-round values, the
 * same however many rounds ran. Usage: phase_late [MS_PHASE1] [MS_PHASE2] */
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

typedef long (*stage_fn)(long (*)(long), long (*)(long), long, int);

__attribute__((noinline)) long stage(long (*op)(long), long (*post)(long), long x, int late) {
    long s = op(x);
    if (late) s = post(s);
    return s;
}

__attribute__((noinline)) long drive(stage_fn st, long (*op)(long), long (*post)(long), long n, int late) {
    long s = 0;
    for (long i = 0; i < n; i++) s += st(op, post, i, late);
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
    volatile stage_fn st = stage;
    long first = 0, second = 0, first_d = 0, second_d = 0;
    int same = 1;
    double t0 = now_ms();
    while (now_ms() - t0 < ms1) {
        long s = apply(op, post, 10000, 0), d = drive(st, op, post, 10000, 0);
        same &= (first == 0 || s == first) && (first_d == 0 || d == first_d);
        first = s, first_d = d;
    }
    t0 = now_ms();
    while (now_ms() - t0 < ms2) {
        long s = apply(op, post, 10000, 1), d = drive(st, op, post, 10000, 1);
        same &= (second == 0 || s == second) && (second_d == 0 || d == second_d);
        second = s, second_d = d;
    }
    printf("phase1=%ld,%ld phase2=%ld,%ld consistent=%d\n", first, first_d, second, second_d, same);
    return 0;
}
