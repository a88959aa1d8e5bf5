/* never stuck: one thread dlopens/dlcloses a plugin whose constructor calls dlopen while
 * another thread dlopens/dlcloses a plain library, ROUNDS times each. No decorated code:
 * the agent must simply never deadlock with the loader's lock.
 * Usage: ns_deadlock CTOR_PLUGIN.so LIB.so ROUNDS */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

static const char *plugin, *lib;
static long rounds;

static void *closer(void *arg) {
    (void)arg;
    long ok = 0;
    for (long i = 0; i < rounds; i++) {
        void *h = dlopen(lib, RTLD_NOW | RTLD_LOCAL);
        if (h) ok += dlclose(h) == 0;
    }
    return (void *)ok;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: ns_deadlock CTOR_PLUGIN.so LIB.so ROUNDS\n");
        return 2;
    }
    plugin = argv[1];
    lib = argv[2];
    rounds = atol(argv[3]);
    pthread_t t;
    pthread_create(&t, NULL, closer, NULL);
    long opened = 0;
    for (long i = 0; i < rounds; i++) {
        void *h = dlopen(plugin, RTLD_NOW | RTLD_LOCAL);
        if (!h) continue;
        int (*v)(void) = (int (*)(void))dlsym(h, "ns_ctor_value");
        opened += v && v();
        dlclose(h);
    }
    void *closed;
    pthread_join(t, &closed);
    printf("opened=%ld closed=%ld\n", opened, (long)closed);
    return 0;
}
