/* reliability: W^X. A sampler thread reads /proc/self/maps as fast as it can while the
 * main thread runs six hot loops, each through its own indirect call site, so the agent
 * compiles and patches six functions (more with several targets per site). The sampler
 * looks for any mapping with both 'w' and 'x' in its permissions and reports on stderr:
 * "samples=<n> wx=<count>" plus the first offending line. stdout has only the results.
 * After the deterministic part, main keeps calling every site with changing targets for MS
 * milliseconds (results discarded), so patches that land late are still sampled.
 * Then it sleeps QUIESCE_MS while the sampler goes on, so compiles still in flight land
 * (and are sampled) before the process exits.
 * Usage: rel_wx [ITERS [MS [QUIESCE_MS]]]  (defaults 300 1000 0) */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static atomic_int done;
static long samples, wx;
static char first_bad[512];

static void *sampler(void *arg) {
    (void)arg;
    static char buf[1 << 20];
    while (!atomic_load(&done)) {
        FILE *f = fopen("/proc/self/maps", "r");
        if (!f) continue;
        size_t len = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[len] = 0;
        samples++;
        for (char *line = buf; line && *line;) {
            char *nl = strchr(line, '\n');
            if (nl) *nl = 0;
            char *perm = strchr(line, ' ');
            if (perm && perm[1] && perm[2] && perm[3] && perm[2] == 'w' && perm[3] == 'x') {
                if (wx++ == 0) snprintf(first_bad, sizeof first_bad, "%s", line);
            }
            line = nl ? nl + 1 : NULL;
        }
    }
    return NULL;
}

long f_add(long x) { return x + 11; }
long f_mul(long x) { return x * 7; }
long f_xor(long x) { return x ^ 0x3c3c; }
long f_shr(long x) { return (x >> 2) + 1; }
long (*fns[4])(long) = {f_add, f_mul, f_xor, f_shr};

#define SITE(name)                                              \
    __attribute__((noinline)) long name(long (*f)(long), long n) { \
        long s = 0;                                             \
        for (long i = 0; i < n; i++) s += f(i);                 \
        return s;                                               \
    }
SITE(site0)
SITE(site1)
SITE(site2)
SITE(site3)
SITE(site4)
SITE(site5)
long (*sites[6])(long (*)(long), long) = {site0, site1, site2, site3, site4, site5};

int main(int argc, char **argv) {
    long iters = argc > 1 ? atol(argv[1]) : 300;
    if (iters < 1) return 2;
    pthread_t t;
    if (pthread_create(&t, NULL, sampler, NULL) != 0) return 1;
    unsigned long h = 14695981039346656037ul;
    for (int s = 0; s < 6; s++)
        for (long i = 0; i < iters; i++) {
            /* site s sees one target, then two (a re-patch with a guard chain) */
            long (*f)(long) = fns[(s + (i >= iters / 2 ? (int)(i % 2) : 0)) % 4];
            h = (h ^ (unsigned long)sites[s](f, 500)) * 1099511628211ul;
        }
    long ms = argc > 2 ? atol(argv[2]) : 1000;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    volatile long sink = 0;
    for (long i = 0;; i++) {
        for (int s = 0; s < 6; s++) sink += sites[s](fns[(s + i % 3) % 4], 100);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        if ((t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000 >= ms) break;
    }
    long quiesce = argc > 3 ? atol(argv[3]) : 0;
    if (quiesce > 0) usleep((useconds_t)quiesce * 1000);
    atomic_store(&done, 1);
    pthread_join(t, NULL);
    printf("hash=%016lx\n", h);
    fprintf(stderr, "samples=%ld wx=%ld\n", samples, wx);
    if (wx) fprintf(stderr, "first wx mapping: %s\n", first_bad);
    return 0;
}
