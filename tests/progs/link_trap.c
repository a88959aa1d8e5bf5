/* Linked by agent/tests/link.rs under gdb: the trap stops in linked code, and gdb's
 * backtrace must name the linked functions (GDB JIT interface registration). */
__attribute__((noinline)) void linked_trap_here(volatile int *x) {
  if (*x) __builtin_trap();
}
__attribute__((noinline)) int linked_outer(int x) {
  volatile int v = x;
  linked_trap_here(&v);
  return v + 1;
}
