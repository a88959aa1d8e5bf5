// exception.cpp - a C++ exception thrown by a callee reached through a virtual call.
//
// Demonstrates (correctness): when drti inlines Checked::apply() into run(),
// an exception thrown by the inlined code must still unwind through run()
// (running the destructor of its local Tally object) and be caught in main().
// Checked::apply() throws BadInput for every input x with x % 100000 == 77777.
// main() calls run() on consecutive input ranges; 15 of every 16 calls use a
// Checked, the 16th an Offset (never throws), so the call site is hot on
// Checked but also sees a second target (the guard's fallback path).
//
// Usage: exception [ITERS [N]]   (defaults 120000 and 1000)
// Output: caught = number of exceptions caught in main, runs = Tally
// destructor count (must equal ITERS), and a checksum of all results.
#include <cstdio>
#include <cstdlib>

#define NOINLINE __attribute__((noinline))

struct BadInput {
    long x;
};

class Op {
  public:
    virtual ~Op() = default;
    virtual long apply(long x) const = 0;
};

class Checked final : public Op {
  public:
    long apply(long x) const override {
        if (x % 100000 == 77777) throw BadInput{x};
        return (3 * x) ^ 0x2a;
    }
};

class Offset final : public Op {
  public:
    long apply(long x) const override { return x + 11; }
};

static long runs_done;  // incremented by ~Tally, also during unwinding

struct Tally {
    ~Tally() { ++runs_done; }
};

// The hot virtual call site; an exception from op.apply() leaves through here.
NOINLINE long run(const Op &op, long start, long n) {
    Tally t;
    long sum = 0;
    for (long i = 0; i < n; i++) sum += op.apply(start + i);
    return sum;
}

int main(int argc, char **argv) {
    long iters = argc > 1 ? std::atol(argv[1]) : 120000;
    long n = argc > 2 ? std::atol(argv[2]) : 1000;
    if (iters < 1 || n < 1 || iters > 1000000000L / n) {
        std::fprintf(stderr, "usage: exception [ITERS [N]]  (ITERS*N <= 1e9)\n");
        return 2;
    }
    Checked checked;
    Offset offset;
    unsigned long sum = 0;
    long caught = 0;
    for (long it = 0; it < iters; it++) {
        const Op &op = it % 16 == 15 ? static_cast<const Op &>(offset) : checked;
        try {
            sum = sum * 31 + (unsigned long)run(op, it * n, n);
        } catch (const BadInput &e) {
            caught++;
            sum = sum * 37 + (unsigned long)e.x;
        }
    }
    std::printf("exception iters=%ld n=%ld caught=%ld runs=%ld sum=%016lx\n", iters, n, caught,
                runs_done, sum);
    return 0;
}
