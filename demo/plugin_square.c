/* plugin_square.c - plugin for plugin_host: plugin_fn(x) = x * x.
 * Build: cc -fPIC -shared plugin_square.c -o plugin_square.so
 * The static counter must stay a single copy even when drti inlines
 * plugin_fn into the host: plugin_calls() reads the same variable. */
#include "plugin.h"

static unsigned long calls;

float plugin_fn(float x) {
    calls++;
    return x * x;
}

unsigned long plugin_calls(void) { return calls; }

const char *plugin_name(void) { return "square"; }
