/* An interpreter loop with computed goto and an indirect call: its block addresses name
 * interp()'s own blocks, so it gets no profiled twin (a clone would jump into the
 * original's code); it must run as built, with and without the agent. Also inline
 * assembly defining a named label (a twin would define it twice). */
#include <stdio.h>
int inc(int x){return x+1;}
__attribute__((noinline)) int interp(const unsigned char *code, int (*f)(int)) {
    static void *labels[] = {&&op_inc, &&op_call, &&op_end};
    int acc = 0;
    const unsigned char *pc = code;
    goto *labels[*pc++];
op_inc: acc++; goto *labels[*pc++];
op_call: acc = f(acc); goto *labels[*pc++];
op_end: return acc;
}
__attribute__((noinline)) int tagged(int (*f)(int), int x) {
    __asm__ volatile("drti_test_label_%=:\n\tnop" ::: "memory");
    __asm__ volatile(".pushsection .rodata.drti_test\n.byte 1\n.popsection" ::: "memory");
    return f(x);
}
int main(void){ unsigned char code[] = {0,1,0,1,1,2}; long t=0; for(int i=0;i<1000000;i++) t+=interp(code, inc) + tagged(inc, i & 7); printf("%ld\n", t); return 0; }
