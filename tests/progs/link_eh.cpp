// Linked by agent/tests/link.rs: an exception thrown in linked code, unwinding through a
// linked frame with a cleanup, caught by type in a linked catcher (needs .eh_frame
// registered with the unwinder).
#include <stdexcept>
#include <string>

struct LinkErr { int code; };

__attribute__((noinline)) void thrower(int x) {
  if (x > 100) throw LinkErr{x};
  if (x < 0) throw std::runtime_error("negative");
}

__attribute__((noinline)) int middle(int x) {
  std::string keep = "a frame with a cleanup";  // heap-allocated: its destructor must run
  thrower(x);
  return (int)keep.size();
}

extern "C" int catcher(int x) {
  try {
    return middle(x);
  } catch (const LinkErr &e) {
    return e.code;
  } catch (const std::exception &e) {
    return -1000;
  }
}
