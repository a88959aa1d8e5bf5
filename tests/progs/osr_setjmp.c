/* Issue 13 (OSR): main calls setjmp, so drti-cc gives it no OSR point (a continuation
 * cannot take over a frame a longjmp may return to): its hot loop stays in main, the agent
 * rejects main with that reason, and the output is unchanged. Usage: osr_setjmp [rounds]. */
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>

typedef long (*step_fn)(long acc, long x);

long add(long acc, long x) { return acc + x; }
long mix(long acc, long x) { return acc * 31 + x; }

static step_fn steps[2] = {add, mix};
static jmp_buf env;

int main(int argc, char **argv) {
    long n = (argc > 1 ? atol(argv[1]) : 100) * 10000;
    step_fn step = steps[argc > 5];
    volatile long acc = 7;
    if (setjmp(env) == 0) {
        for (long i = 0; i < n; i++)
            acc = step(acc, i);
        longjmp(env, 1);
    }
    printf("%ld\n", acc);
    return 0;
}
