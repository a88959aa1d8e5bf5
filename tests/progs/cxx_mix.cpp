// C++ with the standard library: unique_ptr vectors with a 90/10 mix of two types (every 10th element),
// std::function over a lambda, a function-local static, std::sort with a lambda, std::map.
#include <algorithm>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <vector>
struct Shape { virtual ~Shape() = default; virtual double area() const = 0; virtual std::string name() const { return "shape"; } };
struct Sq : Shape { double s; explicit Sq(double s) : s(s) {} double area() const override { return s * s; } std::string name() const override { return "sq"; } };
struct Ci : Shape { double r; explicit Ci(double r) : r(r) {} double area() const override { return 3.0 * r * r; } };
static int counter() { static int calls = 0; return ++calls; }
__attribute__((noinline)) double total(const std::vector<std::unique_ptr<Shape>> &v) { double t = 0; for (auto &s : v) t += s->area(); return t; }
__attribute__((noinline)) long apply_fn(const std::function<long(long)> &f, int n) { long s = 0; for (int i = 0; i < n; i++) s += f(i); return s; }
int main(int argc, char **argv) {
  // Rounds: long enough that compiles finish while the program runs (exit never waits for them).
  int rounds = argc > 1 ? std::stoi(argv[1]) : 20000;
  std::vector<std::unique_ptr<Shape>> v;
  for (int i = 0; i < 1000; i++) { if (i % 10) v.push_back(std::make_unique<Sq>(i % 7)); else v.push_back(std::make_unique<Ci>(i % 5)); }
  double t = 0; long s = 0; int k = 3;
  std::function<long(long)> f = [k](long x) { counter(); return x * k; };
  for (int r = 0; r < rounds; r++) { t += total(v); s += apply_fn(f, 100); }
  std::vector<int> a(100000); for (int i = 0; i < 100000; i++) a[i] = (i * 7919) % 100003;
  for (int r = 0; r < 20; r++) std::sort(a.begin(), a.end(), [](int x, int y) { return x > y; });
  std::map<std::string, int> m; for (auto &p : v) m[p->name()]++;
  std::cout << t << " " << s << " " << counter() << " " << a[0] << " " << m["sq"] << " " << m["shape"] << std::endl;
}
