// What the LLVM C API lacks for compiling in proportion to what is compiled:
// materialising one function of a lazily loaded module, and copying a few functions of
// a module into a new module of the same context, with declarations for exactly the
// globals they refer to (bind.rs then binds those to the program's addresses).
//
// Every entry point catches nothing (LLVM is built without exceptions) and reports
// failures as a message made with LLVMCreateMessage, freed by the caller.

#include <llvm-c/Core.h>
#include <llvm/IR/Constants.h>
#include <llvm/IR/DerivedTypes.h>
#include <llvm/IR/Function.h>
#include <llvm/IR/GlobalAlias.h>
#include <llvm/IR/GlobalIFunc.h>
#include <llvm/IR/GlobalVariable.h>
#include <llvm/IR/Module.h>
#include <llvm/Support/Error.h>
#include <llvm/Transforms/Utils/Cloning.h>
#include <llvm/Transforms/Utils/ValueMapper.h>

#include <string>
#include <vector>

using namespace llvm;

namespace {

char *message(const std::string &s) { return LLVMCreateMessage(s.c_str()); }

// Local constants whose address nobody can observe: bind.rs keeps them as private
// copies (so they fold), all other globals are bound to the program's.
bool kept_as_copy(const GlobalVariable *g) {
  return g->hasLocalLinkage() && g->isConstant() && g->hasAtLeastLocalUnnamedAddr() && g->hasInitializer() && !g->isThreadLocal();
}

// The linkage of a declaration standing for `g`: a local one stays local (bind.rs
// requires an address for it), an absent weak one stays extern_weak (bind.rs makes it
// null when the program has none), anything else is a plain external declaration
// (linkonce, weak or common linkage is only valid on a definition).
GlobalValue::LinkageTypes declaration_linkage(const GlobalValue *g) {
  if (g->hasLocalLinkage() || g->hasExternalWeakLinkage())
    return g->getLinkage();
  return GlobalValue::ExternalLinkage;
}

// Creates, in the destination module, a declaration for each global the copied code
// refers to, with the source's name, linkage, calling convention and attributes, so
// that bind.rs sees what it would have seen in the whole module.
class Declarer final : public ValueMaterializer {
public:
  Declarer(Module &dst) : dst_(dst) {}

  Value *materialize(Value *v) override {
    auto *g = dyn_cast<GlobalValue>(v);
    if (!g || g->getParent() == &dst_)
      return nullptr;
    if (auto *f = dyn_cast<Function>(g))
      return declare_function(f->getFunctionType(), f, f->getCallingConv(), f->getAttributes());
    if (auto *var = dyn_cast<GlobalVariable>(g)) {
      bool copy = kept_as_copy(var);
      auto *d = new GlobalVariable(dst_, var->getValueType(), var->isConstant(), copy ? var->getLinkage() : declaration_linkage(var), nullptr,
                                   var->getName(), nullptr, var->getThreadLocalMode(), var->getAddressSpace());
      d->copyAttributesFrom(var);
      if (copy)
        initializers_.push_back({d, var});
      return d;
    }
    if (auto *a = dyn_cast<GlobalAlias>(g)) {
      // An alias is bound by its own address: a declaration of its value type.
      if (auto *fty = dyn_cast<FunctionType>(a->getValueType())) {
        auto *target = dyn_cast_or_null<Function>(a->getAliaseeObject());
        return declare_function(fty, a, target ? target->getCallingConv() : CallingConv::C, AttributeList());
      }
      auto *d = new GlobalVariable(dst_, a->getValueType(), false, declaration_linkage(a), nullptr, a->getName(), nullptr,
                                   a->getThreadLocalMode(), a->getAddressSpace());
      copy_value_flags(d, a);
      return d;
    }
    if (isa<GlobalIFunc>(g)) {
      if (error_.empty())
        error_ = "uses ifunc " + g->getName().str();
      return nullptr;
    }
    return nullptr;
  }

  // Copies the initializers of the local constants met so far (which may meet more).
  void finish(ValueToValueMapTy &vmap) {
    for (size_t i = 0; i < initializers_.size(); i++) {
      auto [d, src] = initializers_[i];
      d->setInitializer(MapValue(src->getInitializer(), vmap, RF_None, nullptr, this));
    }
  }

