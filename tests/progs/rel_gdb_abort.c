/* reliability: a backtrace taken inside inlined code shows the function it was inlined into.
 *
 * run() calls f through a pointer; main() calls run() again and again, so drti recompiles
 * run as run+ (drti.plus.<n>.run) with victim() inlined and patches run's entry. victim()
 * looks at its return address: once it is no longer inside run() (victim was inlined into
 * run+, or is called from JIT'd code), it prints "inlined" to stderr and calls abort(), so
 * the debugger stops with run+ on the stack. Without the agent (or if the JIT never patches
 * run), it aborts after LIMIT calls anyway and says "never inlined".
 * Build: drti-cc -O2 -rdynamic rel_gdb_abort.c -o rel_gdb_abort -ldl */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LIMIT 20000000L

static long calls;

__attribute__((noinline)) static int outside_run(void *ra) {
    Dl_info info;
    return !dladdr(ra, &info) || !info.dli_sname || strcmp(info.dli_sname, "run") != 0;
}

int victim(int x) {
    calls++;
    if (outside_run(__builtin_return_address(0))) {
        fprintf(stderr, "inlined after %ld calls: aborting\n", calls);
        abort();
    }
    if (calls >= LIMIT) {
        fprintf(stderr, "never inlined after %ld calls: aborting\n", calls);
        abort();
    }
    return x + 1;
}

int other(int x) { return x - 1; }

__attribute__((noinline)) long run(int (*f)(int), int n) {
    long s = 0;
    for (int i = 0; i < n; i++)
        s += f(i);
    return s;
}

int (*volatile target)(int) = victim;

int main(void) {
    long total = 0;
    for (;;)
        total += run(target, 1000);
    printf("total=%ld\n", total);
    return 0;
}
