//! Reading and checking a relocatable object (through `object`), and laying it out: which
//! sections are loaded, where each goes in the one mapping, which symbols need a GOT slot
//! or a stub, and the relocations to apply. Anything not understood is an error here,
//! before any memory is mapped.
//!
//! The mapping has three page-aligned parts: text (code, then stubs; RX), read-only
//! (GOT, rodata, `.eh_frame` + terminator, `.gcc_except_table`; R after relocation) and
//! data (data and bss; RW).

use super::reloc::{Kind, STUB_SIZE};
use super::LinkError;
use object::elf;
use object::read::elf::{ElfFile64, FileHeader, Rela, SectionHeader, Sym};
use object::{LittleEndian as LE, SectionIndex, SymbolIndex};
use std::collections::HashMap;

/// Code and data never exceed this, so PC-relative references inside the mapping always fit.
const MAX_SIZE: usize = 1 << 30;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    Text = 0,
    ReadOnly = 1,
    Data = 2,
}

/// A loaded section.
#[derive(Debug)]
pub struct Placed<'data> {
    pub name: &'data str,
    /// Offset in the mapping.
    pub offset: usize,
    pub size: usize,
    /// File contents (empty for bss).
    pub data: &'data [u8],
    pub eh_frame: bool,
}

#[derive(Debug)]
pub struct Relocation {
    pub section: usize,
    pub offset: u64,
    pub kind: Kind,
    pub r_type: u32,
    pub symbol: usize,
    pub addend: i64,
}

/// A symbol of the object, as far as linking is concerned.
#[derive(Debug)]
pub struct Symbol<'data> {
    pub name: &'data str,
    pub place: Place,
    pub value: u64,
    pub size: u64,
    pub function: bool,
    pub global: bool,
    pub weak: bool,
    /// A weak definition with default visibility: like ld.so, a definition the process
    /// already has (asked through the resolver) wins, so an inline function's static
    /// variable or a template instance copied into the object stays one object.
    pub interposable: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// Index 0, section and file symbols: value 0 plus the section base if any.
    Section(usize),
    Undefined,
    Absolute,
    /// Defined in a section that is not loaded (debug info): unusable by loaded code.
    NotLoaded,
    Null,
}

#[derive(Debug)]
pub struct Layout<'data> {
    /// By section index; `None` for sections not loaded.
    pub sections: Vec<Option<Placed<'data>>>,
    pub symbols: Vec<Symbol<'data>>,
    pub relocations: Vec<Relocation>,
    /// Symbol index of each GOT slot, and slot of each symbol.
    pub got: Vec<usize>,
    pub got_slot: HashMap<usize, usize>,
    pub got_offset: usize,
    /// Symbol index of each stub, and stub of each symbol.
    pub stubs: Vec<usize>,
    pub stub_of: HashMap<usize, usize>,
    pub stub_offset: usize,
    /// `[start, end)` offsets of the text, read-only and data parts.
    pub parts: [(usize, usize); 3],
    pub total: usize,
    /// The FDEs of each `.eh_frame` section (by section index).
    pub fdes: Vec<(usize, Vec<super::eh_frame::Fde>)>,
}

/// A section to load, before placement.
struct Wanted<'data> {
    index: usize,
    part: Part,
    size: usize,
    align: usize,
    bytes: &'data [u8],
    name: &'data str,
    eh_frame: bool,
}

fn err(msg: impl Into<String>) -> LinkError {
    LinkError(msg.into())
}

fn align_up(x: usize, a: usize) -> usize {
    x.div_ceil(a) * a
}

