/* reliability: demo/threads.c unchanged (8 threads, one site, targets moving over time),
 * followed by a pause before exit, so that compiles still running on the agent thread
 * finish before the process exits. With it the test is about patching and re-patching
 * under 8 running threads only; exit during a compile is tested with demo/threads itself.
 * Usage: rel_threads_quiesce QUIESCE_MS [REPS [N]] */
#define main threads_demo_main
#include "../../demo/threads.c"
#undef main
#include <unistd.h>

int main(int argc, char **argv) {
    long quiesce = argc > 1 ? atol(argv[1]) : 0;
    int rc = threads_demo_main(argc - 1, argv + 1);
    fflush(stdout);
    if (quiesce > 0) usleep((useconds_t)quiesce * 1000);
    return rc;
}
