// The optimisation pipeline of F+, which the LLVM C API cannot configure enough:
// `LLVMRunPasses` with "default<O2>" ran the SLP vectoriser even with
// `LLVMPassBuilderOptionsSetSLPVectorization(opts, 0)` (measured on LLVM 19), and gives the
// passes no target machine unless the caller builds one. Here the pipeline is built with a
// target machine for the module's triple (so the cost models of the vectorisers and the
// unroller see the function's real subtarget, from its target-cpu/target-features
// attributes) and optional passes can be skipped by name.
// Nothing is thrown (LLVM is built without exceptions); LLVM's own errors go through the
// diagnostic handler of the module's context, as for every other pass.

#include <llvm-c/Core.h>
#include <llvm/ADT/Any.h>
#include <llvm/IR/Module.h>
#include <llvm/IR/PassInstrumentation.h>
#include <llvm/MC/TargetRegistry.h>
#include <llvm/Passes/OptimizationLevel.h>
#include <llvm/Passes/PassBuilder.h>
#include <llvm/Target/TargetMachine.h>
#include <llvm/Target/TargetOptions.h>
#include <llvm/TargetParser/Host.h>

#include <memory>
#include <optional>
#include <string>

using namespace llvm;

// Runs LLVM's default per-module pipeline at O2 (level < 3) or O3 over `m`. With
// `skip_slp`, the SLP vectoriser is skipped.
extern "C" void drti_optimise(LLVMModuleRef mref, unsigned level, int skip_slp) {
  Module &m = *unwrap(mref);
  // The module's triple (the host's when it has none); without a registered target the
  // pipeline runs with LLVM's generic cost models, as LLVMRunPasses does.
  std::string triple = m.getTargetTriple().empty() ? sys::getDefaultTargetTriple() : m.getTargetTriple();
  std::string lookup_error;
  std::unique_ptr<TargetMachine> tm;
  if (const Target *target = TargetRegistry::lookupTarget(triple, lookup_error)) {
    // CPU and features of the functions come from their attributes; the machine only
    // provides the target's cost models.
    tm.reset(target->createTargetMachine(triple, "", "", TargetOptions(), Reloc::PIC_));
  }

  PassInstrumentationCallbacks callbacks;
  if (skip_slp) {
    callbacks.registerShouldRunOptionalPassCallback([](StringRef pass, Any) { return pass != "SLPVectorizerPass"; });
  }
  PipelineTuningOptions tuning;
  tuning.SLPVectorization = !skip_slp;
  PassBuilder builder(tm.get(), tuning, std::nullopt, &callbacks);
  LoopAnalysisManager lam;
  FunctionAnalysisManager fam;
  CGSCCAnalysisManager cgam;
  ModuleAnalysisManager mam;
  builder.registerModuleAnalyses(mam);
  builder.registerCGSCCAnalyses(cgam);
  builder.registerFunctionAnalyses(fam);
  builder.registerLoopAnalyses(lam);
  builder.crossRegisterProxies(lam, fam, cgam, mam);
  ModulePassManager pipeline = builder.buildPerModuleDefaultPipeline(level >= 3 ? OptimizationLevel::O3 : OptimizationLevel::O2);
  pipeline.run(m, mam);
}
