/* Inputs the linker must refuse (agent/tests/link.rs): pick one with -DCASE_... */
#if defined(CASE_TLS)
__thread int per_thread = 3;
int get_tls(void) { return per_thread; }
#elif defined(CASE_COMMON)
int common_var;
int get_common(void) { return common_var; }
#elif defined(CASE_CTOR)
extern void announce(void);
__attribute__((constructor)) static void init(void) { announce(); }
#elif defined(CASE_UNDEFINED)
extern int no_such_function_anywhere(int);
int call_missing(int x) { return no_such_function_anywhere(x) + 1; }
#endif
