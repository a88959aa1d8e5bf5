// Waits (at most 5 s) until a thread named "drti-agent" runs at this thread's nice value
// plus argv[1], and says so; a decorated indirect call makes it a drti program.
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef int (*op_fn)(int);
static int twice(int x) { return 2 * x; }
op_fn volatile op = twice;
__attribute__((noinline)) int apply(int x) { return op(x); }

// Field 19 (nice) of /proc/self/task/<tid>/stat; the name may hold spaces, so parse after ')'.
static int nice_of(const char *tid) {
  char path[64], buf[1024];
  snprintf(path, sizeof path, "/proc/self/task/%s/stat", tid);
  FILE *f = fopen(path, "r");
  if (!f) return 1000;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = 0;
  char *p = strrchr(buf, ')');
  if (!p) return 1000;
  int field = 2, nice = 1000;
  for (char *t = strtok(p + 1, " "); t; t = strtok(NULL, " ")) {
    if (++field == 19) { nice = atoi(t); break; }
  }
  return nice;
}

static int agent_nice(void) {
  DIR *d = opendir("/proc/self/task");
  struct dirent *e;
  int found = 1000;
  while (d && (e = readdir(d))) {
    char path[300], comm[64] = {0};
    snprintf(path, sizeof path, "/proc/self/task/%s/comm", e->d_name);
    FILE *f = fopen(path, "r");
    if (!f) continue;
    if (fgets(comm, sizeof comm, f) && strncmp(comm, "drti-agent", 10) == 0) found = nice_of(e->d_name);
    fclose(f);
  }
  if (d) closedir(d);
  return found;
}

int main(int argc, char **argv) {
  int delta = argc > 1 ? atoi(argv[1]) : 0;
  char self[32];
  snprintf(self, sizeof self, "%d", (int)getpid());
  int mine = nice_of(self), seen = 1000, sum = 0;
  for (int i = 0; i < 500; i++) {
    sum += apply(i);
    seen = agent_nice();
    if (seen == mine + delta) break;
    struct timespec ts = {0, 10 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
  if (seen == 1000) printf("no agent thread (sum %d)\n", sum > 0);
  else printf("agent thread nice %+d over the program's\n", seen - mine);
  return 0;
}
