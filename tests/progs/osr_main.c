/* Issue 13 (OSR): the hot indirect call sits in a loop of main, entered once, so only an
 * on-stack replacement could move it into compiled code. main's profiled twin checks an
 * OSR slot at the head of the loop; F (main itself) has no such check. Prints a checksum,
 * the same with and without the agent. Usage: osr_main [rounds] (x 10000 calls). */
#include <stdio.h>
#include <stdlib.h>

typedef long (*step_fn)(long acc, long x);

long add(long acc, long x) { return acc + x; }
long mix(long acc, long x) { return acc * 31 + x; }

/* Non-zero data: the runtime area stays the only zeroed data of the program. */
static step_fn steps[2] = {add, mix};

int main(int argc, char **argv) {
    long n = (argc > 1 ? atol(argv[1]) : 100) * 10000;
    step_fn step = steps[argc > 5];
    long acc = 7;
    for (long i = 0; i < n; i++)
        acc = step(acc, i);
    printf("%ld\n", acc);
    return 0;
}
