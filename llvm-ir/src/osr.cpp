// The OSR analysis of osr.rs: loop headers and live sets need LoopInfo and the
// DominatorTree, which the LLVM C API lacks. Everything here only reads the function.

#include "osr.h"

#include <llvm-c/Core.h>
#include <llvm/Analysis/LoopInfo.h>
#include <llvm/IR/Dominators.h>
#include <llvm/IR/Function.h>
#include <llvm/IR/Instructions.h>
#include <llvm/IR/IntrinsicInst.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <tuple>
#include <unordered_map>
#include <unordered_set>
#include <vector>

using namespace llvm;

std::unordered_set<const BasicBlock *> drti_osr::reachable_from(BasicBlock *from) {
  std::unordered_set<const BasicBlock *> seen{from};
  std::vector<BasicBlock *> work{from};
  while (!work.empty()) {
    BasicBlock *b = work.back();
    work.pop_back();
    for (BasicBlock *s : successors(b))
      if (seen.insert(s).second)
        work.push_back(s);
  }
  return seen;
}

namespace {

// Encoding of a live ref in the flat result (same as bitcode_embed::format).
constexpr uint32_t ARG_BIT = 0x80000000u;
constexpr size_t MAX_POINTS = 8;

char *copy_string(const std::string &s) {
  char *p = static_cast<char *>(std::malloc(s.size() + 1));
  if (p) {
    std::memcpy(p, s.c_str(), s.size() + 1);
  }
  return p;
}

// Why no activation of `f` can move into a continuation at all, or "".
std::string function_blocker(Function &f) {
  if (f.isVarArg())
    return "variadic function (va_start)";
  for (BasicBlock &bb : f) {
    for (Instruction &i : bb) {
      if (auto *ai = dyn_cast<AllocaInst>(&i)) {
        if (ai->isUsedWithInAlloca())
          return "inalloca alloca";
        if (!ai->isStaticAlloca())
          return "dynamic alloca";
      }
      auto *cb = dyn_cast<CallBase>(&i);
      if (!cb)
        continue;
      if (cb->hasFnAttr(Attribute::ReturnsTwice))
        return "returns_twice call (setjmp)";
      if (auto *ci = dyn_cast<CallInst>(cb); ci && ci->isMustTailCall())
        return "musttail call";
      switch (cb->getIntrinsicID()) {
      case Intrinsic::vastart:
        return "va_start";
      case Intrinsic::stacksave:
        return "llvm.stacksave";
      case Intrinsic::stackrestore:
        return "llvm.stackrestore";
      case Intrinsic::localescape:
        return "llvm.localescape";
      case Intrinsic::frameaddress:
        return "llvm.frameaddress";
      case Intrinsic::returnaddress:
        return "llvm.returnaddress";
      default:
        break;
      }
    }
  }
  return "";
}

// Why live value `v` cannot be handed to a continuation as a parameter, or "".
std::string live_blocker(Value *v) {
  if (v->getType()->isTokenTy())
    return "a token value";
  if (auto *a = dyn_cast<Argument>(v)) {
    if (a->hasSwiftErrorAttr())
      return "a swifterror parameter";
    if (a->hasInAllocaAttr())
      return "an inalloca parameter";
    if (a->hasPreallocatedAttr())
      return "a preallocated parameter";
  }
  if (auto *ai = dyn_cast<AllocaInst>(v)) {
    if (ai->isSwiftError())
      return "a swifterror alloca";
    if (ai->isUsedWithInAlloca())
      return "an inalloca alloca";
  }
  return "";
}

struct Candidate {
  unsigned depth;
  uint32_t header;
  Loop *loop;
  std::vector<uint32_t> sites;
};

// Whether `v` has a use in a block of `live_in` (a PHI's use counts in its incoming block).
bool used_in(Value *v, const std::unordered_set<const BasicBlock *> &live_in) {
  for (Use &u : v->uses()) {
    auto *user = dyn_cast<Instruction>(u.getUser());
    if (!user)
      continue;
    const BasicBlock *at = user->getParent();
    if (auto *phi = dyn_cast<PHINode>(user))
      at = phi->getIncomingBlock(u);
    if (live_in.count(at))
      return true;
  }
  return false;
}

} // namespace

