// What the LLVM C API lacks for the decoration pass: splitting a block (for the twin's OSR
// checks) and cloning a function inside its own
// module (llvm::CloneFunction), which also gives the clone a DISubprogram of its own (a
// subprogram may belong to one function only, or the verifier refuses the module).

#include <llvm-c/Core.h>
#include <llvm/IR/Function.h>
#include <llvm/IR/Module.h>
#include <llvm/Transforms/Utils/Cloning.h>
#include <llvm/Transforms/Utils/ValueMapper.h>

using namespace llvm;

// A copy of `f` in `f`'s module, named `name`, internal (only the module's address
// table refers to it), in no comdat (so a discarded comdat group of `f` never takes
// away code the table refers to). Null if `f` is not a function definition.
extern "C" LLVMValueRef drti_clone_function(LLVMValueRef f, const char *name) {
  auto *fn = dyn_cast_or_null<Function>(unwrap(f));
  if (!fn || fn->isDeclaration())
    return nullptr;
  ValueToValueMapTy vmap;
  Function *copy = CloneFunction(fn, vmap);
  copy->setName(name);
  copy->setLinkage(GlobalValue::InternalLinkage);
  copy->setVisibility(GlobalValue::DefaultVisibility);
  copy->setDLLStorageClass(GlobalValue::DefaultStorageClass);
  copy->setComdat(nullptr);
  copy->setUnnamedAddr(GlobalValue::UnnamedAddr::None);
  return wrap(copy);
}

// Splits the block of `inst` before it (llvm::BasicBlock::splitBasicBlock): `inst` and
// everything after it move to a new block named `name`, the old block ends in a branch to
// it, and the PHIs of the successors name the new block. Returns the new block.
extern "C" LLVMBasicBlockRef drti_split_block_before(LLVMValueRef inst, const char *name) {
  auto *i = dyn_cast_or_null<Instruction>(unwrap(inst));
  if (!i || !i->getParent())
    return nullptr;
  return wrap(i->getParent()->splitBasicBlock(i, name));
}
