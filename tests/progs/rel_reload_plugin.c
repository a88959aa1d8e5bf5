/* reliability: plugin for rel_reload_host, built twice from this source with a different
 * PLUGIN_MUL (reload_a.so: 3, reload_b.so: 5). Both builds have the same code size and
 * layout, so the second one, opened after the first is closed, usually lands at the same
 * address: an inlined copy of A's plugin_fn whose guard compared only the address would
 * then wrongly run for B. Build: drti-cc -O2 -fPIC -shared -DPLUGIN_MUL=3 ... */
#ifndef PLUGIN_MUL
#error define PLUGIN_MUL
#endif

static unsigned long calls;

long plugin_fn(long x) {
    calls++;
    return x * PLUGIN_MUL + 1;
}

unsigned long plugin_calls(void) { return calls; }

long plugin_mul(void) { return PLUGIN_MUL; }
