// Inline assembly in F and in an inlined target, and file-scope assembly in the module
// (issue 10 item 3): the JIT must compile or reject them, never end the process.
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

// File-scope assembly: a symbol the program reads through a declaration.
__asm__(".section .rodata\n"
        ".globl drti_asm_magic\n"
        ".p2align 2\n"
        "drti_asm_magic: .long 12345\n"
        ".text\n");
extern const int drti_asm_magic;

typedef long (*op)(long, long);

// Targets computing with inline assembly.
long asm_add(long a, long b) {
  __asm__("addq %1, %0" : "+r"(a) : "r"(b));
  return a;
}
long asm_xor(long a, long b) {
  __asm__ volatile("pause");
  // A global's address in a register: the copy computes the same address.
  __asm__ volatile("" : : "r"(&drti_asm_magic) : "memory");
  return a ^ b;
}
long plain_sub(long a, long b) { return a - b; }
// Records something in another section: a copy would record it where nobody looks, so
// the JIT must refuse to inline it.
long asm_section(long a, long b) {
  __asm__ volatile(".pushsection .data.drti_asm_test,\"aw\"\n.quad 1\n.popsection");
  return a + 2 * b;
}

// F: a spin-wait hint in the loop and an assembly rotate around the indirect call.
__attribute__((noinline)) long run(op f, long n) {
  long acc = drti_asm_magic;
  for (long i = 0; i < n; i++) {
    __asm__ volatile("pause");
    acc = f(acc, i);
    __asm__("rolq $3, %0" : "+r"(acc));
  }
  return acc;
}

int main(int argc, char **argv) {
  long n = argc > 1 ? atol(argv[1]) : 20000;
  op ops[4] = {asm_add, asm_xor, plain_sub, asm_section};
  long total = 0;
  for (int round = 0; round < 30; round++) {
    if (round == 3 || round == 10 || round == 20) usleep(200000);  // time for the agent to compile
    total += run(ops[round % 4], n);
    printf("round %d: %ld\n", round, total);
  }
  return 0;
}
