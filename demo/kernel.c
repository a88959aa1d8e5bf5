/* kernel.c - a float kernel that calls a tiny function through a pointer.
 *
 * Demonstrates: the classic "callback per element" loop.  apply() calls f once
 * per array element through a function pointer, so an ahead-of-time compiler
 * can neither inline f nor vectorise the loop.  drti sees the hot
 * (apply -> f) edge, recompiles apply with f inlined behind a guard and
 * redirects apply's entry; main() calls apply() many times, so the new code is
 * picked up on the next call.
 *
 * Usage: kernel [FN [ITERS [N]]]
 *   FN    twice | square | negate | plus_one   (default twice)
 *   ITERS calls of apply()                      (default 60000)
 *   N     array elements per call               (default 1000)
 *
 * Oracle: build with -DORACLE_FN=twice (or another FN): apply() then calls
 * ORACLE_FN directly, i.e. the target is known at compile time.  The oracle
 * refuses (exit 2) an FN other than the one it was built for, so its output is
 * byte-identical to the normal build's output for the same arguments.
 *
 * All values are small multiples of 1/4, so every product and sum is exact and
 * the output does not depend on the compiler, the optimisation level or FMA.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NOINLINE __attribute__((noinline))

float twice(float x) { return x * 2.0f; }
float square(float x) { return x * x; }
float negate(float x) { return -x; }
float plus_one(float x) { return x + 1.0f; }

#ifdef ORACLE_FN
#define CALL(f, x) ((void)(f), ORACLE_FN(x))
#else
#define CALL(f, x) (f(x))
#endif

/* The hot indirect call site.  noinline keeps apply() a function of its own
 * (entered once per outer iteration) instead of being merged into main. */
NOINLINE float apply(float (*f)(float), const float *in, float *out, int n) {
    float sum = 0.0f;
    for (int i = 0; i < n; i++) {
        out[i] = CALL(f, in[i]);
        sum += out[i];
    }
    return sum;
}

static const struct {
    const char *name;
    float (*fn)(float);
} table[] = {
    {"twice", twice}, {"square", square}, {"negate", negate}, {"plus_one", plus_one},
};

#define STR_(x) #x
#define STR(x) STR_(x)

int main(int argc, char **argv) {
    const char *name = argc > 1 ? argv[1] : "twice";
    long iters = argc > 2 ? atol(argv[2]) : 60000;
    int n = argc > 3 ? atoi(argv[3]) : 1000;
    if (iters < 1 || n < 1) {
        fprintf(stderr, "usage: kernel [twice|square|negate|plus_one [ITERS [N]]]\n");
        return 2;
    }

    float (*f)(float) = NULL;
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (strcmp(name, table[i].name) == 0) f = table[i].fn;
    if (!f) {
        fprintf(stderr, "kernel: unknown function '%s'\n", name);
        return 2;
    }
#ifdef ORACLE_FN
    if (strcmp(name, STR(ORACLE_FN)) != 0) {
        fprintf(stderr, "kernel: this oracle build only runs '%s'\n", STR(ORACLE_FN));
        return 2;
    }
#endif

    /* Inputs: -2.0 .. 2.0 in steps of 0.25 (exact in float).  16 extra
     * elements so each call can start at a different offset. */
    int total = n + 16;
    float *in = malloc(sizeof(float) * (size_t)total);
    float *out = malloc(sizeof(float) * (size_t)n);
    if (!in || !out) return 1;
    for (int i = 0; i < total; i++) in[i] = (float)(i % 17 - 8) / 4.0f;

    double sum = 0.0;
    for (long it = 0; it < iters; it++) sum += apply(f, in + it % 16, out, n);

    /* Fold the bits of the last output array too, element by element. */
    uint32_t h = 2166136261u;
    for (int i = 0; i < n; i++) {
        uint32_t bits;
        memcpy(&bits, &out[i], sizeof bits);
        h = (h ^ bits) * 16777619u;
    }
    printf("kernel fn=%s iters=%ld n=%d sum=%.1f hash=%08x\n", name, iters, n, sum, (unsigned)h);
    free(in);
    free(out);
    return 0;
}
