//! The compile behind the server: a protocol request becomes a JIT request whose
//! addresses are stand-ins (unique, never dereferenced: the JIT only names them), compiled
//! to a portable object (`drti_jit::compile_object`), whose symbols are named after the
//! request's structure (module order, site and target positions), so the requesting agent
//! resolves them with its own addresses. A request for an OSR continuation passes its
//! point on; the object's entry is then the continuation.

use crate::{Compiler, StoredModule};
use bitcode_embed::jit_abi::*;
use bitcode_embed::protocol::{CompileRequest, CompileResult, FnRef, Hash, Outcome, Phases};
use std::collections::HashMap;
use std::sync::Arc;

/// The JIT as a [`Compiler`].
pub struct JitCompiler;

impl JitCompiler {
    /// Starts the JIT (its log goes to `log`).
    pub fn new(log: Option<LogFn>) -> Result<JitCompiler, String> {
        let mut err = JitResult::default();
        // SAFETY: a valid result buffer; the callback, if any, lives for the process.
        if unsafe { drti_jit::drti_jit_init(0, log, &mut err) } != 0 {
            return Err(err.error_text().to_owned());
        }
        Ok(JitCompiler)
    }
}

/// Stand-in addresses: distinct per role and index, far from anything real, never 0.
fn stand_in(role: u64, k: usize, i: usize) -> u64 {
    (role << 48) | ((k as u64 + 1) << 24) | (i as u64 + 1)
}
const GLOBAL: u64 = 0x11;
const SLOT: u64 = 0x12;
const MISS: u64 = 0x13;
const AREA: u64 = 0x14;
const SAMPLER: u64 = 0x15;

fn failed(id: u64, reason: String) -> CompileResult {
    CompileResult { id, phases: Phases::default(), outcome: Outcome::Failed { reason }, messages: crate::messages::take() }
}