pub fn plan(data: &[u8], page: usize) -> Result<Layout<'_>, LinkError> {
    let file = ElfFile64::<LE>::parse(data).map_err(|e| err(format!("not a readable ELF64 little-endian object: {e}")))?;
    let e = file.endian();
    let header = file.elf_header();
    if header.e_machine(e) != elf::EM_X86_64 {
        return Err(err(format!("object is for machine {}, not x86-64", header.e_machine(e))));
    }
    if header.e_type(e) != elf::ET_REL {
        return Err(err(format!("object has ELF type {}, not a relocatable object (ET_REL)", header.e_type(e))));
    }
    let sections = file.elf_section_table();
    let symtab = file.elf_symbol_table();

    // Sections: decide what is loaded and where.
    let mut placed: Vec<Option<Placed>> = (0..sections.len()).map(|_| None).collect();
    let mut wanted: Vec<Wanted> = Vec::new();
    let mut fdes = Vec::new();
    for (index, sh) in sections.enumerate() {
        let name = sections.section_name(e, sh).ok().and_then(|n| std::str::from_utf8(n).ok()).unwrap_or("?");
        let flags = sh.sh_flags(e);
        let ty = sh.sh_type(e);
        if flags & u64::from(elf::SHF_ALLOC) == 0 {
            continue;
        }
        let bad = |why: &str| err(format!("section {name}: {why}"));
        if flags & u64::from(elf::SHF_TLS) != 0 {
            return Err(bad("thread-local storage is not supported"));
        }
        let eh_frame = ty == elf::SHT_X86_64_UNWIND || name == ".eh_frame";
        match ty {
            elf::SHT_INIT_ARRAY | elf::SHT_FINI_ARRAY | elf::SHT_PREINIT_ARRAY => {
                return Err(bad("constructors and destructors (init/fini arrays) are not supported"))
            }
            elf::SHT_NOTE => continue, // e.g. .note.gnu.property: nothing the code reads
            elf::SHT_PROGBITS | elf::SHT_NOBITS | elf::SHT_X86_64_UNWIND => {}
            _ => return Err(bad(&format!("unsupported allocated section type {ty:#x}"))),
        }
        let base_name = name.split('.').nth(1).unwrap_or("");
        if matches!(base_name, "init_array" | "fini_array" | "preinit_array" | "ctors" | "dtors") || name == ".init" || name == ".fini" {
            return Err(bad("constructors and destructors are not supported"));
        }
        let exec = flags & u64::from(elf::SHF_EXECINSTR) != 0;
        let write = flags & u64::from(elf::SHF_WRITE) != 0;
        let part = match (exec, write) {
            (true, true) => return Err(bad("writable and executable")),
            (true, false) => Part::Text,
            _ if eh_frame => Part::ReadOnly,
            (false, true) => Part::Data,
            (false, false) => Part::ReadOnly,
        };
        let size = usize::try_from(sh.sh_size(e)).ok().filter(|&s| s <= MAX_SIZE).ok_or_else(|| bad("too large"))?;
        let align = usize::try_from(sh.sh_addralign(e)).unwrap_or(usize::MAX).max(1);
        if !align.is_power_of_two() || align > page {
            return Err(bad(&format!("unsupported alignment {align}")));
        }
        let bytes: &[u8] = if ty == elf::SHT_NOBITS {
            &[]
        } else {
            sh.data(e, data).map_err(|_| bad("contents lie outside the file"))?
        };
        if eh_frame {
            if ty == elf::SHT_NOBITS {
                return Err(bad("without contents"));
            }
            fdes.push((index.0, super::eh_frame::check(bytes).map_err(|e| bad(&e))?));
        }
        wanted.push(Wanted { index: index.0, part, size, align, bytes, name, eh_frame });
    }

    let mut loaded = vec![false; sections.len()];
    let mut sizes = vec![0usize; sections.len()];
    for w in &wanted {
        loaded[w.index] = true;
        sizes[w.index] = w.size;
    }

    // Symbols.
    let symtab_index = symtab.section().0;
    let mut symbols = Vec::with_capacity(symtab.len());
    for (index, sym) in symtab.enumerate() {
        let name = symtab.symbol_name(e, sym).ok().and_then(|n| std::str::from_utf8(n).ok()).unwrap_or("");
        let bad = |why: &str| err(format!("symbol {name:?}: {why}"));
        let st_type = sym.st_type();
        if st_type == elf::STT_TLS {
            return Err(bad("thread-local variables are not supported"));
        }
        if sym.is_common(e) {
            return Err(bad("COMMON symbols are not supported (compile with -fno-common)"));
        }
        if st_type == elf::STT_GNU_IFUNC {
            return Err(bad("indirect functions (ifunc) are not supported"));
        }
        let shndx = sym.st_shndx(e);
        let place = if index.0 == 0 {
            Place::Null
        } else if sym.is_undefined(e) && shndx != elf::SHN_XINDEX {
            Place::Undefined
        } else if sym.is_absolute(e) {
            Place::Absolute
        } else {
            match symtab.symbol_section(e, sym, SymbolIndex(index.0)).map_err(|x| bad(&x.to_string()))? {
                Some(SectionIndex(s)) if s < sections.len() => {
                    if loaded[s] {
                        Place::Section(s)
                    } else {
                        Place::NotLoaded
                    }
                }
                Some(_) => return Err(bad("section index out of range")),
                None if shndx == elf::SHN_XINDEX => Place::Undefined,
                None => return Err(bad(&format!("unsupported special section index {shndx:#x}"))),
            }
        };
        if let Place::Section(s) = place {
            if sym.st_value(e) > sizes[s] as u64 {
                return Err(bad("value lies outside its section"));
            }
        }
        symbols.push(Symbol {
            name,
            place,
            value: sym.st_value(e),
            size: sym.st_size(e),
            function: st_type == elf::STT_FUNC,
            global: !sym.is_local(),
            weak: sym.is_weak(),
            interposable: sym.is_weak() && sym.st_visibility() == elf::STV_DEFAULT && matches!(place, Place::Section(_)),
        });
    }

    // Relocations of loaded sections.
    let mut relocations = Vec::new();
    for sh in sections.iter() {
        let ty = sh.sh_type(e);
        if ty != elf::SHT_RELA && ty != elf::SHT_REL {
            continue;
        }
        let target = sh.sh_info(e) as usize;
        if !loaded.get(target).copied().unwrap_or(false) {
            continue; // debug info and other unloaded sections
        }
        let name = sections.section_name(e, sh).ok().and_then(|n| std::str::from_utf8(n).ok()).unwrap_or("?");
        if ty == elf::SHT_REL {
            return Err(err(format!("{name}: REL relocations (without addend) are not used on x86-64")));
        }
        if sh.sh_link(e) as usize != symtab_index {
            return Err(err(format!("{name}: relocations refer to a symbol table other than .symtab")));
        }
        let relas: &[elf::Rela64<LE>] = sh.data_as_array(e, data).map_err(|_| err(format!("{name}: unreadable")))?;
        for r in relas {
            let r_type = r.r_type(e, false);
            let symbol = r.r_sym(e, false) as usize;
            let kind = Kind::from_elf(r_type).ok_or_else(|| err(format!("{name}: unsupported relocation type {r_type}")))?;
            if symbol >= symbols.len() {
                return Err(err(format!("{name}: relocation against symbol {symbol} out of range")));
            }
            if symbols[symbol].place == Place::NotLoaded {
                return Err(err(format!("{name}: relocation against {:?}, defined in a section that is not loaded", symbols[symbol].name)));
            }
            relocations.push(Relocation { section: target, offset: r.r_offset(e), kind, r_type, symbol, addend: r.r_addend(e) });
        }
    }

    // GOT slots (GOTPCREL*) and stubs (calls to symbols outside the object, which may be
    // out of reach; inside the object everything is within MAX_SIZE).
    let (mut got, mut got_slot, mut stubs, mut stub_of) = (Vec::new(), HashMap::new(), Vec::new(), HashMap::new());
    for r in &relocations {
        let sym = &symbols[r.symbol];
        let outside = matches!(sym.place, Place::Undefined | Place::Absolute) || sym.interposable;
        let needs_stub = r.kind == Kind::Plt32 && outside;
        if r.kind == Kind::GotPc32 || needs_stub {
            got_slot.entry(r.symbol).or_insert_with(|| {
                got.push(r.symbol);
                got.len() - 1
            });
        }
        if needs_stub {
            stub_of.entry(r.symbol).or_insert_with(|| {
                stubs.push(r.symbol);
                stubs.len() - 1
            });
        }
    }

    // Offsets: text, stubs | GOT, rodata | data, bss.
    let mut parts = [(0usize, 0usize); 3];
    let mut at = 0usize;
    let mut stub_offset = 0;
    let mut got_offset = 0;
    for part in [Part::Text, Part::ReadOnly, Part::Data] {
        at = align_up(at, page);
        let start = at;
        if part == Part::ReadOnly && !got.is_empty() {
            got_offset = at;
            at += 8 * got.len();
        }
        for w in wanted.iter().filter(|w| w.part == part) {
            at = align_up(at, w.align);
            placed[w.index] = Some(Placed { name: w.name, offset: at, size: w.size, data: w.bytes, eh_frame: w.eh_frame });
            // .eh_frame is followed by the zero terminator libgcc's walk stops at.
            at += w.size + if w.eh_frame { 4 } else { 0 };
        }
        if part == Part::Text && !stubs.is_empty() {
            at = align_up(at, STUB_SIZE);
            stub_offset = at;
            at += STUB_SIZE * stubs.len();
        }
        parts[part as usize] = (start, at);
        if at > MAX_SIZE {
            return Err(err("object too large to link"));
        }
    }
    let total = align_up(at.max(1), page);
    Ok(Layout { sections: placed, symbols, relocations, got, got_slot, got_offset, stubs, stub_of, stub_offset, parts, total, fdes })
}
