/* Redirect under threads that block every signal (issue 10, item 5). 32 threads each
 * block all signals (sigfillset + pthread_sigmask(SIG_BLOCK), as thread pools do), then
 * call work() -- a short decorated function with one indirect call -- in a tight loop,
 * so its entry runs millions of times while the agent redirects it to work+, reverts it
 * (the target moves: three phases a, b, c) and redirects it again. A protocol that
 * leaves an int3 in work's entry for a moment kills such a process with SIGTRAP.
 * stdout depends only on the arguments. Usage: patch_sigblock [REPS [QUIESCE_MS]] */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define NTHREADS 32

int fa(int x) { return x * 3 + 1; }
int fb(int x) { return x ^ 0x55; }
int fc(int x) { return (x >> 1) + 7; }
int (*fns[3])(int) = {fa, fb, fc};

static long reps;
static pthread_barrier_t start;

__attribute__((noinline)) long work(int (*f)(int), int n) {
    long s = 0;
    for (int i = 0; i < n; i++)
        s += f(i);
    return s;
}

static void *thread_main(void *arg) {
    long id = (long)arg;
    sigset_t all;
    sigfillset(&all);
    if (pthread_sigmask(SIG_BLOCK, &all, NULL) != 0) abort();
    pthread_barrier_wait(&start);
    long s = 0;
    for (long r = 0; r < reps; r++) {
        int (*volatile f)(int) = fns[(r * 3) / reps];
        s += work(f, 4 + (int)(id & 3));
    }
    return (void *)s;
}

int main(int argc, char **argv) {
    reps = argc > 1 ? atol(argv[1]) : 300000;
    long quiesce = argc > 2 ? atol(argv[2]) : 0;
    pthread_t t[NTHREADS];
    pthread_barrier_init(&start, NULL, NTHREADS);
    for (long i = 0; i < NTHREADS; i++)
        if (pthread_create(&t[i], NULL, thread_main, (void *)i) != 0) return 2;
    long total = 0;
    for (int i = 0; i < NTHREADS; i++) {
        void *r;
        pthread_join(t[i], &r);
        total += (long)r;
        if (i % 8 == 7) printf("threads %d-%d: %ld\n", i - 7, i, total);
    }
    printf("total=%ld\n", total);
    fflush(stdout);
    if (quiesce > 0) usleep((useconds_t)quiesce * 1000);
    return 0;
}
