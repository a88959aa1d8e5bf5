/* never wrong: a frame still inside F+ after dlclose must not run the old inlined copy of
 * a plugin whose address another plugin now has.
 *
 * A worker thread makes run()'s indirect call hot on plugin Y's plugin_fn (DRTI_HOT_THRESHOLD=1),
 * then enters run() once more and stays in that one frame until told to stop. Meanwhile
 * main stops handing out Y's function (a local one instead), dlcloses Y, dlopens Z (which
 * usually lands at Y's address), and hands out Z's function. run() checks every result
 * against what the function it was given computes. stdout: the number of wrong results
 * (0) and calls; stderr: whether Z landed at Y's address.
 * Usage: ns_reuse_host Y.so Z.so */
#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <time.h>

struct entry {
    long (*f)(long);
    long mul;
};
static struct entry table[3];
static atomic_int cur, stop, in_long_frame;

static long local7(long x) { return 7 * x + 1; }

__attribute__((noinline)) long run(long n, long *calls) {
    long bad = 0, i;
    for (i = 0; n < 0 || i < n; i++) {
        if (atomic_load_explicit(&stop, memory_order_relaxed)) break;
        int k = atomic_load_explicit(&cur, memory_order_acquire);
        long x = i & 1023;
        if (table[k].f(x) != table[k].mul * x + 1) bad++;
    }
    *calls += i;
    return bad;
}

static void sleep_ms(long ms) {
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}

static long wrong, calls;

static void *worker(void *arg) {
    (void)arg;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    do {
        wrong += run(1000, &calls);
        clock_gettime(CLOCK_MONOTONIC, &t1);
    } while ((t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000 < 700);
    atomic_store(&in_long_frame, 1);
    wrong += run(-1, &calls); /* one frame, across the unload and the reload */
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: ns_reuse_host Y.so Z.so\n");
        return 2;
    }
    void *y = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (!y) return fprintf(stderr, "%s\n", dlerror()), 1;
    long (*fy)(long) = (long (*)(long))dlsym(y, "plugin_fn");
    long (*my)(void) = (long (*)(void))dlsym(y, "plugin_mul");
    table[0] = (struct entry){fy, my()};
    table[1] = (struct entry){local7, 7};
    pthread_t t;
    pthread_create(&t, NULL, worker, NULL);
    while (!atomic_load(&in_long_frame)) sleep_ms(10);
    sleep_ms(100);
    atomic_store_explicit(&cur, 1, memory_order_release); /* stop handing out Y's function */
    sleep_ms(50);
    dlclose(y);
    void *z = dlopen(argv[2], RTLD_NOW | RTLD_LOCAL);
    if (!z) return fprintf(stderr, "%s\n", dlerror()), 1;
    long (*fz)(long) = (long (*)(long))dlsym(z, "plugin_fn");
    long (*mz)(void) = (long (*)(void))dlsym(z, "plugin_mul");
    fprintf(stderr, "same address: %s\n", fz == fy ? "yes" : "no");
    table[2] = (struct entry){fz, mz()};
    atomic_store_explicit(&cur, 2, memory_order_release);
    sleep_ms(300);
    atomic_store(&stop, 1);
    pthread_join(t, NULL);
    printf("wrong=%ld called=%s\n", wrong, calls > 0 ? "yes" : "no");
    dlclose(z);
    return 0;
}
