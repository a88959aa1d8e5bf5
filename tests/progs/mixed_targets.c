/* Two sites in one function: one target cannot be inlined (it reads its varargs), the
 * other can. drti must reject the first edge and still compile the function with the other. */
#include <stdio.h>
#include <stdarg.h>
static long va3(int n, ...) { va_list ap; va_start(ap, n); long s = 0; for (int i = 0; i < n; i++) s += va_arg(ap, int); va_end(ap); return s; }
static long plain3(int n, ...) { return n * 7; }
__attribute__((noinline)) long run(long (*f)(int, ...), long (*g)(int, ...), int n) { long s = 0; for (int i = 0; i < n; i++) s += f(3, i, i, i) + g(2, i, i); return s; }
int main(void) { long (*volatile f)(int, ...) = va3; long (*volatile g)(int, ...) = plain3; long t = 0; for (int r = 0; r < 100000; r++) t += run(f, g, 100); printf("%ld\n", t); return 0; }
