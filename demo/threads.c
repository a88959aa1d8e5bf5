/* threads.c - one indirect call site shared by 8 threads, with a changing target.
 *
 * Demonstrates: profiling and patching while other threads run the code.
 * Every thread calls work(f, n), which calls f through a pointer n times.  The
 * target changes over time, so drti has to cope with a site whose hot target
 * moves, and with re-patching work() while 8 threads are executing it:
 *   phase 1: REPS calls of work(triple_plus_one, ...)
 *   phase 2: REPS calls of work(flip_bits, ...)
 *   phase 3: REPS calls cycling triple_plus_one, flip_bits, half_plus_seven
 * Each thread uses its own n (N + thread index) and folds every result into a
 * hash; main() joins the threads and prints the hashes in thread order and
 * their total, which therefore do not depend on scheduling.
 *
 * Usage: threads [REPS [N]]   (defaults 10000 and 1000; 8 threads always)
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#define NOINLINE __attribute__((noinline))
#define NTHREADS 8

long triple_plus_one(long x) { return 3 * x + 1; }
long flip_bits(long x) { return x ^ 0x5555; }
long half_plus_seven(long x) { return (x >> 1) + 7; }

/* Not const and not static: the compiler cannot know which targets main uses. */
long (*targets[3])(long) = {triple_plus_one, flip_bits, half_plus_seven};

/* The hot indirect call site, shared by all threads. */
NOINLINE long work(long (*f)(long), long n) {
    long s = 0;
    for (long i = 0; i < n; i++) s += f(i);
    return s;
}

struct job {
    long reps, n;
    unsigned long hash;
};

static void *thread_main(void *arg) {
    struct job *j = arg;
    unsigned long h = 14695981039346656037ul;
    for (long r = 0; r < j->reps; r++) h = (h ^ (unsigned long)work(targets[0], j->n)) * 1099511628211ul;
    for (long r = 0; r < j->reps; r++) h = (h ^ (unsigned long)work(targets[1], j->n)) * 1099511628211ul;
    for (long r = 0; r < j->reps; r++)
        h = (h ^ (unsigned long)work(targets[r % 3], j->n)) * 1099511628211ul;
    j->hash = h;
    return NULL;
}

int main(int argc, char **argv) {
    long reps = argc > 1 ? atol(argv[1]) : 10000;
    long n = argc > 2 ? atol(argv[2]) : 1000;
    if (reps < 1 || n < 1 || n > 100000000) {
        fprintf(stderr, "usage: threads [REPS [N]]\n");
        return 2;
    }
    pthread_t tid[NTHREADS];
    struct job jobs[NTHREADS];
    for (int t = 0; t < NTHREADS; t++) {
        jobs[t] = (struct job){.reps = reps, .n = n + t, .hash = 0};
        if (pthread_create(&tid[t], NULL, thread_main, &jobs[t]) != 0) {
            fprintf(stderr, "threads: pthread_create failed\n");
            return 1;
        }
    }
    unsigned long total = 0;
    printf("threads reps=%ld n=%ld\n", reps, n);
    for (int t = 0; t < NTHREADS; t++) {
        pthread_join(tid[t], NULL);
        printf("thread %d: %016lx\n", t, jobs[t].hash);
        total += jobs[t].hash;
    }
    printf("total: %016lx\n", total);
    return 0;
}
