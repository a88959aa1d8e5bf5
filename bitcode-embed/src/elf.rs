//! Reading drti metadata from an ELF file on disk (executable or shared object).

use crate::image::{find_modules, FoundModule, Segments};
use crate::reader::Error;
use object::elf::{PT_LOAD, PT_NOTE};
use object::read::elf::{ElfFile64, FileHeader, ProgramHeader};
use object::{Object, ObjectSymbol};

/// Why a file could not be examined at all.
#[derive(Debug)]
pub enum FileError {
    /// Not an ELF64 little-endian file we can parse.
    NotElf(String),
}

impl std::fmt::Display for FileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FileError::NotElf(e) => write!(f, "not a readable ELF64 file: {e}"),
        }
    }
}

/// The decorated modules of an ELF file, plus what the symbol table says about sizes.
pub struct ElfModules<'a> {
    /// One entry per drti note: the module, or why its metadata was rejected.
    pub modules: Vec<Result<FoundModule<'a>, (u64, Error)>>,
    /// `(address, size)` by symbol name, from `.symtab` (or `.dynsym` when stripped).
    pub symbol_sizes: std::collections::HashMap<String, (u64, u64)>,
}

/// Finds the drti notes of `data` (an ELF file's bytes) through its program headers,
/// exactly as the agent does in memory, and validates each blob.
pub fn read_elf(data: &[u8]) -> Result<ElfModules<'_>, FileError> {
    let file = ElfFile64::<object::Endianness>::parse(data).map_err(|e| FileError::NotElf(e.to_string()))?;
    let endian = file.endian();
    let phdrs = file.elf_header().program_headers(endian, data).map_err(|e| FileError::NotElf(e.to_string()))?;
    let mut space = Segments::default();
    let mut notes = Vec::new();
    for ph in phdrs {
        let Ok(bytes) = ph.data(endian, data) else { continue };
        match ph.p_type(endian) {
            PT_LOAD => space.add(ph.p_vaddr(endian), bytes, ph.p_memsz(endian)),
            PT_NOTE => notes.push((ph.p_vaddr(endian), bytes)),
            _ => {}
        }
    }
    let mut symbol_sizes = std::collections::HashMap::new();
    let symbols: Vec<_> = if file.symbols().next().is_some() { file.symbols().collect() } else { file.dynamic_symbols().collect() };
    for sym in symbols {
        if let Ok(name) = sym.name() {
            if sym.is_definition() {
                symbol_sizes.entry(name.to_owned()).or_insert((sym.address(), sym.size()));
            }
        }
    }
    Ok(ElfModules { modules: find_modules(&space, &notes), symbol_sizes })
}
