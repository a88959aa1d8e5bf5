// Many hot functions, one after another: KINDS drivers, each calling a virtual method of
// its own class in a loop, run in turn (phase k runs drive<k>). Under the agent every
// driver gets hot in its phase and is compiled (KINDS compiles over the run), which is what
// the compiler-process tests need: memory of the application with many compiles, a
// compiler killed while the program still has compiles ahead, a cache filled by one run
// and used by the next. stdout never depends on what drti does.
#include <cstdio>
#include <cstdlib>
#include <utility>

struct Base {
    virtual long step(long x) const = 0;
    virtual ~Base() {}
};

template <int K> struct Op : Base {
    long step(long x) const override { return (x * (K + 3)) ^ (K * 7919); }
};

template <int K> __attribute__((noinline)) long drive(const Base *b, long n) {
    long s = 0;
    for (long i = 0; i < n; i++)
        s += b->step(i);
    return s;
}

constexpr int KINDS = 64;
typedef long (*Driver)(const Base *, long);

template <int... K> struct Table {
    static Driver drivers[sizeof...(K)];
    static const Base *objects[sizeof...(K)];
};
template <int... K> Driver Table<K...>::drivers[sizeof...(K)] = {drive<K>...};
template <int... K> const Base *Table<K...>::objects[sizeof...(K)] = {new Op<K>()...};

template <int... K> Table<K...> table_of(std::integer_sequence<int, K...>);
typedef decltype(table_of(std::make_integer_sequence<int, KINDS>())) All;

int main(int argc, char **argv) {
    // reps calls of 1000 iterations per phase.
    long reps = argc > 1 ? atol(argv[1]) : 400;
    unsigned long h = 1469598103934665603ul;
    for (int k = 0; k < KINDS; k++) {
        long s = 0;
        for (long r = 0; r < reps; r++)
            s += All::drivers[k](All::objects[k], 1000);
        h = (h ^ (unsigned long)s) * 1099511628211ul;
    }
    printf("kinds=%d reps=%ld hash=%016lx\n", KINDS, reps, h);
    return 0;
}
