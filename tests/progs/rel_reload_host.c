/* reliability: dlclose of a plugin whose function was inlined, then dlopen of another.
 *
 * For each PLUGIN argument in turn: dlopen it, run apply(plugin_fn) ITERS times (apply is
 * the hot site; drti inlines plugin_fn into apply+), print the sum and the plugin's own
 * call counter, dlclose it. The sums must be exactly what the plugin now loaded computes.
 * Then it keeps calling apply for MS more milliseconds (results discarded) so the JIT has
 * time to inline this plugin before it is closed; stdout does not depend on MS.
 * On stderr: "load <path> at <address of plugin_fn>" for the test to see address reuse.
 * Usage: rel_reload_host ITERS MS PLUGIN.so... */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

__attribute__((noinline)) long apply(long (*f)(long), long n) {
    long s = 0;
    for (long i = 0; i < n; i++)
        s += f(i);
    return s;
}

int main(int argc, char **argv) {
    long iters = argc > 3 ? atol(argv[1]) : 0;
    long ms = argc > 3 ? atol(argv[2]) : -1;
    if (iters < 1 || ms < 0) {
        fprintf(stderr, "usage: rel_reload_host ITERS MS PLUGIN.so...\n");
        return 2;
    }
    for (int a = 3; a < argc; a++) {
        void *h = dlopen(argv[a], RTLD_NOW | RTLD_LOCAL);
        if (!h) {
            fprintf(stderr, "rel_reload_host: %s\n", dlerror());
            return 1;
        }
        long (*fn)(long) = (long (*)(long))dlsym(h, "plugin_fn");
        unsigned long (*calls)(void) = (unsigned long (*)(void))dlsym(h, "plugin_calls");
        long (*mul)(void) = (long (*)(void))dlsym(h, "plugin_mul");
        if (!fn || !calls || !mul) {
            fprintf(stderr, "rel_reload_host: %s: missing symbols\n", argv[a]);
            return 1;
        }
        fprintf(stderr, "load %s at %p\n", argv[a], (void *)fn);
        long sum = 0, n = 1000;
        for (long it = 0; it < iters; it++)
            sum += apply(fn, n);
        /* What plugin_fn computes, summed in closed form: sum of (m*i+1) for i < n. */
        long m = mul(), expect = iters * (m * (n * (n - 1) / 2) + n);
        printf("load %d: mul=%ld sum=%ld expect=%ld\n", a - 2, m, sum, expect);
        if (calls() != (unsigned long)(iters * n)) {
            printf("load %d: plugin counted %lu calls, expected %ld\n", a - 2, calls(), iters * n);
        }
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        volatile long sink = 0;
        do {
            sink += apply(fn, n);
            clock_gettime(CLOCK_MONOTONIC, &t1);
        } while ((t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000 < ms);
        if (dlclose(h) != 0) {
            fprintf(stderr, "rel_reload_host: dlclose: %s\n", dlerror());
            return 1;
        }
    }
    return 0;
}
