// What llvm-ir's OSR analysis (osr.cpp) shares with other C++ of drti (the JIT's
// continuation builder, agent/jit/src/osr.cpp): both crates link this library.
#pragma once

#include <llvm/IR/BasicBlock.h>

#include <unordered_set>

namespace drti_osr {

// The blocks reachable from `from`, `from` included.
std::unordered_set<const llvm::BasicBlock *> reachable_from(llvm::BasicBlock *from);

}  // namespace drti_osr