// The OSR points of `f` (see osr.rs for the rule); `calls[k]` is `f`'s indirect call of
// ordinal k. On success returns a malloc'd array of `*len` words:
// n_points, then per point: header, n_live, live refs..., n_sites, site ordinals...
// When `f` can have no point, returns null and stores the reason (malloc'd) in `*why`.
// Null with `*why` null: not a function definition or out of memory.
extern "C" uint32_t *drti_osr_analyze(LLVMValueRef fv, const LLVMValueRef *calls, size_t n_calls, size_t *len,
                                      char **why) {
  *len = 0;
  *why = nullptr;
  auto *f = dyn_cast_or_null<Function>(unwrap(fv));
  if (!f || f->isDeclaration())
    return nullptr;
  std::string blocked = function_blocker(*f);
  if (!blocked.empty()) {
    *why = copy_string(blocked);
    return nullptr;
  }

  std::unordered_map<const BasicBlock *, uint32_t> block_index;
  std::unordered_map<const Instruction *, uint32_t> inst_index;
  std::vector<Instruction *> insts;
  for (BasicBlock &bb : *f) {
    block_index.emplace(&bb, block_index.size());
    for (Instruction &i : bb) {
      inst_index.emplace(&i, insts.size());
      insts.push_back(&i);
    }
  }

  DominatorTree dt(*f);
  LoopInfo li(dt);
  std::vector<Candidate> cands;
  for (Loop *l : li.getLoopsInPreorder()) {
    // A continuation enters H by a plain branch, and a check goes after H's PHIs: neither
    // works for an exception-handling pad.
    if (l->getHeader()->isEHPad())
      continue;
    Candidate c{l->getLoopDepth(), block_index.at(l->getHeader()), l, {}};
    for (size_t k = 0; k < n_calls; ++k) {
      auto *call = dyn_cast_or_null<Instruction>(unwrap(calls[k]));
      if (call && call->getFunction() == f && l->contains(call->getParent()))
        c.sites.push_back(static_cast<uint32_t>(k));
    }
    if (!c.sites.empty())
      cands.push_back(std::move(c));
  }
  // Outermost first, then in block order: the same on every run and on both sides.
  std::sort(cands.begin(), cands.end(),
            [](const Candidate &a, const Candidate &b) { return std::tie(a.depth, a.header) < std::tie(b.depth, b.header); });
  if (cands.size() > MAX_POINTS)
    cands.resize(MAX_POINTS);

  std::vector<uint32_t> out{static_cast<uint32_t>(cands.size())};
  for (const Candidate &c : cands) {
    BasicBlock *h = c.loop->getHeader();
    auto live_in = drti_osr::reachable_from(h);
    std::vector<uint32_t> live;
    std::string bad;
    auto consider = [&](Value *v, uint32_t code) {
      if (v->getType()->isVoidTy())
        return;
      std::string b = live_blocker(v);
      if (!b.empty() && bad.empty())
        bad = b + " (" + (v->hasName() ? "%" + v->getName().str() : std::string("unnamed")) + ") is live at a loop header";
      live.push_back(code);
    };
    for (Argument &a : f->args())
      if (used_in(&a, live_in))
        consider(&a, a.getArgNo() | ARG_BIT);
    for (Instruction *i : insts) {
      BasicBlock *b = i->getParent();
      if (b == h ? isa<PHINode>(i) : dt.properlyDominates(b, h) && used_in(i, live_in))
        consider(i, inst_index.at(i));
    }
    if (!bad.empty()) {
      *why = copy_string(bad);
      return nullptr;
    }
    out.push_back(c.header);
    out.push_back(static_cast<uint32_t>(live.size()));
    out.insert(out.end(), live.begin(), live.end());
    out.push_back(static_cast<uint32_t>(c.sites.size()));
    out.insert(out.end(), c.sites.begin(), c.sites.end());
  }
  auto *buf = static_cast<uint32_t *>(std::malloc(out.size() * sizeof(uint32_t)));
  if (!buf)
    return nullptr;
  std::memcpy(buf, out.data(), out.size() * sizeof(uint32_t));
  *len = out.size();
  return buf;
}

// Frees what drti_osr_analyze returned (array or reason).
extern "C" void drti_osr_free(void *p) { std::free(p); }
