/* Proof of inlining: probe() notes where it returns to. Called from the original run(),
 * that is inside run(); inlined into run+ (or called from JIT'd code) it is not. stdout is
 * the same either way; the count goes to stderr for the test to read. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static long outside;

__attribute__((noinline)) static void note(void *ra) {
    Dl_info info;
    if (!dladdr(ra, &info) || !info.dli_sname || strcmp(info.dli_sname, "run") != 0)
        outside++;
}

int probe(int x) {
    note(__builtin_return_address(0));
    return x + 1;
}

int other(int x) { return x - 1; }

__attribute__((noinline)) long run(int (*f)(int), int n) {
    long s = 0;
    for (int i = 0; i < n; i++)
        s += f(i);
    return s;
}

int main(int argc, char **argv) {
    int (*f)(int) = (argc > 1 && strcmp(argv[1], "other") == 0) ? other : probe;
    long total = 0;
    for (int r = 0; r < 3000; r++)
        total += run(f, 1000);
    printf("total=%ld\n", total);
    fprintf(stderr, "outside=%ld\n", outside);
    return 0;
}
