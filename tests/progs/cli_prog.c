/* drti-cc command-line cases: an indirect call (so main is decorated) and output that
 * depends on a predefined macro (so dropping -undef from the compile shows). No headers:
 * -undef removes the macros glibc's headers rely on. */
int puts(const char *);

static void hello(void) { puts("hello"); }
void (*volatile fp)(void) = hello;

int main(void) {
#ifdef __linux__
    puts("__linux__ defined");
#else
    puts("__linux__ not defined");
#endif
    fp();
    return 0;
}