impl Compiler for JitCompiler {
    fn compile(&self, req: &CompileRequest, module: &dyn Fn(&Hash) -> Option<Arc<StoredModule>>) -> CompileResult {
        let mods: Option<Vec<Arc<StoredModule>>> = req.modules.iter().map(|m| module(&m.hash)).collect();
        let Some(mods) = mods else { return failed(req.id, "a module of the request is not held".into()) };
        let index_of = |h: &Hash| req.modules.iter().position(|m| &m.hash == h);
        // Per module: the symbol table (stand-in addresses; 0 for the requester's nulls)
        // and each name's index.
        let tables: Vec<Vec<JitSymbol>> = mods
            .iter()
            .zip(&req.modules)
            .enumerate()
            .map(|(k, (m, u))| {
                m.globals
                    .iter()
                    .enumerate()
                    .map(|(i, n)| JitSymbol { name: n.as_ptr(), name_len: n.len(), address: if u.null_globals.contains(&(i as u32)) { 0 } else { stand_in(GLOBAL, k, i) } })
                    .collect()
            })
            .collect();
        let position: Vec<HashMap<&str, usize>> = mods.iter().map(|m| m.globals.iter().enumerate().map(|(i, n)| (n.as_str(), i)).collect()).collect();
        let locate = |f: &FnRef| -> Result<(usize, u64), String> {
            let k = index_of(&f.module).ok_or_else(|| format!("{} names a module the request does not list", f.name))?;
            let i = *position[k].get(f.name.as_str()).ok_or_else(|| format!("{} is not a global of its module", f.name))?;
            Ok((k, tables[k][i].address))
        };
        let owner = |o: &Option<FnRef>| -> Result<JitOwner, String> {
            match o {
                None => Ok(JitOwner::F),
                Some(f) => Ok(JitOwner { module: locate(f)?.0 as u32, name: f.name.as_ptr(), name_len: f.name.len() }),
            }
        };
        let area = |o: &Option<FnRef>| -> Result<u64, String> {
            let k = match o {
                None => index_of(&req.function.module).ok_or("the function's module is not listed")?,
                Some(f) => locate(f)?.0,
            };
            Ok(stand_in(AREA, k, 0))
        };
        let built = (|| -> Result<_, String> {
            let modules: Vec<JitModule> = mods
                .iter()
                .zip(&tables)
                .map(|(m, t)| JitModule { bitcode: m.bitcode.as_ptr(), bitcode_len: m.bitcode.len(), symbols: t.as_ptr(), n_symbols: t.len() })
                .collect();
            let mut targets: Vec<Vec<JitTarget>> = Vec::new();
            let mut sites = Vec::new();
            for (i, s) in req.sites.iter().enumerate() {
                let mut ts = Vec::new();
                for (j, t) in s.targets.iter().enumerate() {
                    let (k, address) = locate(&t.function)?;
                    let slot = if t.slot { stand_in(SLOT, i, j) as *const u64 } else { std::ptr::null() };
                    ts.push(JitTarget { address, module: k as u32, name: t.function.name.as_ptr(), name_len: t.function.name.len(), slot });
                }
                let (site, site_area) = match s.sample_site {
                    Some(site) => (site, area(&s.owner)?),
                    None => (0, 0),
                };
                sites.push((owner(&s.owner)?, s.ordinal, stand_in(MISS, i, 0) as *mut u64, site, site_area));
                targets.push(ts);
            }
            let sites: Vec<JitSite> = sites
                .into_iter()
                .zip(&targets)
                .map(|((owner, ordinal, miss_counter, site, area), ts)| JitSite { owner, ordinal, n_targets: ts.len() as u32, targets: ts.as_ptr(), miss_counter, site, area })
                .collect();
            let probes: Vec<JitProbe> = req.probes.iter().map(|p| Ok(JitProbe { owner: owner(&p.owner)?, ordinal: p.ordinal, site: p.site, area: area(&p.owner)? })).collect::<Result<_, String>>()?;
            let function_module = index_of(&req.function.module).ok_or("the function's module is not listed")?;
            Ok((modules, targets, sites, probes, function_module))
        })();
        let (modules, _targets, sites, probes, function_module) = match built {
            Ok(b) => b,
            Err(e) => return failed(req.id, e),
        };
        let sampled = !probes.is_empty() || sites.iter().any(|s| s.area != 0);
        let jreq = JitRequest {
            abi_version: JIT_ABI_VERSION,
            opt_level: req.opt_level,
            modules: modules.as_ptr(),
            n_modules: modules.len(),
            function_module: function_module as u32,
            function_name: req.function.name.as_ptr(),
            function_name_len: req.function.name.len(),
            sites: sites.as_ptr(),
            n_sites: sites.len(),
            probes: if probes.is_empty() { std::ptr::null() } else { probes.as_ptr() },
            n_probes: probes.len(),
            sample_fn: if sampled { stand_in(SAMPLER, 0, 0) } else { 0 },
            count_fn: if sampled { stand_in(SAMPLER, 0, 1) } else { 0 },
            countdown_offset: if req.countdown_static { stand_in(SAMPLER, 0, 2) as i64 } else { 0 },
            countdown_static: req.countdown_static as u32,
            inject_failure: req.inject_failure as u32,
            osr_header: req.osr.as_ref().map_or(NO_OSR, |o| o.header),
            osr_live: req.osr.as_ref().map_or(std::ptr::null(), |o| o.live.as_ptr()),
            n_osr_live: req.osr.as_ref().map_or(0, |o| o.live.len()),
        };
        // SAFETY: every pointer of the request points into `mods`, `tables`, `targets`,
        // `sites`, `probes` or `req`, all alive until the call returns; stand-in addresses
        // are only named by the JIT, never dereferenced.
        let (res, object) = unsafe { drti_jit::compile_object(&jreq, true) };
        let phases = Phases { parse_ms: res.parse_ms, bind_ms: res.bind_ms, optimise_ms: res.optimise_ms, codegen_ms: res.codegen_ms, cpu_ms: res.cpu_ms };
        let outcome = match object {
            Some(o) if res.ok == 1 => Outcome::Object { bytes: o.bytes, entry: o.entry },
            _ if res.rejected == 1 => Outcome::Rejected { target: res.rejected_target, reason: res.error_text().to_owned() },
            _ => Outcome::Failed { reason: res.error_text().to_owned() },
        };
        CompileResult { id: req.id, phases, outcome, messages: crate::messages::take() }
    }

    fn llvm_version(&self) -> String {
        let (mut major, mut minor, mut patch) = (0, 0, 0);
        // SAFETY: writes three unsigned integers.
        unsafe { llvm_sys::core::LLVMGetVersion(&mut major, &mut minor, &mut patch) };
        format!("{major}.{minor}.{patch}")
    }
}
