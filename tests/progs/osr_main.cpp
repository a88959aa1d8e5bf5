// Issue 13 (OSR): a hot virtual call in a nested loop of main, entered once: both loops
// hold the call, so main's profiled twin checks an OSR slot at each loop head (two points).
// Prints a checksum, the same with and without the agent. Usage: osr_main [rounds].
#include <cstdio>
#include <cstdlib>

struct Shape {
    virtual long area(long x) const = 0;
    virtual ~Shape() {}
};

struct Square : Shape {
    long area(long x) const override { return x * x; }
};

struct Triangle : Shape {
    long area(long x) const override { return x * (x + 1) / 2; }
};

int main(int argc, char **argv) {
    long rounds = argc > 1 ? std::atol(argv[1]) : 100;
    Shape *s = argc > 5 ? static_cast<Shape *>(new Triangle) : new Square;
    long sum = 0;
    for (long r = 0; r < rounds; r++) {
        for (long i = 0; i < 10000; i++)
            sum += s->area(i ^ r);
        sum %= 1000000007;
    }
    std::printf("%ld\n", sum);
    delete s;
    return 0;
}
