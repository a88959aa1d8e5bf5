//! What a cached compile is stored under, and how it is stored: pure code.
//!
//! The key is everything that determines the code: the portable request (module hashes,
//! function, sites, targets, slots, sampled sites, probes), the compiler's identity (drti
//! and its statically linked LLVM), and the CPU (the compiler targets the host's CPU and
//! features). Addresses are not in it: the object is portable, so an entry is valid in
//! every process running the same modules, across runs and ASLR.
//!
//! The payload is the compiler's answer as a protocol message (`Compiled`): an object, or
//! a rejection (deterministic: a setjmp stays a setjmp). Failures are never stored.

use bitcode_embed::protocol::{CompileRequest, CompileResult, Message, Outcome};
use drti_cache::{Key, KeyBuilder};

/// The key of `req` compiled by `compiler` (see `protocol::compiler_identity`) for `cpu`.
pub fn key(req: &CompileRequest, compiler: &str, cpu: &str) -> Key {
    let mut plan = req.clone();
    plan.id = 0;
    let mut bytes = Vec::new();
    Message::Compile(plan).write_to(&mut bytes).expect("writing to memory");
    let mut k = KeyBuilder::new("drti F+ x86-64 ELF object");
    k.field("request", &bytes).field("compiler", compiler.as_bytes()).field("cpu", cpu.as_bytes());
    k.finish()
}

/// Whether `res` may be cached.
pub fn cacheable(res: &CompileResult) -> bool {
    matches!(res.outcome, Outcome::Object { .. } | Outcome::Rejected { .. })
}

/// The payload stored for `res`.
pub fn encode(res: &CompileResult) -> Vec<u8> {
    let mut bytes = Vec::new();
    Message::Compiled(res.clone()).write_to(&mut bytes).expect("writing to memory");
    bytes
}

/// The answer stored in `payload`; Err for anything but one cacheable answer.
pub fn decode(payload: &[u8]) -> Result<CompileResult, String> {
    let mut r = payload;
    match Message::read_from(&mut r) {
        Ok(Some(Message::Compiled(res))) if r.is_empty() && cacheable(&res) => Ok(res),
        Ok(_) => Err("not one cached compile".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// This CPU, as far as code generated for the host depends on it: vendor, family, model
/// and the feature words of CPUID leaves 1 and 7 (SSE..AVX-512, BMI, ...).
pub fn cpu() -> String {
    use std::arch::x86_64::{__cpuid, __cpuid_count};
    let v = __cpuid(0);
    let vendor: Vec<u8> = [v.ebx, v.edx, v.ecx].iter().flat_map(|w| w.to_le_bytes()).collect();
    let l1 = __cpuid(1);
    let l7 = if v.eax >= 7 { __cpuid_count(7, 0) } else { __cpuid(0x8000_0000) };
    let ext = __cpuid(0x8000_0001);
    format!(
        "{} {:08x} {:08x}:{:08x} {:08x}:{:08x}:{:08x} {:08x}:{:08x}",
        String::from_utf8_lossy(&vendor),
        l1.eax,
        l1.ecx,
        l1.edx,
        l7.ebx,
        l7.ecx,
        l7.edx,
        ext.ecx,
        ext.edx
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcode_embed::protocol::*;

    fn req() -> CompileRequest {
        let f = |n: &str| FnRef { module: [7; 32], name: n.into() };
        CompileRequest {
            id: 3,
            opt_level: 2,
            modules: vec![ModuleUse { hash: [7; 32], null_globals: vec![] }],
            function: f("run"),
            sites: vec![SiteReq { owner: None, ordinal: 0, targets: vec![TargetReq { function: f("op"), slot: false }], sample_site: None }],
            probes: vec![],
            countdown_static: true,
            inject_failure: false,
            osr: None,
        }
    }

    #[test]
    fn the_key_follows_the_plan_compiler_and_cpu_but_not_the_request_id() {
        let k = key(&req(), "drti 1", "cpu");
        assert_eq!(k, key(&CompileRequest { id: 99, ..req() }, "drti 1", "cpu"));
        assert_ne!(k, key(&req(), "drti 2", "cpu"));
        assert_ne!(k, key(&req(), "drti 1", "other cpu"));
        let mut other = req();
        other.sites[0].targets[0].slot = true;
        assert_ne!(k, key(&other, "drti 1", "cpu"));
        let mut other = req();
        other.modules[0].null_globals.push(1);
        assert_ne!(k, key(&other, "drti 1", "cpu"));
    }

    #[test]
    fn objects_and_rejections_round_trip_failures_are_not_cached() {
        let obj = CompileResult { id: 0, phases: Phases { cpu_ms: 4.0, ..Phases::default() }, outcome: Outcome::Object { bytes: b"\x7fELF..".to_vec(), entry: "f+".into() }, messages: vec![] };
        assert_eq!(decode(&encode(&obj)).unwrap(), obj);
        let rej = CompileResult { id: 0, phases: Phases::default(), outcome: Outcome::Rejected { target: -1, reason: "setjmp".into() }, messages: vec![] };
        assert_eq!(decode(&encode(&rej)).unwrap(), rej);
        let failed = CompileResult { id: 0, phases: Phases::default(), outcome: Outcome::Failed { reason: "LLVM".into() }, messages: vec![] };
        assert!(!cacheable(&failed));
        assert!(decode(&encode(&failed)).is_err());
        let mut bytes = encode(&obj);
        bytes.push(0);
        assert!(decode(&bytes).is_err(), "trailing bytes");
        assert!(decode(&bytes[..10]).is_err(), "truncated");
    }

    #[test]
    fn the_cpu_is_described_and_stable() {
        let c = cpu();
        assert_eq!(c, cpu());
        assert!(c.len() > 40, "{c}");
    }
}
