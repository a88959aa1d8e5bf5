// F tests and calls a weak function the program does not define (issue 10 item 4): the
// JIT used to leave the name for ORC to find, which failed the compile and made ORC print
// "JIT session error: Symbols not found" on the program's stderr. The copy must see
// the same null the original sees.
#include <stdio.h>
#include <unistd.h>

extern int maybe_there(int) __attribute__((weak));

typedef int (*fn)(int);
int inc(int x) { return x + 1; }
int dbl(int x) { return x * 2; }

__attribute__((noinline)) long run(fn f, int n) {
  long s = 0;
  for (int i = 0; i < n; i++) {
    s += f(i);
    if (maybe_there) s += maybe_there(i);
  }
  return s;
}

int main(void) {
  fn fs[2] = {inc, dbl};
  long t = 0;
  for (int r = 0; r < 20; r++) {
    if (r == 2 || r == 8) usleep(200000);  // time for the agent to compile
    t += run(fs[r & 1], 100000);
  }
  printf("%ld\n", t);
  return 0;
}
