/* prof_two_threads.c - THREADS threads (default 2) call through ONE indirect call site.
 *
 * The profiling path of a site must not write memory that other threads write (a shared
 * counter's cache line bouncing between cores costs more than the call), so this program
 * runs the same tight loop alone and in several threads; its output does not depend on
 * scheduling: each thread folds its results into its own sum, printed in thread order.
 *
 * Usage: prof_two_threads [ITERS [THREADS]]   (defaults 20000000 and 2)
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#define NOINLINE __attribute__((noinline))

float scale(float x) { return x * 0.5f + 1.0f; }
float shift(float x) { return x - 0.25f; }

/* Not const: the compiler cannot know which target is used. */
float (*fns[2])(float) = {scale, shift};

/* The one hot indirect call site, shared by every thread. */
NOINLINE float run(float (*f)(float), long iters) {
    float acc = 0.0f;
    for (long i = 0; i < iters; i++) acc = f(acc) * 0.75f;
    return acc;
}

struct job {
    long iters;
    int which;
    float result;
};

static void *thread_main(void *arg) {
    struct job *j = arg;
    j->result = run(fns[j->which], j->iters);
    return NULL;
}

int main(int argc, char **argv) {
    long iters = argc > 1 ? atol(argv[1]) : 20000000;
    int n = argc > 2 ? atoi(argv[2]) : 2;
    if (iters < 1 || n < 1 || n > 64) {
        fprintf(stderr, "usage: prof_two_threads [ITERS [THREADS<=64]]\n");
        return 2;
    }
    pthread_t th[64];
    struct job jobs[64];
    for (int i = 0; i < n; i++) {
        jobs[i] = (struct job){iters, i % 2, 0.0f};
        if (pthread_create(&th[i], NULL, thread_main, &jobs[i]) != 0) {
            fprintf(stderr, "prof_two_threads: cannot create a thread\n");
            return 1;
        }
    }
    for (int i = 0; i < n; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < n; i++) printf("thread %d: %.6f\n", i, jobs[i].result);
    return 0;
}
