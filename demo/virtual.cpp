// virtual.cpp - a loop of C++ virtual calls over an array of shapes.
//
// Demonstrates: speculative devirtualisation + inlining.  total_area() calls
// v[i]->area() through the vtable.  When most objects have the same dynamic
// type, drti inlines that type's area() behind a guard (vtable/target check)
// and keeps the virtual call as the fallback; with 2-3 hot types it builds a
// short guard chain.  main() calls total_area() many times.
//
// Usage: virtual [MODE [ITERS [N]]]
//   MODE   mono   - every shape is a Square                       (default)
//          mostly - 99.9% Squares, every 1000th shape is a Circle
//          poly   - pseudo-random mix: ~50% Square, 30% Circle, 20% Triangle
//   ITERS  calls of total_area()   (default 60000)
//   N      shapes per call         (default 1000)
//
// Oracle: build with -DORACLE_TYPE=Square: the loop casts every element to the
// final class Square, so the call is devirtualised (and inlined) at compile
// time.  Only valid when every shape is a Square, so the oracle accepts only
// MODE mono (exit 2 otherwise).
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#define NOINLINE __attribute__((noinline))

class Shape {
  public:
    virtual ~Shape() = default;
    virtual double area() const = 0;
};

class Circle final : public Shape {
    double r;

  public:
    explicit Circle(double r_) : r(r_) {}
    double area() const override { return 3.141592653589793 * r * r; }
};

class Square final : public Shape {
    double s;

  public:
    explicit Square(double s_) : s(s_) {}
    double area() const override { return s * s; }
};

class Triangle final : public Shape {
    double b, h;

  public:
    Triangle(double b_, double h_) : b(b_), h(h_) {}
    double area() const override { return 0.5 * b * h; }
};

#ifdef ORACLE_TYPE
#define AREA(p) (static_cast<const ORACLE_TYPE *>(p)->area())
#else
#define AREA(p) ((p)->area())
#endif

// The hot virtual call site.
NOINLINE double total_area(Shape *const *v, size_t n) {
    double sum = 0.0;
    for (size_t i = 0; i < n; i++) sum += AREA(v[i]);
    return sum;
}

static uint32_t rng_state = 2463534242u;
static uint32_t xorshift32() {
    uint32_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return rng_state = x;
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "mono";
    long iters = argc > 2 ? atol(argv[2]) : 60000;
    long n = argc > 3 ? atol(argv[3]) : 1000;
    if (iters < 1 || n < 1) {
        std::fprintf(stderr, "usage: virtual [mono|mostly|poly [ITERS [N]]]\n");
        return 2;
    }
    int kind;  // 0 mono, 1 mostly, 2 poly
    if (std::strcmp(mode, "mono") == 0)
        kind = 0;
    else if (std::strcmp(mode, "mostly") == 0)
        kind = 1;
    else if (std::strcmp(mode, "poly") == 0)
        kind = 2;
    else {
        std::fprintf(stderr, "virtual: unknown mode '%s'\n", mode);
        return 2;
    }
#ifdef ORACLE_TYPE
    if (kind != 0) {
        std::fprintf(stderr, "virtual: the oracle build only runs mode 'mono'\n");
        return 2;
    }
#endif

    // 64 extra shapes so that each call can start at a different offset.
    size_t total = (size_t)n + 64;
    std::vector<std::unique_ptr<Shape>> owner;
    std::vector<Shape *> v;
    for (size_t i = 0; i < total; i++) {
        double size = 0.5 * (double)(1 + i % 8);  // 0.5 .. 4.0, exact
        uint32_t pick = kind == 2 ? xorshift32() % 10 : 0;
        if (kind == 1 && i % 1000 == 999) pick = 5;
        if (pick < 5)
            owner.emplace_back(new Square(size));
        else if (pick < 8)
            owner.emplace_back(new Circle(size));
        else
            owner.emplace_back(new Triangle(size, 4.5 - size));
        v.push_back(owner.back().get());
    }

    double sum = 0.0;
    for (long it = 0; it < iters; it++) sum += total_area(v.data() + it % 64, (size_t)n);
    std::printf("virtual mode=%s iters=%ld n=%ld sum=%.17g\n", mode, iters, n, sum);
    return 0;
}
