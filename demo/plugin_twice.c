/* plugin_twice.c - plugin for plugin_host: plugin_fn(x) = 2x.
 * Build: cc -fPIC -shared plugin_twice.c -o plugin_twice.so
 * The static counter must stay a single copy even when drti inlines
 * plugin_fn into the host: plugin_calls() reads the same variable. */
#include "plugin.h"

static unsigned long calls;

float plugin_fn(float x) {
    calls++;
    return x * 2.0f;
}

unsigned long plugin_calls(void) { return calls; }

const char *plugin_name(void) { return "twice"; }
