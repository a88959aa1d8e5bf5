// The body of an OSR continuation (osr.rs): F's code moved into a function Fc whose
// parameters are the values live at the start of loop header H, entered at H.
//
// SSA repair is what the LLVM C API lacks: a live value defined in a block that the new
// entry can still reach (H is an inner loop, the outer loop recomputes the value) has two
// definitions in Fc, the parameter on entry and the original on later outer iterations.
// It is demoted to a stack slot (DemoteRegToStack, which also handles invokes and PHI
// uses) that the entry block initialises with the parameter; the O2 pipeline promotes
// the slot back to SSA form with the PHIs it needs.
//
// Every entry point catches nothing (LLVM is built without exceptions) and reports
// failures as a message made with LLVMCreateMessage, freed by the caller.

#include "osr.h"  // llvm-ir's: reachable_from

#include <llvm-c/Core.h>
#include <llvm/IR/BasicBlock.h>
#include <llvm/IR/Constants.h>
#include <llvm/IR/DerivedTypes.h>
#include <llvm/IR/Function.h>
#include <llvm/IR/Instructions.h>
#include <llvm/IR/IntrinsicInst.h>
#include <llvm/IR/Module.h>
#include <llvm/IR/Verifier.h>
#include <llvm/Support/raw_ostream.h>
#include <llvm/Transforms/Utils/BasicBlockUtils.h>
#include <llvm/Transforms/Utils/Local.h>

#include <map>
#include <string>
#include <vector>

using namespace llvm;

namespace {

char *message(const std::string &s) { return LLVMCreateMessage(s.c_str()); }

std::string describe(const Value *v) {
  std::string s;
  raw_string_ostream os(s);
  v->printAsOperand(os, false);
  return os.str();
}

}  // namespace

extern "C" {

// Moves the body of `f` into a new function `name` (external, C calling convention) of
// `f`'s module that takes `live[0..n_live]` (arguments and instructions of `f`) as
// parameters and starts at block `header`, and erases `f`. `calls[0..n_calls]`
// (instructions of `f`) are set to null for those the continuation cannot reach (they
// are deleted). Returns the continuation, or null with `*err` set (then `f` is
// unchanged, or the problem is with the request's live set and the module is left for
// the caller to dispose).
LLVMValueRef drti_osr_continuation(LLVMValueRef fv, LLVMBasicBlockRef header, const LLVMValueRef *live, size_t n_live, const char *name,
                                   LLVMValueRef *calls, size_t n_calls, char **err) {
  Function *f = unwrap<Function>(fv);
  BasicBlock *h = unwrap(header);
  LLVMContext &ctx = f->getContext();
  if (h == &f->getEntryBlock()) {
    *err = message("the header is the entry block");
    return nullptr;
  }
  std::vector<Type *> params;
  std::map<Value *, unsigned> param_of;
  for (size_t k = 0; k < n_live; k++) {
    Value *v = unwrap(live[k]);
    if (!param_of.emplace(v, k).second) {
      *err = message("a live value is named twice: " + describe(v));
      return nullptr;
    }
    params.push_back(v->getType());
  }
  FunctionType *ty = FunctionType::get(f->getReturnType(), params, false);
  Function *fc = Function::Create(ty, GlobalValue::ExternalLinkage, f->getAddressSpace(), name, f->getParent());
  // What F promises of its result holds for the rest of its activation, and so do most
  // function attributes; not what it says of memory (F's own stack objects are
  // parameters here, argument memory to Fc) or of allocation (Fc's parameters are not
  // F's). Parameter attributes do not carry over (a pointer that was `noalias` in F
  // shares its object with the live values derived from it).
  AttributeList fa = f->getAttributes();
  AttrBuilder fn(ctx, fa.getFnAttrs());
  fn.removeAttribute(Attribute::Memory);
  fn.removeAttribute(Attribute::AllocSize);
  fn.removeAttribute(Attribute::AllocKind);
  fn.removeAttribute("alloc-family");
  fc->setAttributes(AttributeList::get(ctx, AttributeSet::get(ctx, fn), fa.getRetAttrs(), {}));
  if (f->hasPersonalityFn())
    fc->setPersonalityFn(f->getPersonalityFn());
  if (DISubprogram *sp = f->getSubprogram()) {
    f->setSubprogram(nullptr);
    fc->setSubprogram(sp);
  }
  fc->splice(fc->end(), f);
  for (Argument &a : f->args()) {
    auto p = param_of.find(&a);
    a.replaceAllUsesWith(p != param_of.end() ? static_cast<Value *>(fc->getArg(p->second)) : PoisonValue::get(a.getType()));
  }
  BasicBlock *entry = BasicBlock::Create(ctx, "osr.entry", fc, &fc->front());
  BranchInst *jump = BranchInst::Create(h, entry);
  // H's PHIs take the parameters on the new edge (an unused PHI is not live: poison).
  for (PHINode &phi : h->phis()) {
    auto p = param_of.find(&phi);
    phi.addIncoming(p != param_of.end() ? static_cast<Value *>(fc->getArg(p->second)) : PoisonValue::get(phi.getType()), entry);
  }
  std::unordered_set<const BasicBlock *> reach = drti_osr::reachable_from(entry);
  for (auto &[v, k] : param_of) {
    auto *inst = dyn_cast<Instruction>(v);
    if (!inst || (isa<PHINode>(inst) && inst->getParent() == h))
      continue;
    Argument *p = fc->getArg(k);
    if (!reach.count(inst->getParent())) {
      inst->replaceAllUsesWith(p);
      continue;
    }
    AllocaInst *slot = DemoteRegToStack(*inst, false, entry->begin());
    new StoreInst(p, slot, jump->getIterator());
  }
  // A value of the dead part still used by the live part was not handed over: the
  // request's live set is wrong (deleting the blocks would silently make it poison). A
  // PHI uses its value at the end of the incoming block.
  for (BasicBlock &b : *fc) {
    if (reach.count(&b))
      continue;
    for (Instruction &i : b)
      for (Use &u : i.uses()) {
        auto *ui = dyn_cast<Instruction>(u.getUser());
        if (!ui)
          continue;
        auto *phi = dyn_cast<PHINode>(ui);
        if (reach.count(phi ? phi->getIncomingBlock(u) : ui->getParent())) {
          *err = message("live value missing from the request: " + describe(&i) + " is used after the header");
          return nullptr;
        }
      }
  }
  for (size_t k = 0; k < n_calls; k++)
    if (calls[k] && !reach.count(unwrap<Instruction>(calls[k])->getParent()))
      calls[k] = nullptr;
  EliminateUnreachableBlocks(*fc);
  f->eraseFromParent();
  // The frame that owned a live stack object is F's (the caller's): lifetime markers on
  // it here would say nothing true about this function's frame.
  std::vector<Instruction *> markers;
  for (BasicBlock &b : *fc)
    for (Instruction &i : b)
      if (auto *ii = dyn_cast<IntrinsicInst>(&i); ii && ii->isLifetimeStartOrEnd() && isa<Argument>(ii->getArgOperand(1)->stripPointerCasts()))
        markers.push_back(ii);
  for (Instruction *i : markers)
    i->eraseFromParent();
  std::string why;
  raw_string_ostream os(why);
  if (verifyFunction(*fc, &os)) {
    *err = message("the continuation does not verify: " + os.str());
    return nullptr;
  }
  return wrap(fc);
}

}  // extern "C"
