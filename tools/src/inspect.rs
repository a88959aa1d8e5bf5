//! `drti inspect FILE`: what drti put into an executable or shared object.

use bitcode_embed::elf::read_elf;
use bitcode_embed::format::*;
use bitcode_embed::Blob;
use serde_json::{json, Value};

/// Exit status: decorated modules found and valid.
pub const OK: i32 = 0;
/// Exit status: an ELF file without (valid) drti metadata.
pub const NO_METADATA: i32 = 1;
/// Exit status: unreadable or not an ELF file.
pub const UNREADABLE: i32 = 2;

fn function_flags(flags: u32) -> Vec<&'static str> {
    let mut out = Vec::new();
    if flags & FUNCTION_DECORATED != 0 {
        out.push("decorated");
    }
    if flags & FUNCTION_PATCHABLE != 0 {
        out.push("patchable");
    }
    if flags & FUNCTION_SKIPPED != 0 {
        out.push("skipped");
    }
    if flags & FUNCTION_NO_REDIRECT != 0 {
        out.push("no-redirect");
    }
    out
}

/// One module as JSON (the `--json` form, also the source of the text form).
fn module_json(blob: &Blob, sizes: &std::collections::HashMap<String, (u64, u64)>) -> Value {
    let h = blob.header();
    let functions: Vec<Value> = blob
        .functions()
        .enumerate()
        .map(|(i, f)| {
            let name = blob.function_name(i as u32);
            // The profiled twin F.prof: its address-table slot and the size of its code.
            let profiled = (f.profiled != NO_PROFILED).then_some(f.profiled);
            let twin = format!("{name}{PROFILED_SUFFIX}");
            json!({"name": name, "sites": f.n_sites, "flags": function_flags(f.flags),
                   "size": sizes.get(name).map(|s| s.1), "profiled_entry": profiled,
                   "profiled_size": profiled.and_then(|_| sizes.get(&twin).map(|s| s.1))})
        })
        .collect();
    let sites: Vec<Value> = blob
        .sites()
        .enumerate()
        .map(|(i, s)| {
            json!({"site": i, "function": blob.function_name(s.function), "ordinal": s.ordinal,
                   "invoke": s.flags & SITE_INVOKE != 0, "vararg": s.flags & SITE_VARARG != 0})
        })
        .collect();
    // OSR points: a loop header of a function, the runtime-area slot its twin checks there,
    // the live values it hands over ("arg<i>" / "inst<j>"), the site ordinals in the loop.
    let osr: Vec<Value> = blob
        .osr_points()
        .map(|p| {
            let live: Vec<String> = blob
                .osr_live(&p)
                .map(|r| if r & OSR_LIVE_ARG != 0 { format!("arg{}", r & !OSR_LIVE_ARG) } else { format!("inst{r}") })
                .collect();
            json!({"function": blob.function_name(p.function), "header": p.header, "slot": p.slot,
                   "n_live": p.n_live, "live": live, "sites": blob.osr_sites(&p).collect::<Vec<u32>>()})
        })
        .collect();
    json!({"source": blob.source_name(), "abi_version": h.version, "bitcode_bytes": h.bitcode_size,
           "bitcode_raw_bytes": h.bitcode_raw_size, "bitcode_hash": format!("{:016x}", h.bitcode_hash),
           "globals": h.n_globals, "address_slots": h.n_addrs, "functions": functions, "sites": sites,
           "osr_points": osr})
}

/// Runs `drti inspect`; returns the exit status.
pub fn run(path: &str, as_json: bool, extract: Option<&str>) -> i32 {
    let data = match std::fs::read(path) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("drti inspect: cannot read {path}: {e}");
            return UNREADABLE;
        }
    };
    let elf = match read_elf(&data) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("drti inspect: {path}: {e}");
            return UNREADABLE;
        }
    };
    let mut modules = Vec::new();
    let mut errors = Vec::new();
    for (i, m) in elf.modules.iter().enumerate() {
        match m {
            Ok(found) => {
                if let Some(dir) = extract {
                    if let Err(e) = extract_bitcode(&found.blob, dir, i) {
                        eprintln!("drti inspect: {e}");
                        return UNREADABLE;
                    }
                }
                modules.push(module_json(&found.blob, &elf.symbol_sizes));
            }
            Err((addr, e)) => errors.push(format!("note at {addr:#x}: {e}")),
        }
    }
    let status = if modules.is_empty() { NO_METADATA } else { OK };
    if as_json {
        println!("{:#}", json!({"file": path, "modules": modules, "errors": errors}));
    } else {
        print_text(path, &modules, &errors);
    }
    status
}

fn print_text(path: &str, modules: &[Value], errors: &[String]) {
    if modules.is_empty() && errors.is_empty() {
        println!("{path}: no drti metadata (not built with drti-cc)");
        return;
    }
    if modules.is_empty() {
        println!("{path}: no drti metadata that this drti can read");
    } else {
        println!("{path}: {} decorated module(s)", modules.len());
    }
    for m in modules {
        println!(
            "\nmodule {}  (ABI {}, bitcode {} bytes compressed / {} raw, {} globals)",
            m["source"].as_str().unwrap_or("?"),
            m["abi_version"],
            m["bitcode_bytes"],
            m["bitcode_raw_bytes"],
            m["globals"]
        );
        println!("  {:<40} {:>5}  {:>7}  flags", "function", "sites", "size");
        for f in m["functions"].as_array().into_iter().flatten() {
            let flags: Vec<&str> = f["flags"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
            let size = f["size"].as_u64().map(|s| s.to_string()).unwrap_or_else(|| "-".into());
            let profiled = match (f["profiled_entry"].as_u64(), f["profiled_size"].as_u64()) {
                (Some(slot), Some(size)) => format!("  profiled twin: address slot {slot}, {size} bytes"),
                (Some(slot), None) => format!("  profiled twin: address slot {slot}"),
                _ => String::new(),
            };
            println!("  {:<40} {:>5}  {:>7}  {}{profiled}", f["name"].as_str().unwrap_or("?"), f["sites"], size, flags.join(","));
        }
        for s in m["sites"].as_array().into_iter().flatten() {
            let kind = if s["invoke"].as_bool() == Some(true) { " (invoke)" } else { "" };
            println!("  site {:>3}: {} #{}{kind}", s["site"], s["function"].as_str().unwrap_or("?"), s["ordinal"]);
        }
        for p in m["osr_points"].as_array().into_iter().flatten() {
            let words = |v: &Value| v.as_array().into_iter().flatten().map(|x| x.to_string().trim_matches('"').to_string()).collect::<Vec<_>>();
            let sites: Vec<String> = words(&p["sites"]).into_iter().map(|o| format!("#{o}")).collect();
            println!(
                "  osr point: {} block {}, slot {}, {} live ({}), sites {}",
                p["function"].as_str().unwrap_or("?"),
                p["header"],
                p["slot"],
                p["n_live"],
                words(&p["live"]).join(" "),
                sites.join(" ")
            );
        }
    }
    for e in errors {
        println!("\ninvalid drti metadata: {e}");
    }
}

fn extract_bitcode(blob: &Blob, dir: &str, i: usize) -> Result<(), String> {
    let bc = blob.bitcode().map_err(|e| format!("module {i}: {e}"))?;
    std::fs::create_dir_all(dir).map_err(|e| format!("{dir}: {e}"))?;
    let out = std::path::Path::new(dir).join(format!("module{i}.bc"));
    std::fs::write(&out, bc).map_err(|e| format!("{}: {e}", out.display()))
}
