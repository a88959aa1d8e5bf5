/* never stuck: a trivial shared object (dlopen'd by the tests' programs). */
int ns_lib_value(void) { return 42; }