  const std::string &error() const { return error_; }

private:
  static void copy_value_flags(GlobalValue *d, const GlobalValue *s) {
    d->setVisibility(s->getVisibility());
    d->setUnnamedAddr(s->getUnnamedAddr());
    d->setDLLStorageClass(s->getDLLStorageClass());
    d->setDSOLocal(s->isDSOLocal());
  }

  Function *declare_function(FunctionType *fty, GlobalValue *src, CallingConv::ID cc, AttributeList attrs) {
    auto *d = Function::Create(fty, declaration_linkage(src), src->getAddressSpace(), src->getName(), &dst_);
    d->setCallingConv(cc);
    d->setAttributes(attrs);
    copy_value_flags(d, src);
    return d;
  }

  Module &dst_;
  std::vector<std::pair<GlobalVariable *, GlobalVariable *>> initializers_;
  std::string error_;
};

} // namespace

extern "C" {

// Loads the body of function `f` of a lazily loaded module (no-op if loaded).
int drti_materialize(LLVMValueRef f, char **err) {
  auto *g = unwrap<GlobalValue>(f);
  if (Error e = g->materialize()) {
    *err = message(toString(std::move(e)));
    return 1;
  }
  return 0;
}

// Loads the module-level metadata a lazily loaded module may have deferred.
int drti_materialize_metadata(LLVMModuleRef m, char **err) {
  if (Error e = unwrap(m)->materializeMetadata()) {
    *err = message(toString(std::move(e)));
    return 1;
  }
  return 0;
}

// True while function `f` of a lazily loaded module has a body not loaded yet.
int drti_is_materializable(LLVMValueRef f) { return unwrap<GlobalValue>(f)->isMaterializable() ? 1 : 0; }

// A new module in `src`'s context holding copies of the (materialised) functions `fns`
// of `src` under their own names, declarations of every global they refer to, and
// private copies of the local unnamed constants they read. Null and `*err` on failure.
LLVMModuleRef drti_extract(LLVMModuleRef src_ref, const LLVMValueRef *fns, unsigned n, char **err) {
  Module &src = *unwrap(src_ref);
  auto dst = std::make_unique<Module>(src.getModuleIdentifier(), src.getContext());
  dst->setSourceFileName(src.getSourceFileName());
  dst->setDataLayout(src.getDataLayout());
  dst->setTargetTriple(src.getTargetTriple());
  dst->setIsNewDbgInfoFormat(src.IsNewDbgInfoFormat);
  // Module flags decide code generation (PIC level, CET, frame pointers, ...). The call
  // graph profile names functions of the whole module: left out.
  if (NamedMDNode *flags = src.getModuleFlagsMetadata()) {
    NamedMDNode *out = dst->getOrInsertModuleFlagsMetadata();
    for (MDNode *op : flags->operands()) {
      auto *key = op->getNumOperands() > 1 ? dyn_cast_or_null<MDString>(op->getOperand(1)) : nullptr;
      if (key && key->getString() == "CG Profile")
        continue;
      out->addOperand(op);
    }
  }
  ValueToValueMapTy vmap;
  Declarer declarer(*dst);
  std::vector<Function *> olds;
  for (unsigned i = 0; i < n; i++) {
    auto *old = unwrap<Function>(fns[i]);
    if (old->getParent() != &src || old->isMaterializable() || old->isDeclaration()) {
      *err = message("cannot copy " + old->getName().str() + ": no body loaded");
      return nullptr;
    }
    auto *copy = Function::Create(old->getFunctionType(), old->getLinkage(), old->getAddressSpace(), old->getName(), dst.get());
    auto arg = copy->arg_begin();
    for (const Argument &a : old->args())
      vmap[&a] = &*arg++;
    vmap[old] = copy;
    olds.push_back(old);
  }
  for (Function *old : olds) {
    SmallVector<ReturnInst *, 8> returns;
    CloneFunctionInto(cast<Function>(vmap[old]), old, vmap, CloneFunctionChangeType::DifferentModule, returns, "", nullptr, nullptr, &declarer);
  }
  declarer.finish(vmap);
  if (!declarer.error().empty()) {
    *err = message(declarer.error());
    return nullptr;
  }
  return wrap(dst.release());
}

} // extern "C"
