// Exceptions through F+ (issue 10 item 1): typed catch, catch by base class, catch (...),
// rethrow, a dynamic exception specification and nested try, each in a function F whose
// indirect call gets inlined. The targets throw different types in a pattern, so some
// throws come from an inlined copy and some through a guard miss. Prints how many times
// each handler caught what; identical with and without the agent.
// Build with -std=c++14 (dynamic exception specifications).
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <stdexcept>
#include <unistd.h>

struct A { int v; };
struct B : A {};
struct C { int w; };

typedef void (*fn)(int);

void t_none(int) {}
void t_a(int i) { throw A{i % 3}; }
void t_b(int i) { B b; b.v = i % 5; throw b; }
void t_c(int i) { throw C{i % 7}; }
void t_int(int i) { throw i; }

void t_range(int i) { throw std::out_of_range(i % 2 ? "odd" : "even"); }
void t_runtime(int i) { throw std::runtime_error(i % 2 ? "odd" : "even"); }

static long counts[7][8];

// Typed catch: the most derived handler first.
__attribute__((noinline)) void f_typed(fn g, int i) {
  try {
    g(i);
    counts[0][0]++;
  } catch (const B &) {
    counts[0][1]++;
  } catch (const A &) {
    counts[0][2]++;
  } catch (const C &) {
    counts[0][3]++;
  } catch (int) {
    counts[0][4]++;
  }
}

// Catch by base class only; everything else escapes to the caller.
__attribute__((noinline)) void f_base(fn g, int i) {
  try {
    g(i);
    counts[1][0]++;
  } catch (const A &a) {
    counts[1][1]++;
    counts[1][2] += a.v;
  }
}

// catch (...) after a typed handler.
__attribute__((noinline)) void f_all(fn g, int i) {
  try {
    g(i);
    counts[2][0]++;
  } catch (const C &c) {
    counts[2][1] += 1 + c.w;
  } catch (...) {
    counts[2][2]++;
  }
}

// Rethrow from a nested try, caught again by type in the outer one.
__attribute__((noinline)) void f_rethrow(fn g, int i) {
  try {
    try {
      g(i);
      counts[3][0]++;
    } catch (const A &) {
      counts[3][1]++;
      throw;
    } catch (int) {
      counts[3][2]++;
    }
  } catch (const B &) {
    counts[3][3]++;
  } catch (const A &) {
    counts[3][4]++;
  } catch (...) {
    counts[3][5]++;
  }
}

// Dynamic exception specification: A (and B, derived) pass; anything else goes to
// std::unexpected, whose handler below turns it into an A.
__attribute__((noinline)) void f_spec(fn g, int i) throw(A) { g(i); }

__attribute__((noinline)) void call_spec(fn g, int i) {
  try {
    f_spec(g, i);
    counts[4][0]++;
  } catch (const B &) {
    counts[4][1]++;
  } catch (const A &a) {
    counts[4][2]++;
    counts[4][3] += a.v;
  }
}

// Nested try in F itself, with a throw from the handler of the inner one.
__attribute__((noinline)) void f_nested(fn g, int i) {
  try {
    try {
      g(i);
      counts[5][0]++;
    } catch (const C &c) {
      counts[5][1]++;
      throw A{c.w};
    }
  } catch (const B &) {
    counts[5][2]++;
  } catch (const A &a) {
    counts[5][3] += 1 + a.v;
  } catch (int) {
    counts[5][4]++;
  }
}

// The standard library's hierarchy: type_info objects that live in libstdc++.
__attribute__((noinline)) void f_std(fn g, int i) {
  try {
    g(i);
    counts[6][0]++;
  } catch (const std::runtime_error &e) {
    counts[6][1] += e.what()[0];
  } catch (const std::logic_error &e) {
    counts[6][2] += e.what()[0];
  } catch (const std::exception &) {
    counts[6][3]++;
  } catch (...) {
    counts[6][4]++;
  }
}

static void unexpected_to_a() { throw A{77}; }

int main(int argc, char **argv) {
  int n = argc > 1 ? atoi(argv[1]) : 3000;
  std::set_unexpected(unexpected_to_a);
  fn all[5] = {t_none, t_a, t_b, t_c, t_int};
  fn spec_ok[3] = {t_none, t_a, t_b};
  volatile unsigned mix = 0x9e3779b9u;
  for (int i = 0; i < n; i++) {
    // Pauses give the agent time to compile, so most iterations run F+ (no effect on output).
    if (i == n / 10 || i == n / 3) usleep(300000);
    // Mostly one target per phase, so it gets inlined, with the others mixed in.
    unsigned r = mix = mix * 1103515245u + 12345u;
    int phase = (i * 5) / n;
    fn g = (r >> 16) % 4 == 0 ? all[(r >> 20) % 5] : all[phase];
    f_typed(g, i);
    try {
      f_base(g, i);
    } catch (const C &) {
      counts[1][3]++;
    } catch (int) {
      counts[1][4]++;
    }
    f_all(g, i);
    f_rethrow(g, i);
    call_spec((r >> 16) % 4 == 0 && i > n / 2 ? t_c : spec_ok[(r >> 18) % 3], i);
    f_nested(g, i);
    fn std_mix[4] = {t_none, t_range, t_runtime, t_a};
    f_std((r >> 16) % 4 == 0 ? std_mix[(r >> 20) % 4] : std_mix[phase % 3], i);
  }
  const char *names[7] = {"typed", "base", "all", "rethrow", "spec", "nested", "std"};
  for (int k = 0; k < 7; k++) {
    printf("%s:", names[k]);
    for (int j = 0; j < 8; j++) printf(" %ld", counts[k][j]);
    printf("\n");
  }
  return 0;
}
