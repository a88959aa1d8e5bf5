// A composite of virtual calls: run() loops calling a container's virtual sum(), which
// loops over its elements calling their virtual f() (three element types, 60/30/10).
// The inner calls are 1000x hotter than the outer: the specialised sum() must stay
// reachable from whatever run() becomes. Usage: composite [ROUNDS]
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <vector>

struct Elem {
  virtual ~Elem() = default;
  virtual double f(double x) const = 0;
};
struct A : Elem { double f(double x) const override { return x * 1.01; } };
struct B : Elem { double f(double x) const override { return x + 1.0; } };
struct C : Elem { double f(double x) const override { return x * 0.5 + 2.0; } };

struct Container {
  virtual ~Container() = default;
  virtual double sum(double x) const = 0;
};
struct Vec : Container {
  std::vector<std::unique_ptr<Elem>> v;
  double sum(double x) const override {
    double s = 0;
    for (auto &e : v) s += e->f(x);
    return s;
  }
};

__attribute__((noinline)) double run(const Container &c, int n) {
  double t = 0;
  for (int i = 0; i < n; i++) t += c.sum(i * 0.001);
  return t;
}

int main(int argc, char **argv) {
  int rounds = argc > 1 ? std::atoi(argv[1]) : 100000;
  Vec c;
  for (int i = 0; i < 1000; i++) {
    int k = (i * 7) % 10;
    if (k < 6) c.v.push_back(std::make_unique<A>());
    else if (k < 9) c.v.push_back(std::make_unique<B>());
    else c.v.push_back(std::make_unique<C>());
  }
  double t = 0;
  for (int k = 0; k < 100; k++) t += run(c, rounds / 100); // run() is entered again and again
  std::printf("%.6e\n", t);
  return 0;
}
