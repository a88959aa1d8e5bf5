/* process limits (memory limits, sanitizers): hot indirect calls whose target changes
 * part-way, run by THREADS threads (0 = by main itself), over an array of the program's
 * own MB megabytes, so a limited process spends its allowance as a real program would.
 * stdout depends only on the arguments; the exit code is EXIT.
 * Usage: limits_hot [MB [REPS [THREADS [EXIT]]]]   (default 1 4000 0 0) */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N 1000

long add3(long x) { return x + 3; }
long mul5(long x) { return x * 5; }
long xor9(long x) { return x ^ 9; }
long (*volatile table[3])(long) = {add3, mul5, xor9};

__attribute__((noinline)) long apply(long (*f)(long), const long *v, long n) {
    long s = 0;
    for (long i = 0; i < n; i++)
        s += f(v[i]);
    return s;
}

struct job {
    int id;
    long reps;
    const long *v;
    long sum;
};

static void *work(void *p) {
    struct job *j = p;
    long s = 0;
    for (long r = 0; r < j->reps; r++)
        s += apply(table[(r * 3 / j->reps + j->id) % 3], j->v, N);
    j->sum = s;
    return NULL;
}

int main(int argc, char **argv) {
    long mb = argc > 1 ? atol(argv[1]) : 1;
    long reps = argc > 2 ? atol(argv[2]) : 4000;
    int threads = argc > 3 ? atoi(argv[3]) : 0;
    int code = argc > 4 ? atoi(argv[4]) : 0;
    size_t bytes = (size_t)(mb < 1 ? 1 : mb) << 20;
    long *v = malloc(bytes);
    if (!v) {
        puts("cannot allocate the array");
        return 3;
    }
    memset(v, 0, bytes);
    for (long i = 0; i < N; i++)
        v[i] = i * 7 % 101;
    struct job jobs[8];
    int n = threads < 1 ? 1 : threads > 8 ? 8 : threads;
    pthread_t tid[8];
    for (int i = 0; i < n; i++) {
        jobs[i] = (struct job){.id = i, .reps = reps, .v = v};
        if (threads > 0 && pthread_create(&tid[i], NULL, work, &jobs[i]) != 0) {
            puts("cannot start a thread");
            return 4;
        }
    }
    long total = 0;
    for (int i = 0; i < n; i++) {
        if (threads > 0)
            pthread_join(tid[i], NULL);
        else
            work(&jobs[i]);
        printf("job %d: %ld\n", i, jobs[i].sum);
        total += jobs[i].sum;
    }
    printf("total: %ld\n", total);
    free(v);
    return code;
}
