/* prof_mix.c - one indirect call site with a known 90/10 call mix, in THREADS threads.
 *
 * Every 10th call goes to `rare`, the others to `common`, so the edge counts are known
 * exactly: each thread makes ITERS calls, ITERS/10 of them to `rare`. A periodic pattern
 * on purpose: sampling must not alias with it. Output does not depend on scheduling.
 *
 * Usage: prof_mix [ITERS [THREADS]]   (defaults 20000000 and 2)
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#define NOINLINE __attribute__((noinline))

long common(long x) { return x * 3 + 1; }
long rare(long x) { return x ^ 0x5a5a; }

long (*volatile fns[2])(long) = {common, rare};

/* The profiled site. */
NOINLINE long mix(long (*a)(long), long (*b)(long), long iters) {
    long s = 0;
    for (long i = 0; i < iters; i++) s += (i % 10 == 9 ? b : a)(i);
    return s;
}

struct job {
    long iters, result;
};

static void *thread_main(void *arg) {
    struct job *j = arg;
    j->result = mix(fns[0], fns[1], j->iters);
    return NULL;
}

int main(int argc, char **argv) {
    long iters = argc > 1 ? atol(argv[1]) : 20000000;
    int n = argc > 2 ? atoi(argv[2]) : 2;
    if (iters < 10 || n < 1 || n > 64) {
        fprintf(stderr, "usage: prof_mix [ITERS>=10 [THREADS<=64]]\n");
        return 2;
    }
    pthread_t th[64];
    struct job jobs[64];
    for (int i = 0; i < n; i++) {
        jobs[i] = (struct job){iters, 0};
        if (pthread_create(&th[i], NULL, thread_main, &jobs[i]) != 0) return 1;
    }
    for (int i = 0; i < n; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < n; i++) printf("thread %d: %ld\n", i, jobs[i].result);
    return 0;
}
