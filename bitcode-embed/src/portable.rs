//! A JIT request made portable (issue 12): the agent's `JitRequest` (addresses of this
//! process) becomes a protocol `CompileRequest` (module hashes and IR names), which is what
//! a compiler process compiles and what the code cache is keyed by. Its inverse is the
//! compiler's: stand-in addresses for the same structure, so the object's symbols
//! (`symbols`) name places in this request.

use crate::jit_abi::{array, text, JitOwner, JitRequest, NO_OSR};
use crate::protocol::{CompileRequest, FnRef, Hash, ModuleUse, OsrReq, ProbeReq, SiteReq, TargetReq};

/// The portable form of `req`, whose modules have the embedded-bitcode hashes `hashes`
/// (in the request's module order). Null globals (weak symbols nothing defines) are listed
/// per module, so the compiler keeps them null.
///
/// # Safety
/// Every pointer of `req` must be valid for the counts it gives.
pub unsafe fn portable_request(req: &JitRequest, hashes: &[Hash], id: u64) -> Result<CompileRequest, String> {
    let hash = |k: u32| hashes.get(k as usize).copied().ok_or_else(|| format!("module {k} of the request has no hash"));
    // SAFETY (all blocks below): per the function contract.
    let modules = unsafe { array(req.modules, req.n_modules) };
    if modules.len() != hashes.len() {
        return Err(format!("{} modules, {} hashes", modules.len(), hashes.len()));
    }
    let fn_ref = |k: u32, name: *const u8, len: usize| -> Result<FnRef, String> { Ok(FnRef { module: hash(k)?, name: unsafe { text(name, len) } }) };
    let owner = |o: &JitOwner| -> Result<Option<FnRef>, String> { if o.name_len == 0 { Ok(None) } else { fn_ref(o.module, o.name, o.name_len).map(Some) } };
    let modules = modules
        .iter()
        .zip(hashes)
        .map(|(m, h)| ModuleUse { hash: *h, null_globals: unsafe { array(m.symbols, m.n_symbols) }.iter().enumerate().filter(|(_, s)| s.address == 0).map(|(i, _)| i as u32).collect() })
        .collect();
    let mut sites = Vec::new();
    for s in unsafe { array(req.sites, req.n_sites) } {
        let targets = unsafe { array(s.targets, s.n_targets as usize) }
            .iter()
            .map(|t| Ok(TargetReq { function: fn_ref(t.module, t.name, t.name_len)?, slot: !t.slot.is_null() }))
            .collect::<Result<_, String>>()?;
        sites.push(SiteReq { owner: owner(&s.owner)?, ordinal: s.ordinal, targets, sample_site: (s.area != 0).then_some(s.site) });
    }
    let probes = unsafe { array(req.probes, req.n_probes) }.iter().map(|p| Ok(ProbeReq { owner: owner(&p.owner)?, ordinal: p.ordinal, site: p.site })).collect::<Result<_, String>>()?;
    Ok(CompileRequest {
        id,
        opt_level: req.opt_level,
        modules,
        function: fn_ref(req.function_module, req.function_name, req.function_name_len)?,
        sites,
        probes,
        countdown_static: req.countdown_static != 0,
        inject_failure: req.inject_failure != 0,
        osr: (req.osr_header != NO_OSR).then(|| OsrReq { header: req.osr_header, live: unsafe { array(req.osr_live, req.n_osr_live) }.to_vec() }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jit_abi::*;

    #[test]
    fn a_request_keeps_its_structure_and_loses_its_addresses() {
        let names = ["run", "op", "gone"];
        let syms: Vec<JitSymbol> = names.iter().zip([0x1000u64, 0x2000, 0]).map(|(n, a)| JitSymbol { name: n.as_ptr(), name_len: n.len(), address: a }).collect();
        let other = [JitSymbol { name: "b".as_ptr(), name_len: 1, address: 0x9000 }];
        let modules = [
            JitModule { bitcode: std::ptr::null(), bitcode_len: 0, symbols: syms.as_ptr(), n_symbols: syms.len() },
            JitModule { bitcode: std::ptr::null(), bitcode_len: 0, symbols: other.as_ptr(), n_symbols: 1 },
        ];
        let slot = 0u64;
        let mut miss = 0u64;
        let targets = [
            JitTarget { address: 0x2000, module: 0, name: "op".as_ptr(), name_len: 2, slot: std::ptr::null() },
            JitTarget { address: 0x9000, module: 1, name: "b".as_ptr(), name_len: 1, slot: &slot },
        ];
        let sites = [
            JitSite { owner: JitOwner::F, ordinal: 0, n_targets: 2, targets: targets.as_ptr(), miss_counter: &mut miss, site: 4, area: 0 },
            JitSite { owner: JitOwner { module: 1, name: "b".as_ptr(), name_len: 1 }, ordinal: 2, n_targets: 1, targets: targets.as_ptr(), miss_counter: &mut miss, site: 7, area: 0x5000 },
        ];
        let probes = [JitProbe { owner: JitOwner::F, ordinal: 1, site: 5, area: 0x5000 }];
        let req = JitRequest {
            abi_version: JIT_ABI_VERSION,
            opt_level: 2,
            modules: modules.as_ptr(),
            n_modules: 2,
            function_module: 0,
            function_name: "run".as_ptr(),
            function_name_len: 3,
            sites: sites.as_ptr(),
            n_sites: 2,
            probes: probes.as_ptr(),
            n_probes: 1,
            sample_fn: 0x7000,
            count_fn: 0x7100,
            countdown_offset: -64,
            countdown_static: 1,
            inject_failure: 0,
            osr_header: NO_OSR,
            osr_live: std::ptr::null(),
            n_osr_live: 0,
        };
        let h = [[1u8; 32], [2u8; 32]];
        // SAFETY: every pointer points at a local alive for the call.
        let p = unsafe { portable_request(&req, &h, 5) }.unwrap();
        let f = |m: usize, n: &str| FnRef { module: h[m], name: n.into() };
        assert_eq!(p.id, 5);
        assert_eq!(p.function, f(0, "run"));
        assert_eq!(p.modules, vec![ModuleUse { hash: h[0], null_globals: vec![2] }, ModuleUse { hash: h[1], null_globals: vec![] }]);
        assert_eq!(p.sites[0], SiteReq { owner: None, ordinal: 0, targets: vec![TargetReq { function: f(0, "op"), slot: false }, TargetReq { function: f(1, "b"), slot: true }], sample_site: None });
        assert_eq!(p.sites[1].owner, Some(f(1, "b")));
        assert_eq!(p.sites[1].sample_site, Some(7));
        assert_eq!(p.probes, vec![ProbeReq { owner: None, ordinal: 1, site: 5 }]);
        assert!(p.countdown_static && !p.inject_failure);
        assert_eq!(p.osr, None);
        // The same structure in another process (other addresses) is the same request.
        let mut moved = req;
        moved.sample_fn = 0x8000;
        // SAFETY: as above.
        assert_eq!(unsafe { portable_request(&moved, &h, 5) }.unwrap(), p);
        // SAFETY: as above.
        assert!(unsafe { portable_request(&req, &h[..1], 5) }.is_err(), "a module without a hash");
        // A continuation: the point's header and live values go along.
        let live = [OSR_LIVE_ARG, OSR_LIVE_ARG | 2, 9];
        let osr = JitRequest { osr_header: 4, osr_live: live.as_ptr(), n_osr_live: 3, ..req };
        // SAFETY: as above.
        let q = unsafe { portable_request(&osr, &h, 5) }.unwrap();
        assert_eq!(q.osr, Some(OsrReq { header: 4, live: live.to_vec() }));
        assert_eq!(CompileRequest { osr: None, ..q }, p, "the rest of the request is the same");
    }
}
