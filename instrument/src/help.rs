//! Help text of the compiler wrappers (`drti --help` is in the drti-tools crate).

/// `drti-cc --drti-help`.
pub const DRTI_CC: &str = "\
drti-cc / drti-c++ — clang-19 / clang++-19 drop-ins that decorate C and C++ for drti

Usage: drti-cc [clang options] files...      (drti-c++ for C++)

Every clang option is accepted and means what it means to clang-19. Each C/C++ compile
step is decorated: clang emits bitcode with your flags, drti embeds the clean bitcode and
adds call-site profiling and redirect entries, then clang compiles it with your code
generation flags; a source read from standard input (-x c -) is decorated too, and -v
shows clang's commands for each step. Link steps, assembly, -E, -S, -emit-llvm, -flto,
--version and anything else pass straight to clang, and clang's own warnings and errors
reach you as clang prints them. A decorated program runs normally without the agent; run it
with LD_PRELOAD=libdrti_agent.so to let drti inline hot indirect calls.

drti options (not passed to clang):
  --drti-help       this text
  --drti-version    drti's version only
  --help, --version print clang's text, then drti's (the first lines stay clang's, for
                    tools that parse them)

Environment:
  DRTI_CLANG=PATH   clang used by drti-cc (default clang-19; must be LLVM 19)
  DRTI_CLANGXX=PATH clang++ used by drti-c++ (default clang++-19; must be LLVM 19)
  DRTI_SKIP=a,b     functions (IR names) not to profile; __attribute__((annotate(\"drti_skip\")))
                    in the source does the same
  A value that is not valid UTF-8 is one warning naming the variable; the default is used.

Selection: every defined function that makes an indirect call (function pointer, C++
virtual call) gets its sites profiled and a redirect entry (an 8-byte slot checked on
entry); every defined function gets a function-table entry; the whole module's bitcode is embedded so any of its functions
can be inlined.
";
