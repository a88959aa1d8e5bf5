/* never stuck: dlopen, fork and exit must not wait for the agent's compile queue.
 *
 * Makes apply()'s indirect call hot at once (run with DRTI_HOT_THRESHOLD=1 and
 * DRTI_TEST_JIT_DELAY_MS making every compile slow), waits until a compile is surely
 * running, then times dlopen(PLUGIN), dlclose, and fork + waitpid of a child that exits at
 * once. Prints the results on stdout (the same with and without the agent) and the
 * milliseconds each step took on stderr ("ms dlopen=.. dlclose=.. fork=..").
 * Usage: ns_block PLUGIN.so */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long twice(long x) { return 2 * x; }
static long plus1(long x) { return x + 1; }

__attribute__((noinline)) long apply(long (*f)(long), long n) {
    long s = 0;
    for (long i = 0; i < n; i++) s += f(i);
    return s;
}
__attribute__((noinline)) long apply2(long (*f)(long), long n) {
    long s = 0;
    for (long i = 0; i < n; i++) s -= f(i);
    return s;
}

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: ns_block PLUGIN.so\n");
        return 2;
    }
    long (*volatile f1)(long) = twice, (*volatile f2)(long) = plus1; /* opaque: no specialisation */
    long s = 0;
    for (int r = 0; r < 2000; r++) s += apply(f1, 100) + apply2(f2, 100);
    /* The first compile has started by now (threshold 1) and takes DRTI_TEST_JIT_DELAY_MS. */
    struct timespec pause = {0, 300 * 1000000L};
    nanosleep(&pause, NULL);
    double t0 = now_ms();
    void *h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    double t1 = now_ms();
    if (!h) {
        fprintf(stderr, "ns_block: %s\n", dlerror());
        return 1;
    }
    dlclose(h);
    double t2 = now_ms();
    pid_t pid = fork();
    if (pid == 0) _exit(7);
    int st = 0;
    waitpid(pid, &st, 0);
    double t3 = now_ms();
    printf("sum=%ld child=%d\n", s, WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    fprintf(stderr, "ms dlopen=%.0f dlclose=%.0f fork=%.0f\n", t1 - t0, t2 - t1, t3 - t2);
    fflush(stdout);
    return 0;
}
