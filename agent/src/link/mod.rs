//! An in-process linker for relocatable x86-64 ELF objects (`ET_REL`, small code model,
//! PIC or PIE as clang emits them): the agent links a compiled object into the process
//! without LLVM.
//!
//! `link` reads and checks the object (`layout`), maps it within reach of a given address
//! (`memory`), copies the sections, resolves undefined symbols through the caller's
//! resolver, fills a GOT and call stubs of its own for what is out of reach, applies the
//! relocations (`reloc`), protects code RX and read-only data R, then registers the
//! unwind info (`eh_frame`) and the object with GDB (`gdb`). The result owns all of it.

mod eh_frame;
mod gdb;
mod layout;
mod memory;
pub mod reloc;

use layout::{Part, Place};
use reloc::Kind;
use std::collections::HashMap;
use std::fmt;

/// Why an object was not linked. Nothing is left mapped or registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkError(pub String);

impl fmt::Display for LinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "link: {}", self.0)
    }
}

impl std::error::Error for LinkError {}

/// A symbol defined by a linked object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkedSymbol {
    pub address: u64,
    /// `st_size`: the code size of a function.
    pub size: u64,
    pub function: bool,
}

/// A linked object: its mapping, symbols and registrations. Dropping it (or `release`)
/// deregisters the unwind info and the GDB entry, then unmaps the code.
///
/// Addresses from `symbol` are plain numbers; calling into them is `unsafe` and only
/// valid while this value lives. Dropping it while a thread can still run its code is
/// undefined behaviour: the owner must make sure none can (see `code_owner`).
#[derive(Debug)]
pub struct LinkedObject {
    symbols: HashMap<String, LinkedSymbol>,
    // Field order is drop order: registrations go before the memory they point into.
    gdb: Option<gdb::Registration>,
    eh_frames: Vec<eh_frame::Registration>,
    text: (u64, u64),
    in_reach: bool,
    map: memory::Mapping,
}

impl LinkedObject {
    /// The address of a symbol the object defines (global symbols shadow local ones).
    pub fn symbol(&self, name: &str) -> Option<u64> {
        self.symbols.get(name).map(|s| s.address)
    }

    /// Address and code size of a function the object defines.
    pub fn function(&self, name: &str) -> Option<(u64, u64)> {
        self.symbols.get(name).filter(|s| s.function).map(|s| (s.address, s.size))
    }

    pub fn symbols(&self) -> impl Iterator<Item = (&str, &LinkedSymbol)> {
        self.symbols.iter().map(|(n, s)| (n.as_str(), s))
    }

    /// `[start, end)` of the whole mapping.
    pub fn range(&self) -> (u64, u64) {
        (self.map.base(), self.map.base() + self.map.len() as u64)
    }

    /// `[start, end)` of the executable part (code and stubs).
    pub fn text(&self) -> (u64, u64) {
        self.text
    }

    /// Whether the mapping was placed within ±2 GiB of the requested address.
    pub fn in_reach(&self) -> bool {
        self.in_reach
    }

    /// How many `.eh_frame` sections are registered with the unwinder.
    pub fn unwind_tables(&self) -> usize {
        self.eh_frames.len()
    }

    /// Whether the object is on the agent's GDB JIT list, and the ELF image GDB reads.
    pub fn gdb_symfile(&self) -> Option<&[u8]> {
        self.gdb.as_ref().filter(|g| g.is_listed()).map(|g| g.symfile())
    }

    /// Deregister and unmap.
    ///
    /// # Safety
    /// No thread may be executing the object's code or hold a pointer into it that will
    /// be used (return addresses, function pointers, pointers to its data).
    pub unsafe fn release(self) {
        drop(self);
    }
}

/// How many linked objects are registered with GDB (their `LinkedObject`s are alive).
pub fn gdb_entries() -> usize {
    gdb::entries()
}

