// The optimisation pipeline of F+, which the LLVM C API cannot configure enough:
// `LLVMRunPasses` with "default<O2>" ran the SLP vectoriser even with
// `LLVMPassBuilderOptionsSetSLPVectorization(opts, 0)` (measured on LLVM 19), and gives the
// passes no target machine unless the caller builds one. Here the pipeline is built with a
// target machine for the module's triple (so the cost models of the vectorisers and the
// unroller see the function's real subtarget, from its target-cpu/target-features
// attributes) and optional passes can be skipped by name.
//
// Nothing is thrown (LLVM is built without exceptions); failures come back as a message
// made with LLVMCreateMessage, freed by the caller.

#include <llvm-c/Core.h>
#include <llvm/ADT/Any.h>
#include <llvm/IR/Module.h>
#include <llvm/IR/PassInstrumentation.h>
#include <llvm/MC/TargetRegistry.h>
#include <llvm/Passes/OptimizationLevel.h>
#include <llvm/Passes/PassBuilder.h>
#include <llvm/Target/TargetMachine.h>
#include <llvm/Target/TargetOptions.h>

#include <memory>
#include <optional>
#include <string>

using namespace llvm;

// Runs LLVM's default per-module pipeline at O2 (level < 3) or O3 over `m`. With
// `skip_slp`, the SLP vectoriser is skipped. Returns 0, or 1 with `*err` set.
extern "C" int drti_optimise(LLVMModuleRef mref, unsigned level, int skip_slp, char **err) {
  Module &m = *unwrap(mref);
  std::string lookup_error;
  const Target *target = TargetRegistry::lookupTarget(m.getTargetTriple(), lookup_error);
  if (!target) {
    *err = LLVMCreateMessage(("no target for the module's triple: " + lookup_error).c_str());
    return 1;
  }
  // CPU and features of the functions come from their attributes; the machine only
  // provides the target's cost models.
  std::unique_ptr<TargetMachine> tm(target->createTargetMachine(m.getTargetTriple(), "", "", TargetOptions(), Reloc::PIC_));
  if (!tm) {
    *err = LLVMCreateMessage("could not create a target machine for the optimiser");
    return 1;
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
  return 0;
}
