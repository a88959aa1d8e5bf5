/* environment: the agent must do nothing in a setuid/setgid (AT_SECURE) process.
 * A hot indirect call (apply called ITERS times) so an active agent would compile and
 * patch; on stderr the facts the test needs: "secure=<AT_SECURE> agent_mapped=<0|1>
 * euid=<n> uid=<n>", where agent_mapped says whether a library whose name contains
 * "drti_agent" is mapped (that is, whether the agent was loaded at all).
 * With AGENT (an absolute path), main first dlopen()s it: in secure mode glibc ignores
 * LD_PRELOAD paths with a '/' but still loads an absolute path given to dlopen, so the
 * agent's constructor runs in the secure process without installing anything into the
 * system library directories.
 * Usage: rel_secure [ITERS [AGENT]]  (default 2000, no dlopen) */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <unistd.h>

long twice(long x) { return 2 * x; }
long (*volatile target)(long) = twice;

__attribute__((noinline)) long apply(long (*f)(long), long n) {
    long s = 0;
    for (long i = 0; i < n; i++) s += f(i);
    return s;
}

int main(int argc, char **argv) {
    long iters = argc > 1 ? atol(argv[1]) : 2000;
    if (argc > 2 && !dlopen(argv[2], RTLD_NOW | RTLD_GLOBAL)) {
        fprintf(stderr, "dlopen %s: %s\n", argv[2], dlerror());
        return 2;
    }
    long sum = 0;
    for (long i = 0; i < iters; i++) sum += apply(target, 1000);
    printf("sum=%ld\n", sum);
    int mapped = 0;
    FILE *f = fopen("/proc/self/maps", "r");
    char line[1024];
    while (f && fgets(line, sizeof line, f))
        if (strstr(line, "drti_agent")) mapped = 1;
    if (f) fclose(f);
    fprintf(stderr, "secure=%lu agent_mapped=%d euid=%d uid=%d\n", getauxval(AT_SECURE), mapped, (int)geteuid(),
            (int)getuid());
    return 0;
}
