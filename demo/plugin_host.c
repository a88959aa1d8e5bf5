/* plugin_host.c - calls into a dlopen()ed plugin through a function pointer.
 *
 * Demonstrates: inlining across a shared-object boundary, which no build-time
 * tool (not even LTO or PGO) can do, because the plugin is chosen at run time.
 * The host dlopen()s PLUGIN, dlsym()s plugin_fn and runs the same loop as
 * kernel.c: apply() calls plugin_fn per element, main() calls apply() many
 * times.  At the end the host prints the plugin's own call counter
 * (plugin_calls(), a static inside the plugin): it must equal ITERS * N even
 * when drti has inlined plugin_fn into apply().
 *
 * Usage: plugin_host PLUGIN.so [ITERS [N]]   (defaults 60000 and 1000)
 *   PLUGIN.so  path of plugin_twice.so or plugin_square.so (as for dlopen:
 *              use a path with a '/', e.g. ./plugin_twice.so)
 *
 * Oracle: build with -DORACLE_PLUGIN='"plugin_twice.c"' (or plugin_square.c).
 * The plugin source is then #included into the host, apply() calls plugin_fn
 * directly, and nothing is dlopen()ed.  PLUGIN.so must still be given: the
 * oracle only checks that its file name is plugin_<name>.so for the plugin it
 * was built with (exit 2 otherwise), so the output is identical to the normal
 * build's for the same arguments.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NOINLINE __attribute__((noinline))

#ifdef ORACLE_PLUGIN
#include ORACLE_PLUGIN
#define CALL(f, x) ((void)(f), plugin_fn(x))
#else
#include <dlfcn.h>
#define CALL(f, x) (f(x))
#endif

/* The hot indirect call site (same as kernel.c). */
NOINLINE float apply(float (*f)(float), const float *in, float *out, int n) {
    float sum = 0.0f;
    for (int i = 0; i < n; i++) {
        out[i] = CALL(f, in[i]);
        sum += out[i];
    }
    return sum;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: plugin_host PLUGIN.so [ITERS [N]]\n");
        return 2;
    }
    const char *path = argv[1];
    long iters = argc > 2 ? atol(argv[2]) : 60000;
    int n = argc > 3 ? atoi(argv[3]) : 1000;
    if (iters < 1 || n < 1) {
        fprintf(stderr, "usage: plugin_host PLUGIN.so [ITERS [N]]\n");
        return 2;
    }

    float (*fn)(float);
    unsigned long (*calls)(void);
    const char *(*name)(void);
#ifdef ORACLE_PLUGIN
    fn = plugin_fn;
    calls = plugin_calls;
    name = plugin_name;
    const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    char expect[64];
    snprintf(expect, sizeof expect, "plugin_%s.so", name());
    if (strcmp(base, expect) != 0) {
        fprintf(stderr, "plugin_host: this oracle build only runs %s\n", expect);
        return 2;
    }
#else
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        fprintf(stderr, "plugin_host: %s\n", dlerror());
        return 1;
    }
    /* void* to function pointer: POSIX guarantees this conversion works. */
    fn = (float (*)(float))dlsym(h, "plugin_fn");
    calls = (unsigned long (*)(void))dlsym(h, "plugin_calls");
    name = (const char *(*)(void))dlsym(h, "plugin_name");
    if (!fn || !calls || !name) {
        fprintf(stderr, "plugin_host: %s: missing plugin_fn/plugin_calls/plugin_name\n", path);
        return 1;
    }
#endif

    int total = n + 16;
    float *in = malloc(sizeof(float) * (size_t)total);
    float *out = malloc(sizeof(float) * (size_t)n);
    if (!in || !out) return 1;
    for (int i = 0; i < total; i++) in[i] = (float)(i % 17 - 8) / 4.0f;

    double sum = 0.0;
    for (long it = 0; it < iters; it++) sum += apply(fn, in + it % 16, out, n);

    uint32_t hash = 2166136261u;
    for (int i = 0; i < n; i++) {
        uint32_t bits;
        memcpy(&bits, &out[i], sizeof bits);
        hash = (hash ^ bits) * 16777619u;
    }
    printf("plugin_host plugin=%s iters=%ld n=%d sum=%.1f hash=%08x plugin_calls=%lu\n",
           name(), iters, n, sum, (unsigned)hash, calls());
    free(in);
    free(out);
#ifndef ORACLE_PLUGIN
    dlclose(h);
#endif
    return 0;
}
