/* never stuck: a plugin whose constructor calls dlopen (while the loader holds its lock),
 * and whose destructor calls dlclose. Build with -DINNER=\"path/to/ns_lib.so\". */
#include <dlfcn.h>
#include <stdio.h>
static void *inner;
__attribute__((constructor)) static void open_inner(void) {
    inner = dlopen(INNER, RTLD_NOW | RTLD_LOCAL);
    if (!inner) fprintf(stderr, "ns_ctor_plugin: %s\n", dlerror());
}
__attribute__((destructor)) static void close_inner(void) {
    if (inner) dlclose(inner);
}
int ns_ctor_value(void) { return inner ? 1 : 0; }
