/* Linked by agent/tests/link.rs with the agent's in-process linker (agent/src/link):
 * calls inside the object and to libc, data, bss, pointers in data, a jump table in
 * rodata, and symbols the test places far (> 2 GiB) from the object. */
#include <stdio.h>
#include <string.h>

int counter = 5;
static int hits;
int buf[16];
const char *names[] = {"zero", "one", "two", "three"};
extern int far_data;            /* the test maps it far away */
extern long far_function(long); /* likewise */
extern void sink(int);          /* a function of the test */
/* Weak definitions: the process's definition wins when it has one (the test has
 * shared_counter, not own_weak), as with inline functions' statics shared with a module. */
__attribute__((weak)) int shared_counter;
__attribute__((weak)) int own_weak = 7;

static __attribute__((noinline)) int helper(int x) { return x * 3 + counter; }
int add_twice(int a) { hits++; buf[a & 15] += a; return helper(a) + helper(a + 1); }
int get_hits(void) { return hits; }
int get_buf(int i) { return buf[i & 15]; }
void set_counter(int v) { counter = v; }

int dispatch(int k, int v) {
  switch (k) {
  case 0: sink(v); return 1;
  case 1: return helper(v);
  case 2: return (int)strlen(names[v & 3]);
  case 3: return far_data + v;
  case 4: return (int)far_function(v);
  case 5: sink(v + 2); return 6;
  case 6: return hits * 100 + v;
  default: return -1;
  }
}

int fmt(char *out, int n) { return snprintf(out, 64, "n=%d %s", n, names[n & 3]); }
int bump_shared(void) { return ++shared_counter * 100 + own_weak; }
long call_far(long x) { return far_function(x) + far_data; }
