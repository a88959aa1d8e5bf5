//! Builds `src/osr.cpp` (loop and dominance analysis, which the LLVM C API lacks) against
//! the LLVM that llvm-sys links, as instrument/build.rs does for its clone shim.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=src/osr.cpp");
    println!("cargo:rerun-if-changed=src/osr.h");
    // llvm-sys publishes the llvm-config it used (`links = "llvm-19"`).
    let config = std::env::var("DEP_LLVM_19_CONFIG_PATH").unwrap_or_else(|_| "llvm-config-19".into());
    let out = Command::new(&config).arg("--cxxflags").output().unwrap_or_else(|e| panic!("run {config}: {e}"));
    assert!(out.status.success(), "{config} --cxxflags failed");
    let flags = String::from_utf8(out.stdout).expect("llvm-config prints UTF-8");
    let mut build = cc::Build::new();
    build.cpp(true).file("src/osr.cpp").warnings(false);
    // clang++-19 comes with clang-19, which the build needs anyway (scripts/setup.sh).
    if std::env::var_os("CXX").is_none() && Command::new("clang++-19").arg("--version").output().is_ok_and(|o| o.status.success()) {
        build.compiler("clang++-19");
    }
    for f in flags.split_whitespace() {
        build.flag(f);
    }
    build.compile("drti_osr");
}
