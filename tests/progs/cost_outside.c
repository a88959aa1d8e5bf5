/* A hot indirect call whose only target lies outside decorated code (libc's strlen):
 * nothing to inline, so once the agent has seen enough samples, batch() should run with
 * no sampling code at its site. Prints the same with and without the agent. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

__attribute__((noinline)) long batch(size_t (*f)(const char *), const char *s, int n) {
    long t = 0;
    for (int i = 0; i < n; i++)
        t += f(s + (i & 3));
    return t;
}

int main(int argc, char **argv) {
    int rounds = argc > 1 ? atoi(argv[1]) : 20000;
    size_t (*volatile f)(const char *) = strlen;
    long t = 0;
    for (int k = 0; k < rounds; k++)
        t += batch(f, "hello, world", 10000);
    printf("%ld\n", t);
    return 0;
}
