/* step() calls decorated code through a pointer but also calls setjmp, so the JIT refuses
 * to compile it: once it has, step() should run with no sampling code at its site.
 * Prints the same with and without the agent. */
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>

int twice(int x) { return 2 * x + 1; }
int thrice(int x) { return 3 * x; }

static jmp_buf env;

__attribute__((noinline)) long step(int (*f)(int), int n) {
    volatile long t = 0;
    if (setjmp(env))
        return -1;
    for (int i = 0; i < n; i++)
        t += f(i);
    if (t == 42)
        longjmp(env, 1);
    return t;
}

int main(int argc, char **argv) {
    int rounds = argc > 1 ? atoi(argv[1]) : 20000;
    int (*volatile f)(int) = argc > 5 ? thrice : twice;
    long t = 0;
    for (int k = 0; k < rounds; k++)
        t += step(f, 10000);
    printf("%ld\n", t);
    return 0;
}
