/* reliability: fork() while the agent profiles and after it has patched.
 *
 * apply() calls f through a pointer; main() calls apply() ITERS times per round. Before
 * each fork it flushes stdout; the child continues calling through the same site (first
 * with the old target, then with a new one), prints its result and exits; the parent
 * waits for it, prints the child's status, and continues the same way. ROUNDS forks in
 * total, at different points of the run (cold, profiling, patched). Output does not
 * depend on the agent; child pids go to stderr as "child=<pid>" for the test.
 * QUIESCE_MS > 0: the parent sleeps that long before it exits, so compiles still running
 * on the agent thread finish first (keeps this test about fork, not about exit).
 * Usage: rel_fork [ITERS [ROUNDS [QUIESCE_MS]]]  (defaults 200 4 0) */
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

long twice(long x) { return 2 * x; }
long plus_three(long x) { return x + 3; }
long xor_five(long x) { return x ^ 5; }

long (*targets[3])(long) = {twice, plus_three, xor_five};

__attribute__((noinline)) long apply(long (*f)(long), long n) {
    long s = 0;
    for (long i = 0; i < n; i++)
        s += f(i);
    return s;
}

static unsigned long loop(long (*f)(long), long iters, unsigned long h) {
    for (long i = 0; i < iters; i++)
        h = (h ^ (unsigned long)apply(f, 1000 + i % 7)) * 1099511628211ul;
    return h;
}

int main(int argc, char **argv) {
    long iters = argc > 1 ? atol(argv[1]) : 200;
    int rounds = argc > 2 ? atoi(argv[2]) : 4;
    if (iters < 1 || rounds < 1 || rounds > 64) {
        fprintf(stderr, "usage: rel_fork [ITERS [ROUNDS]]\n");
        return 2;
    }
    unsigned long h = 14695981039346656037ul;
    for (int r = 0; r < rounds; r++) {
        /* Rounds get longer, so forks fall before, during and after patching. */
        h = loop(targets[0], iters * r, h);
        fflush(stdout);
        pid_t pid = fork();
        if (pid < 0) {
            perror("fork");
            return 1;
        }
        if (pid == 0) {
            unsigned long c = loop(targets[0], iters, h);
            c = loop(targets[(r % 2) + 1], iters, c);
            printf("round %d child: %016lx\n", r, c);
            fflush(stdout);
            exit(0);
        }
        fprintf(stderr, "child=%d\n", (int)pid);
        int status = 0;
        if (waitpid(pid, &status, 0) != pid) {
            perror("waitpid");
            return 1;
        }
        printf("round %d child status: %s %d\n", r, WIFEXITED(status) ? "exit" : "signal",
               WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
        h = loop(targets[(r % 2) + 1], iters, h);
        printf("round %d parent: %016lx\n", r, h);
    }
    printf("final: %016lx\n", h);
    long quiesce = argc > 3 ? atol(argv[3]) : 0;
    if (quiesce > 0) {
        fflush(stdout);
        usleep((useconds_t)quiesce * 1000);
    }
    return 0;
}
