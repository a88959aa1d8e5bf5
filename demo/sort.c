/* sort.c - a merge sort that compares through a function pointer (qsort-style).
 *
 * Demonstrates: inlining a comparator into a generic library routine.
 * sort_ints() is our own merge sort (insertion sort for up to 16 elements); every
 * comparison is an indirect call cmp(&x, &y).  The comparison sites are in
 * msort(), which is entered thousands of times per sort, and main() sorts many
 * arrays, so drti can swap in a version of msort() with the comparator inlined.
 *
 * Usage: sort [CMP [ARRAYS [N]]]
 *   CMP    asc | desc        comparator cmp_asc / cmp_desc    (default asc)
 *   ARRAYS arrays sorted     (default 4000)
 *   N      ints per array    (default 2000)
 * Each array is filled from a fixed-seed xorshift generator, sorted, checked
 * and hashed in order, so the output depends on every comparison.
 *
 * Oracle: build with -DORACLE_CMP=cmp_asc (or cmp_desc): the sort calls that
 * comparator directly.  It accepts only the matching CMP (exit 2 otherwise).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NOINLINE __attribute__((noinline))

typedef int (*cmp_fn)(const void *, const void *);

int cmp_asc(const void *a, const void *b) {
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

int cmp_desc(const void *a, const void *b) {
    int x = *(const int *)a, y = *(const int *)b;
    return (x < y) - (x > y);
}

#ifdef ORACLE_CMP
#define CMP(cmp, a, b) ((void)(cmp), ORACLE_CMP(a, b))
#else
#define CMP(cmp, a, b) ((cmp)(a, b))
#endif

/* Sort a[0..n) using tmp[0..n) as scratch.  Holds the hot indirect call sites. */
NOINLINE static void msort(int *a, int *tmp, size_t n, cmp_fn cmp) {
    if (n <= 16) {
        for (size_t i = 1; i < n; i++) {
            int x = a[i];
            size_t j = i;
            while (j > 0 && CMP(cmp, &a[j - 1], &x) > 0) {
                a[j] = a[j - 1];
                j--;
            }
            a[j] = x;
        }
        return;
    }
    size_t mid = n / 2;
    msort(a, tmp, mid, cmp);
    msort(a + mid, tmp, n - mid, cmp);
    size_t i = 0, j = mid, k = 0;
    while (i < mid && j < n) tmp[k++] = CMP(cmp, &a[j], &a[i]) < 0 ? a[j++] : a[i++];
    while (i < mid) tmp[k++] = a[i++];
    while (j < n) tmp[k++] = a[j++];
    memcpy(a, tmp, n * sizeof *a);
}

void sort_ints(int *a, size_t n, int (*cmp)(const void *, const void *)) {
    int *tmp = malloc(n * sizeof *tmp);
    if (!tmp) abort();
    msort(a, tmp, n, cmp);
    free(tmp);
}

static uint32_t rng_state = 88172645u;
static uint32_t xorshift32(void) {
    uint32_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return rng_state = x;
}

#define STR_(x) #x
#define STR(x) STR_(x)

int main(int argc, char **argv) {
    const char *which = argc > 1 ? argv[1] : "asc";
    long arrays = argc > 2 ? atol(argv[2]) : 4000;
    long n = argc > 3 ? atol(argv[3]) : 2000;
    if (arrays < 1 || n < 1) {
        fprintf(stderr, "usage: sort [asc|desc [ARRAYS [N]]]\n");
        return 2;
    }
    cmp_fn cmp;
    if (strcmp(which, "asc") == 0)
        cmp = cmp_asc;
    else if (strcmp(which, "desc") == 0)
        cmp = cmp_desc;
    else {
        fprintf(stderr, "sort: unknown comparator '%s'\n", which);
        return 2;
    }
#ifdef ORACLE_CMP
    if (cmp != ORACLE_CMP) {
        fprintf(stderr, "sort: this oracle build only runs %s\n", STR(ORACLE_CMP));
        return 2;
    }
#endif

    int *a = malloc((size_t)n * sizeof *a);
    if (!a) return 1;
    uint64_t hash = 1469598103934665603ull;
    long unsorted = 0;
    for (long r = 0; r < arrays; r++) {
        for (long i = 0; i < n; i++) a[i] = (int)(xorshift32() % 100000u) - 50000;
        sort_ints(a, (size_t)n, cmp);
        for (long i = 0; i < n; i++) {
            if (i > 0 && cmp(&a[i - 1], &a[i]) > 0) unsorted++;
            hash = (hash ^ (uint32_t)a[i]) * 1099511628211ull;
        }
    }
    printf("sort cmp=%s arrays=%ld n=%ld unsorted=%ld hash=%016llx\n", which, arrays, n, unsorted,
           (unsigned long long)hash);
    free(a);
    return 0;
}
