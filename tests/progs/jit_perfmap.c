// Prints its pid, then waits for a line on stdin before its hot loop (issue 10 item 11):
// the test plants /tmp/perf-<pid>.map before the agent writes it.
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

typedef long (*op)(long);
long twice(long x) { return 2 * x + 1; }

__attribute__((noinline)) long run(op f, long n) {
  long acc = 0;
  for (long i = 0; i < n; i++) acc = (acc + f(i)) % 1000003;
  return acc;
}

int main(void) {
  printf("pid %d\n", (int)getpid());
  fflush(stdout);
  char line[16];
  if (!fgets(line, sizeof line, stdin)) return 2;
  op volatile f = twice;  // volatile: no clone of run() specialised for twice
  long total = 0;
  for (int r = 0; r < 20; r++) {
    if (r == 2) usleep(300000);  // time for the agent to compile
    total += run(f, 100000);
  }
  printf("%ld\n", total);
  return 0;
}
