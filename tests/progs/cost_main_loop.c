/* The hot indirect call sits in a loop of main, which is entered once: main runs its
 * profiled twin from start to end, and the JIT refuses it (it calls setjmp, like a
 * program's error handling at the top of main). Once the agent has decided so, the
 * running activation must stop counting: the site's word in the runtime area says so.
 * Prints the same with and without the agent. */
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>

int twice(int x) { return 2 * x + 1; }
int thrice(int x) { return 3 * x; }

static jmp_buf env;

int main(int argc, char **argv) {
    long rounds = argc > 1 ? atol(argv[1]) : 20000;
    int (*volatile f)(int) = argc > 5 ? thrice : twice;
    long t = 0;
    if (setjmp(env))
        return 1;
    for (long k = 0; k < rounds; k++)
        for (int i = 0; i < 10000; i++)
            t += f(i);
    if (t == 42)
        longjmp(env, 1);
    printf("%ld\n", t);
    return 0;
}
