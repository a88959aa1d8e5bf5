/* plugin.h - the interface between plugin_host.c and its plugins. */
#ifndef DRTI_DEMO_PLUGIN_H
#define DRTI_DEMO_PLUGIN_H

/* The function the host calls per element (looked up with dlsym). */
float plugin_fn(float x);
/* How many times plugin_fn has been called (a static inside the plugin). */
unsigned long plugin_calls(void);
/* A short name, "twice" or "square". */
const char *plugin_name(void);

#endif
