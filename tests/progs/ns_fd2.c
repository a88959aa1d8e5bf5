/* hygiene: the program closes stderr and opens its own file, which lands on fd 2; agent
 * warnings and log lines written later must not go into that file.
 * Usage: ns_fd2 FILE */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static long twice(long x) { return 2 * x; }

__attribute__((noinline)) long apply(long (*f)(long), long n) {
    long s = 0;
    for (long i = 0; i < n; i++) s += f(i);
    return s;
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    close(2);
    int fd = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd != 2) return 3;
    const char *mine = "the program's own line\n";
    write(fd, mine, strlen(mine));
    long (*volatile fp)(long) = twice; /* opaque: no specialisation of apply */
    long s = 0;
    for (int r = 0; r < 3000; r++) s += apply(fp, 1000);
    struct timespec t = {0, 300 * 1000000L};
    nanosleep(&t, NULL); /* the compile and its log lines happen meanwhile */
    for (int r = 0; r < 300; r++) s += apply(fp, 1000);
    printf("sum=%ld\n", s);
    return 0;
}