/// Link the relocatable object `object` into the process, near `near` (the module's load
/// address) if possible. `resolve` gives the address of each undefined symbol (an
/// unresolved weak one is 0, any other is an error) and of each weak default-visibility
/// definition the process already has (the object's own is used otherwise). Called on
/// the agent thread: it maps memory and registers with the unwinder and GDB.
pub fn link(object: &[u8], near: Option<u64>, mut resolve: impl FnMut(&str) -> Option<u64>) -> Result<LinkedObject, LinkError> {
    let page = memory::page_size();
    let plan = layout::plan(object, page)?;

    // Resolve before mapping anything.
    let mut outside = vec![None; plan.symbols.len()];
    for (i, s) in plan.symbols.iter().enumerate() {
        match s.place {
            Place::Undefined => match resolve(s.name) {
                Some(a) => outside[i] = Some(a),
                None if s.weak => outside[i] = Some(0),
                None => return Err(LinkError(format!("undefined symbol {:?}", s.name))),
            },
            Place::Absolute => outside[i] = Some(s.value),
            Place::Section(_) if s.interposable => outside[i] = resolve(s.name),
            _ => {}
        }
    }

    let (mut map, in_reach) = memory::Mapping::new(plan.total, near).map_err(|e| LinkError(format!("mmap {} bytes: {e}", plan.total)))?;
    let base = map.base();
    let address = |i: usize| -> u64 {
        let s = &plan.symbols[i];
        if let Some(a) = outside[i] {
            return a;
        }
        match s.place {
            Place::Section(sec) => base + plan.sections[sec].as_ref().map_or(0, |p| p.offset as u64) + s.value,
            Place::Undefined | Place::Absolute => 0,
            Place::NotLoaded | Place::Null => 0,
        }
    };

    {
        // SAFETY: the mapping is fresh, still read-write, and no one else knows it yet.
        let bytes = unsafe { map.bytes_mut() };
        for p in plan.sections.iter().flatten() {
            bytes[p.offset..p.offset + p.data.len()].copy_from_slice(p.data);
        }
        for (slot, &sym) in plan.got.iter().enumerate() {
            let at = plan.got_offset + 8 * slot;
            bytes[at..at + 8].copy_from_slice(&address(sym).to_le_bytes());
        }
        for (n, &sym) in plan.stubs.iter().enumerate() {
            let at = plan.stub_offset + reloc::STUB_SIZE * n;
            let slot = base + (plan.got_offset + 8 * plan.got_slot[&sym]) as u64;
            let code = reloc::stub(base + at as u64, slot).map_err(|_| LinkError("stub cannot reach its GOT slot".into()))?;
            bytes[at..at + reloc::STUB_SIZE].copy_from_slice(&code);
        }
        for r in &plan.relocations {
            let sec = plan.sections[r.section].as_ref().expect("relocations only target loaded sections");
            let sym = &plan.symbols[r.symbol];
            let what = || format!("relocation type {} at {}+{:#x} against {:?}", r.r_type, sec.name, r.offset, sym.name);
            if sec.data.len() < sec.size {
                return Err(LinkError(format!("{} in a section without contents", what())));
            }
            // Wrapping: a corrupt offset is caught by `write_at` below, not by a panic here.
            let p = (base + sec.offset as u64).wrapping_add(r.offset);
            let s = address(r.symbol);
            let value = match r.kind {
                Kind::Abs64 | Kind::Abs32 | Kind::Abs32S => reloc::absolute(s, r.addend),
                Kind::Pc32 | Kind::Pc64 => reloc::pc_relative(s, r.addend, p),
                Kind::Plt32 => {
                    let direct = reloc::pc_relative(s, r.addend, p);
                    match plan.stub_of.get(&r.symbol) {
                        Some(&n) if reloc::encode(Kind::Plt32, direct).is_err() => {
                            reloc::pc_relative(base + (plan.stub_offset + reloc::STUB_SIZE * n) as u64, r.addend, p)
                        }
                        _ => direct,
                    }
                }
                Kind::GotPc32 => reloc::pc_relative(base + (plan.got_offset + 8 * plan.got_slot[&r.symbol]) as u64, r.addend, p),
            };
            let field = reloc::encode(r.kind, value).map_err(|o| {
                LinkError(format!("{}: value {:#x} does not fit (symbol at {s:#x}, place {p:#x})", what(), o.value))
            })?;
            reloc::write_at(&mut bytes[sec.offset..sec.offset + sec.size], r.offset, &field).map_err(|e| LinkError(format!("{}: {e}", what())))?;
        }
    }

    let text = (base + plan.parts[0].0 as u64, base + plan.parts[0].1 as u64);
    for (index, fdes) in &plan.fdes {
        let p = plan.sections[*index].as_ref().expect(".eh_frame is loaded");
        // SAFETY: still read-write and unshared, as above; only read here.
        let bytes = unsafe { map.bytes_mut() };
        eh_frame::check_ranges(&bytes[p.offset..p.offset + p.size], base + p.offset as u64, fdes, text)
            .map_err(|e| LinkError(format!("{}: {e}", p.name)))?;
    }

    let protect = |part: Part, prot| {
        let (start, end) = plan.parts[part as usize];
        let end = end.next_multiple_of(page).min(map.len());
        map.protect(start, end - start, prot).map_err(|e| LinkError(format!("mprotect: {e}")))
    };
    protect(Part::Text, libc::PROT_READ | libc::PROT_EXEC)?;
    protect(Part::ReadOnly, libc::PROT_READ)?;

    let eh_frames = plan
        .sections
        .iter()
        .flatten()
        .filter(|p| p.eh_frame && p.size > 0)
        // SAFETY: the section was copied, relocated and is followed by the 4 zero bytes
        // `layout` reserved; it and the code it describes live in `map`, which the
        // LinkedObject drops after these registrations.
        .map(|p| unsafe { eh_frame::Registration::new((base + p.offset as u64) as *const u8) })
        .collect();

    let mut out = HashMap::new();
    for (i, s) in plan.symbols.iter().enumerate() {
        if s.name.is_empty() || !matches!(s.place, Place::Section(_)) {
            continue;
        }
        if out.contains_key(s.name) && !s.global {
            continue;
        }
        out.insert(s.name.to_string(), LinkedSymbol { address: address(i), size: s.size, function: s.function });
    }

    let gdb = Some(gdb::Registration::new(symfile_with_addresses(object, &plan, base)));
    Ok(LinkedObject { symbols: out, gdb, eh_frames, text, in_reach, map })
}

/// A copy of the object whose section headers give the addresses sections were loaded at.
fn symfile_with_addresses(object: &[u8], plan: &layout::Layout, base: u64) -> Vec<u8> {
    use object::read::elf::ElfFile64;
    let mut copy = object.to_vec();
    let Ok(file) = ElfFile64::<object::LittleEndian>::parse(object) else { return copy };
    for (index, sh) in file.elf_section_table().enumerate() {
        if let Some(p) = plan.sections.get(index.0).and_then(|p| p.as_ref()) {
            // Where `object` read this header inside `object`, and its sh_addr field.
            let at = (sh as *const _ as usize) - object.as_ptr() as usize + std::mem::offset_of!(object::elf::SectionHeader64<object::LittleEndian>, sh_addr);
            copy[at..at + 8].copy_from_slice(&(base + p.offset as u64).to_le_bytes());
        }
    }
    copy
}
