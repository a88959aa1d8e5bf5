/* policy: one hot callback (tens of millions of calls a second) and one cold wrapper
 * (a lock-like function pointer called ~60k times a second). Under the default
 * threshold both reach 10000 calls; only the hot one pays back its compile.
 * Usage: policy_mix [MS_HOT] [MS_COLD] */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static long twice(long x) { return 2 * x; }
static int lock_word;
static void take(void) { lock_word++; }

__attribute__((noinline)) long apply(long (*f)(long), long n) {
    long s = 0;
    for (long i = 0; i < n; i++) s += f(i);
    return s;
}
__attribute__((noinline)) void locked(void (*lock)(void)) { lock(); }

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

int main(int argc, char **argv) {
    double hot_ms = argc > 1 ? atof(argv[1]) : 600, cold_ms = argc > 2 ? atof(argv[2]) : 1500;
    long (*volatile f)(long) = twice;
    void (*volatile lock)(void) = take;
    long s = 0, rounds = 0;
    double t0 = now_ms();
    while (now_ms() - t0 < hot_ms) s += apply(f, 10000), rounds++;
    t0 = now_ms();
    struct timespec pause = {0, 1000000L};
    while (now_ms() - t0 < cold_ms) {
        for (int i = 0; i < 60; i++) locked(lock);
        nanosleep(&pause, NULL);
    }
    printf("per_round=%ld locked=%s\n", s / rounds, lock_word > 10000 ? "many" : "few");
    return 0;
}
