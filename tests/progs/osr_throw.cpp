// Issue 13 (OSR): run() is entered once and loops over a virtual call; the agent compiles
// run+ (which nothing calls again) and then moves the running activation into an OSR
// continuation. The call throws at the last iteration: the exception passes through the
// continuation's frame and run's profiled twin and is caught in main. stdout never
// depends on what drti does. Usage: osr_throw [rounds] (x 100000 calls).
#include <cstdio>
#include <cstdlib>

struct Done {
    long acc;
};

struct Op {
    virtual long step(long acc, long i) const = 0;
    virtual ~Op() {}
};

struct Mix : Op {
    long last;
    explicit Mix(long last) : last(last) {}
    long step(long acc, long i) const override {
        if (i == last)
            throw Done{acc};
        return acc * 31 + (i ^ (acc >> 7));
    }
};

struct Add : Op {
    long step(long acc, long i) const override { return acc + i; }
};

__attribute__((noinline)) long run(const Op *op, long n) {
    long acc = 7;
    for (long i = 0; i < n; i++)
        acc = op->step(acc, i);
    return acc;
}

int main(int argc, char **argv) {
    long n = (argc > 1 ? std::atol(argv[1]) : 100) * 100000;
    Op *op = argc > 5 ? static_cast<Op *>(new Add) : new Mix(n - 1);
    try {
        std::printf("finished %ld\n", run(op, n));
    } catch (const Done &d) {
        std::printf("caught %ld\n", d.acc);
    }
    delete op;
    return 0;
}
