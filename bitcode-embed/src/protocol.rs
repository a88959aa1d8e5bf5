//! The protocol between the agent and `drti-jitd`, the compiler process (issue 12): one
//! Unix stream socket per agent, messages framed as
//!
//! ```text
//! magic "DRTQ" | u32 kind | u64 payload length | payload
//! ```
//! (little endian). Payloads are flat: u32/u64/f64 little endian, byte strings and texts as
//! a u64 length then the bytes, sequences as a u32 count then the elements. The reader
//! checks every length against what is left, so a damaged or hostile stream is an error,
//! never a panic or an allocation of its claimed size.
//!
//! A session: the agent sends [`Message::Hello`], the server answers
//! [`Message::Welcome`] (or [`Message::Error`] and closes). Modules are known by the SHA-256
//! of their clean bitcode as embedded (zstd-compressed, see `format`): the application
//! hashes and sends those bytes without ever decompressing them; a [`Message::Compile`] names them by hash, and the server answers
//! [`Message::NeedModules`] for any it does not hold, after which the agent sends them
//! ([`Message::PutModule`]) and repeats the request. Every request carries an id that its
//! answer repeats. Nothing in a request is an address of the agent's process: functions are
//! (module hash, IR name), so an answer (a relocatable object whose undefined symbols the
//! agent resolves) is valid in any process running the same modules, which is what lets a
//! cache share it.

use std::io::{Read, Write};

/// Bumped on any change to the messages or their encoding.
pub const PROTOCOL_VERSION: u32 = 2;
/// First bytes of every frame.
pub const MAGIC: [u8; 4] = *b"DRTQ";
/// Largest payload either side accepts (bitcode is at most 1 GiB, see `format`).
pub const MAX_PAYLOAD: u64 = (1 << 30) + (1 << 20);

/// A SHA-256 hash (of a module's clean bitcode).
pub type Hash = [u8; 32];

/// What identifies a compiler build, for the code cache's keys and the welcome's `drti`
/// field: the drti version and the size and modification time of the compiler's
/// executable. LLVM is linked into it statically, so a rebuilt drti or another LLVM is
/// another identity. An agent computes it from the binary it would start, without starting
/// it; a server reports its own (`/proc/self/exe`).
pub fn compiler_identity(exe: &std::path::Path) -> std::io::Result<String> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(exe)?;
    Ok(format!("drti {} ({} bytes, mtime {}.{:09})", env!("CARGO_PKG_VERSION"), m.len(), m.mtime(), m.mtime_nsec()))
}

/// A function: its module (by the hash of its embedded bitcode) and IR name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FnRef {
    /// SHA-256 of the module's embedded (compressed) clean bitcode.
    pub module: Hash,
    /// IR name in that module.
    pub name: String,
}

/// A module a compile uses, as the requesting process sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct ModuleUse {
    /// SHA-256 of the module's embedded (compressed) clean bitcode.
    pub hash: Hash,
    /// Indices (into the module's global names, see [`Message::PutModule`]) of the globals
    /// that are null in this process (weak symbols nothing defines).
    pub null_globals: Vec<u32>,
}

/// A guarded target.
#[derive(Clone, Debug, PartialEq)]
pub struct TargetReq {
    /// The target.
    pub function: FnRef,
    /// Whether the guard compares through a guard slot (a target in an unloadable object).
    pub slot: bool,
}

/// One site to guard in a compile.
#[derive(Clone, Debug, PartialEq)]
pub struct SiteReq {
    /// The function whose site it is: None for the function compiled, else one of the
    /// inlined targets (its copy inside F+ gets the guard).
    pub owner: Option<FnRef>,
    /// Ordinal of the indirect call in the owner (`SiteRecord::ordinal`).
    pub ordinal: u32,
    /// Targets to inline behind guards, hottest first.
    pub targets: Vec<TargetReq>,
    /// The site's index in its owner's module when its misses are sampled.
    pub sample_site: Option<u32>,
}

/// An unguarded site that keeps sampling in F+.
#[derive(Clone, Debug, PartialEq)]
pub struct ProbeReq {
    /// As in [`SiteReq`].
    pub owner: Option<FnRef>,
    /// As in [`SiteReq`].
    pub ordinal: u32,
    /// The site's index in its owner's module.
    pub site: u32,
}

/// An OSR continuation asked for instead of F+ (`jit_abi::JitRequest::osr_header`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OsrReq {
    /// Index of the loop header in F's block list.
    pub header: u32,
    /// The header's live values (`jit_abi::OSR_LIVE_ARG` encoding), in parameter order.
    pub live: Vec<u32>,
}

/// A compile request. The order of `modules` numbers them: the symbols of the object that
/// comes back are named after those numbers (`drti_jit::symbolic`), so the requester
/// resolves them against the same list.
#[derive(Clone, Debug, PartialEq)]
pub struct CompileRequest {
    /// Repeated in the answer.
    pub id: u64,
    /// 2 or 3.
    pub opt_level: u32,
    /// Every module the compile uses (the function's, its targets' and owners').
    pub modules: Vec<ModuleUse>,
    /// The function compiled.
    pub function: FnRef,
    /// Its guarded sites.
    pub sites: Vec<SiteReq>,
    /// Its sampled sites.
    pub probes: Vec<ProbeReq>,
    /// Whether the requester's sampling countdown sits at a fixed offset from the thread
    /// pointer (else sampled sites call the sampler at every call).
    pub countdown_static: bool,
    /// Tests only (`DRTI_TEST_JIT_FAIL`): the compile fails on purpose after optimising.
    pub inject_failure: bool,
    /// Some: compile the continuation of this OSR point of the function instead of F+.
    pub osr: Option<OsrReq>,
}

/// Milliseconds per phase of a compile, as `jit_abi::JitResult` reports them.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Phases {
    /// Loading bitcode.
    pub parse_ms: f64,
    /// Copying, binding, guarding.
    pub bind_ms: f64,
    /// The optimisation pipeline.
    pub optimise_ms: f64,
    /// Machine code.
    pub codegen_ms: f64,
    /// CPU of the compiling thread.
    pub cpu_ms: f64,
}

/// How a compile ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// A relocatable x86-64 ELF object defining `entry` (F+).
    Object {
        /// The object file.
        bytes: Vec<u8>,
        /// Symbol of F+ in it.
        entry: String,
    },
    /// The function (target -1) or target `target` (flattened over the sites) cannot be
    /// compiled faithfully.
    Rejected {
        /// -1 for the function itself.
        target: i32,
        /// Why.
        reason: String,
    },
    /// Something went wrong (an LLVM error, bad input).
    Failed {
        /// What.
        reason: String,
    },
}

/// The answer to a [`CompileRequest`].
#[derive(Clone, Debug, PartialEq)]
pub struct CompileResult {
    /// The request's id.
    pub id: u64,
    /// Time per phase.
    pub phases: Phases,
    /// What came out.
    pub outcome: Outcome,
    /// What the compiler and LLVM said during the compile (level as `jit_abi::JIT_LOG_*`,
    /// text): the agent logs them, so diagnostics reach the drti log, never the program.
    pub messages: Vec<(u32, String)>,
}

/// Every message either side sends.
#[derive(Clone, Debug, PartialEq)]
pub enum Message {
    /// Agent: first message of a session.
    Hello {
        /// [`PROTOCOL_VERSION`] of the agent.
        protocol: u32,
        /// drti version of the agent.
        drti: String,
        /// The agent's process id (for the server's log).
        pid: u32,
    },
    /// Server: the session is open.
    Welcome {
        /// [`PROTOCOL_VERSION`] of the server.
        protocol: u32,
        /// The server's build ([`compiler_identity`]): the agent keys cached code by it.
        drti: String,
        /// LLVM version it compiles with.
        llvm: String,
        /// The server's process id.
        pid: u32,
    },
    /// Agent: a module's clean bitcode.
    PutModule {
        /// SHA-256 of `compressed`; the server checks it.
        hash: Hash,
        /// The bitcode as embedded in the module (a zstd frame).
        compressed: Vec<u8>,
        /// Its size decompressed (the server allocates no more).
        raw_size: u64,
        /// The module's global names in address-table order (the blob's global records).
        globals: Vec<String>,
    },
    /// Agent: compile.
    Compile(CompileRequest),
    /// Server: request `id` needs these modules first.
    NeedModules {
        /// The request's id.
        id: u64,
        /// Modules the server does not hold.
        hashes: Vec<Hash>,
    },
    /// Server: a compile's answer.
    Compiled(CompileResult),
    /// Either side: the session cannot go on (the sender closes it after this).
    Error {
        /// What went wrong.
        text: String,
    },
}

const HELLO: u32 = 1;
const WELCOME: u32 = 2;
const PUT_MODULE: u32 = 3;
const COMPILE: u32 = 4;
const NEED_MODULES: u32 = 5;
const COMPILED: u32 = 6;
const ERROR: u32 = 7;

const OUTCOME_OBJECT: u32 = 0;
const OUTCOME_REJECTED: u32 = 1;
const OUTCOME_FAILED: u32 = 2;

/// A malformed or unexpected stream.
#[derive(Debug)]
pub enum WireError {
    /// The transport failed (the peer went away included).
    Io(std::io::Error),
    /// The bytes are not a valid message.
    Malformed(String),
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WireError::Io(e) => write!(f, "{e}"),
            WireError::Malformed(m) => write!(f, "malformed message: {m}"),
        }
    }
}

impl From<std::io::Error> for WireError {
    fn from(e: std::io::Error) -> Self {
        WireError::Io(e)
    }
}

fn malformed<T>(what: impl Into<String>) -> Result<T, WireError> {
    Err(WireError::Malformed(what.into()))
}

/// Payload encoder.
#[derive(Default)]
struct Enc(Vec<u8>);

impl Enc {
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn f64(&mut self, v: f64) {
        self.u64(v.to_bits());
    }
    fn bytes(&mut self, b: &[u8]) {
        self.u64(b.len() as u64);
        self.0.extend_from_slice(b);
    }
    fn hash(&mut self, h: &Hash) {
        self.0.extend_from_slice(h);
    }
    fn fn_ref(&mut self, f: &FnRef) {
        self.hash(&f.module);
        self.bytes(f.name.as_bytes());
    }
    fn owner(&mut self, o: &Option<FnRef>) {
        match o {
            None => self.u32(0),
            Some(f) => {
                self.u32(1);
                self.fn_ref(f);
            }
        }
    }
}

/// Payload decoder over a received payload.
struct Dec<'a>(&'a [u8]);

impl<'a> Dec<'a> {
    fn take(&mut self, n: u64, what: &str) -> Result<&'a [u8], WireError> {
        if n > self.0.len() as u64 {
            return malformed(format!("{what}: {n} bytes claimed, {} left", self.0.len()));
        }
        let (head, rest) = self.0.split_at(n as usize);
        self.0 = rest;
        Ok(head)
    }
    fn u32(&mut self, what: &str) -> Result<u32, WireError> {
        Ok(u32::from_le_bytes(self.take(4, what)?.try_into().unwrap()))
    }
    fn u64(&mut self, what: &str) -> Result<u64, WireError> {
        Ok(u64::from_le_bytes(self.take(8, what)?.try_into().unwrap()))
    }
    fn f64(&mut self, what: &str) -> Result<f64, WireError> {
        Ok(f64::from_bits(self.u64(what)?))
    }
    fn bytes(&mut self, what: &str) -> Result<Vec<u8>, WireError> {
        let n = self.u64(what)?;
        Ok(self.take(n, what)?.to_vec())
    }
    fn text(&mut self, what: &str) -> Result<String, WireError> {
        String::from_utf8(self.bytes(what)?).or_else(|_| malformed(format!("{what} is not UTF-8")))
    }
    fn hash(&mut self, what: &str) -> Result<Hash, WireError> {
        Ok(self.take(32, what)?.try_into().unwrap())
    }
    fn fn_ref(&mut self, what: &str) -> Result<FnRef, WireError> {
        Ok(FnRef { module: self.hash(what)?, name: self.text(what)? })
    }
    fn owner(&mut self, what: &str) -> Result<Option<FnRef>, WireError> {
        match self.u32(what)? {
            0 => Ok(None),
            1 => Ok(Some(self.fn_ref(what)?)),
            k => malformed(format!("{what} tag {k}")),
        }
    }
    /// A count of elements each at least `min_size` bytes: bounded by what is left, so a
    /// hostile count cannot make the reader allocate.
    fn count(&mut self, what: &str, min_size: usize) -> Result<usize, WireError> {
        let n = self.u32(what)? as usize;
        if n.saturating_mul(min_size) > self.0.len() {
            return malformed(format!("{what}: {n} elements cannot fit in {} bytes", self.0.len()));
        }
        Ok(n)
    }
    fn done(&self) -> Result<(), WireError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            malformed(format!("{} bytes left over", self.0.len()))
        }
    }
}

impl Message {
    fn encode(&self) -> (u32, Vec<u8>) {
        let mut e = Enc::default();
        let kind = match self {
            Message::Hello { protocol, drti, pid } => {
                e.u32(*protocol);
                e.bytes(drti.as_bytes());
                e.u32(*pid);
                HELLO
            }
            Message::Welcome { protocol, drti, llvm, pid } => {
                e.u32(*protocol);
                e.bytes(drti.as_bytes());
                e.bytes(llvm.as_bytes());
                e.u32(*pid);
                WELCOME
            }
            Message::PutModule { hash, compressed, raw_size, globals } => {
                e.hash(hash);
                e.bytes(compressed);
                e.u64(*raw_size);
                e.u32(globals.len() as u32);
                for g in globals {
                    e.bytes(g.as_bytes());
                }
                PUT_MODULE
            }
            Message::Compile(r) => {
                e.u64(r.id);
                e.u32(r.opt_level);
                e.u32(r.modules.len() as u32);
                for m in &r.modules {
                    e.hash(&m.hash);
                    e.u32(m.null_globals.len() as u32);
                    for &i in &m.null_globals {
                        e.u32(i);
                    }
                }
                e.fn_ref(&r.function);
                e.u32(r.sites.len() as u32);
                for s in &r.sites {
                    e.owner(&s.owner);
                    e.u32(s.ordinal);
                    e.u32(s.targets.len() as u32);
                    for t in &s.targets {
                        e.fn_ref(&t.function);
                        e.u32(t.slot as u32);
                    }
                    match s.sample_site {
                        None => e.u32(0),
                        Some(site) => {
                            e.u32(1);
                            e.u32(site);
                        }
                    }
                }
                e.u32(r.probes.len() as u32);
                for p in &r.probes {
                    e.owner(&p.owner);
                    e.u32(p.ordinal);
                    e.u32(p.site);
                }
                e.u32(r.countdown_static as u32);
                e.u32(r.inject_failure as u32);
                match &r.osr {
                    None => e.u32(0),
                    Some(o) => {
                        e.u32(1);
                        e.u32(o.header);
                        e.u32(o.live.len() as u32);
                        for &l in &o.live {
                            e.u32(l);
                        }
                    }
                }
                COMPILE
            }
            Message::NeedModules { id, hashes } => {
                e.u64(*id);
                e.u32(hashes.len() as u32);
                for h in hashes {
                    e.hash(h);
                }
                NEED_MODULES
            }
            Message::Compiled(r) => {
                e.u64(r.id);
                for v in [r.phases.parse_ms, r.phases.bind_ms, r.phases.optimise_ms, r.phases.codegen_ms, r.phases.cpu_ms] {
                    e.f64(v);
                }
                match &r.outcome {
                    Outcome::Object { bytes, entry } => {
                        e.u32(OUTCOME_OBJECT);
                        e.bytes(bytes);
                        e.bytes(entry.as_bytes());
                    }
                    Outcome::Rejected { target, reason } => {
                        e.u32(OUTCOME_REJECTED);
                        e.u32(*target as u32);
                        e.bytes(reason.as_bytes());
                    }
                    Outcome::Failed { reason } => {
                        e.u32(OUTCOME_FAILED);
                        e.bytes(reason.as_bytes());
                    }
                }
                e.u32(r.messages.len() as u32);
                for (level, text) in &r.messages {
                    e.u32(*level);
                    e.bytes(text.as_bytes());
                }
                COMPILED
            }
            Message::Error { text } => {
                e.bytes(text.as_bytes());
                ERROR
            }
        };
        (kind, e.0)
    }

    fn decode(kind: u32, payload: &[u8]) -> Result<Message, WireError> {
        let mut d = Dec(payload);
        let m = match kind {
            HELLO => Message::Hello { protocol: d.u32("protocol")?, drti: d.text("drti version")?, pid: d.u32("pid")? },
            WELCOME => Message::Welcome { protocol: d.u32("protocol")?, drti: d.text("drti version")?, llvm: d.text("llvm version")?, pid: d.u32("pid")? },
            PUT_MODULE => {
                let hash = d.hash("module hash")?;
                let compressed = d.bytes("bitcode")?;
                let raw_size = d.u64("bitcode size")?;
                if raw_size > crate::format::MAX_BITCODE_RAW {
                    return malformed(format!("bitcode of {raw_size} bytes"));
                }
                let n = d.count("global names", 8)?;
                let globals = (0..n).map(|_| d.text("global name")).collect::<Result<_, _>>()?;
                Message::PutModule { hash, compressed, raw_size, globals }
            }
            COMPILE => {
                let id = d.u64("id")?;
                let opt_level = d.u32("opt level")?;
                let nm = d.count("modules", 36)?;
                let mut modules = Vec::with_capacity(nm);
                for _ in 0..nm {
                    let hash = d.hash("module hash")?;
                    let nn = d.count("null globals", 4)?;
                    let null_globals = (0..nn).map(|_| d.u32("null global")).collect::<Result<_, _>>()?;
                    modules.push(ModuleUse { hash, null_globals });
                }
                let function = d.fn_ref("function")?;
                let n = d.count("sites", 16)?;
                let mut sites = Vec::with_capacity(n);
                for _ in 0..n {
                    let owner = d.owner("site owner")?;
                    let ordinal = d.u32("ordinal")?;
                    let nt = d.count("targets", 44)?;
                    let targets = (0..nt).map(|_| Ok(TargetReq { function: d.fn_ref("target")?, slot: d.u32("slot flag")? != 0 })).collect::<Result<_, WireError>>()?;
                    let sample_site = match d.u32("sample flag")? {
                        0 => None,
                        1 => Some(d.u32("sample site")?),
                        k => return malformed(format!("sample flag {k}")),
                    };
                    sites.push(SiteReq { owner, ordinal, targets, sample_site });
                }
                let np = d.count("probes", 12)?;
                let mut probes = Vec::with_capacity(np);
                for _ in 0..np {
                    probes.push(ProbeReq { owner: d.owner("probe owner")?, ordinal: d.u32("ordinal")?, site: d.u32("site")? });
                }
                let countdown_static = d.u32("countdown flag")? != 0;
                let inject_failure = d.u32("failure flag")? != 0;
                let osr = match d.u32("osr flag")? {
                    0 => None,
                    1 => {
                        let header = d.u32("osr header")?;
                        let n = d.count("osr live values", 4)?;
                        Some(OsrReq { header, live: (0..n).map(|_| d.u32("osr live value")).collect::<Result<_, _>>()? })
                    }
                    k => return malformed(format!("osr flag {k}")),
                };
                Message::Compile(CompileRequest { id, opt_level, modules, function, sites, probes, countdown_static, inject_failure, osr })
            }
            NEED_MODULES => {
                let id = d.u64("id")?;
                let n = d.count("hashes", 32)?;
                let hashes = (0..n).map(|_| d.hash("hash")).collect::<Result<_, _>>()?;
                Message::NeedModules { id, hashes }
            }
            COMPILED => {
                let id = d.u64("id")?;
                let phases = Phases { parse_ms: d.f64("phases")?, bind_ms: d.f64("phases")?, optimise_ms: d.f64("phases")?, codegen_ms: d.f64("phases")?, cpu_ms: d.f64("phases")? };
                let outcome = match d.u32("outcome")? {
                    OUTCOME_OBJECT => Outcome::Object { bytes: d.bytes("object")?, entry: d.text("entry symbol")? },
                    OUTCOME_REJECTED => Outcome::Rejected { target: d.u32("target")? as i32, reason: d.text("reason")? },
                    OUTCOME_FAILED => Outcome::Failed { reason: d.text("reason")? },
                    k => return malformed(format!("outcome {k}")),
                };
                let n = d.count("messages", 12)?;
                let messages = (0..n).map(|_| Ok((d.u32("level")?, d.text("message")?))).collect::<Result<_, WireError>>()?;
                Message::Compiled(CompileResult { id, phases, outcome, messages })
            }
            ERROR => Message::Error { text: d.text("error text")? },
            k => return malformed(format!("unknown message kind {k}")),
        };
        d.done()?;
        Ok(m)
    }

    /// Writes the message as one frame.
    pub fn write_to(&self, w: &mut impl Write) -> Result<(), WireError> {
        let (kind, payload) = self.encode();
        let mut frame = Vec::with_capacity(16 + payload.len());
        frame.extend_from_slice(&MAGIC);
        frame.extend_from_slice(&kind.to_le_bytes());
        frame.extend_from_slice(&(payload.len() as u64).to_le_bytes());
        frame.extend_from_slice(&payload);
        w.write_all(&frame)?;
        w.flush()?;
        Ok(())
    }

    /// Reads one frame. `Ok(None)`: the peer closed the stream between frames.
    pub fn read_from(r: &mut impl Read) -> Result<Option<Message>, WireError> {
        let mut header = [0u8; 16];
        let mut got = 0;
        while got < header.len() {
            match r.read(&mut header[got..]) {
                Ok(0) if got == 0 => return Ok(None),
                Ok(0) => return malformed("stream ended inside a frame header"),
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        if header[..4] != MAGIC {
            return malformed("bad frame magic");
        }
        let kind = u32::from_le_bytes(header[4..8].try_into().unwrap());
        let len = u64::from_le_bytes(header[8..16].try_into().unwrap());
        if len > MAX_PAYLOAD {
            return malformed(format!("payload of {len} bytes is over the {MAX_PAYLOAD}-byte limit"));
        }
        // Read in steps, so a frame that claims more than it sends costs no big allocation.
        let mut payload = Vec::new();
        let mut limited = r.take(len);
        limited.read_to_end(&mut payload)?;
        if payload.len() as u64 != len {
            return malformed(format!("stream ended after {} of {len} payload bytes", payload.len()));
        }
        Message::decode(kind, &payload).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(m: u8, name: &str) -> FnRef {
        FnRef { module: [m; 32], name: name.into() }
    }

    fn all() -> Vec<Message> {
        vec![
            Message::Hello { protocol: PROTOCOL_VERSION, drti: "0.1.0".into(), pid: 42 },
            Message::Welcome { protocol: PROTOCOL_VERSION, drti: "0.1.0".into(), llvm: "19.1.7".into(), pid: 7 },
            Message::PutModule { hash: [3; 32], compressed: vec![0x42, 0x43, 0xc0, 0xde], raw_size: 9, globals: vec!["run".into(), "a".into()] },
            Message::Compile(CompileRequest {
                id: 9,
                opt_level: 2,
                modules: vec![ModuleUse { hash: [1; 32], null_globals: vec![] }, ModuleUse { hash: [2; 32], null_globals: vec![4, 7] }],
                function: f(1, "run"),
                sites: vec![
                    SiteReq { owner: None, ordinal: 0, targets: vec![TargetReq { function: f(1, "a"), slot: false }, TargetReq { function: f(2, "b"), slot: true }], sample_site: None },
                    SiteReq { owner: Some(f(2, "b")), ordinal: 3, targets: vec![TargetReq { function: f(2, "c"), slot: false }], sample_site: Some(5) },
                    SiteReq { owner: None, ordinal: 1, targets: vec![], sample_site: None },
                ],
                probes: vec![ProbeReq { owner: Some(f(2, "b")), ordinal: 1, site: 6 }],
                countdown_static: true,
                inject_failure: false,
                osr: None,
            }),
            Message::Compile(CompileRequest {
                id: 10,
                opt_level: 2,
                modules: vec![ModuleUse { hash: [1; 32], null_globals: vec![] }],
                function: f(1, "main"),
                sites: vec![SiteReq { owner: None, ordinal: 2, targets: vec![TargetReq { function: f(1, "a"), slot: false }], sample_site: Some(1) }],
                probes: vec![],
                countdown_static: false,
                inject_failure: false,
                osr: Some(OsrReq { header: 3, live: vec![0x8000_0000, 0x8000_0002, 7, 12] }),
            }),
            Message::Compile(CompileRequest {
                id: 11,
                opt_level: 3,
                modules: vec![ModuleUse { hash: [1; 32], null_globals: vec![] }],
                function: f(1, "main"),
                sites: vec![],
                probes: vec![],
                countdown_static: false,
                inject_failure: false,
                osr: Some(OsrReq { header: 1, live: vec![] }),
            }),
            Message::NeedModules { id: 9, hashes: vec![[1; 32], [2; 32]] },
            Message::Compiled(CompileResult {
                id: 9,
                phases: Phases { parse_ms: 1.5, bind_ms: 0.25, optimise_ms: 3.0, codegen_ms: 4.0, cpu_ms: 8.5 },
                outcome: Outcome::Object { bytes: vec![0x7f, b'E', b'L', b'F'], entry: "drti.plus.1.run".into() },
                messages: vec![(3, "remark: loop not vectorized".into())],
            }),
            Message::Compiled(CompileResult { id: 10, phases: Phases::default(), outcome: Outcome::Rejected { target: -1, reason: "setjmp".into() }, messages: vec![] }),
            Message::Compiled(CompileResult { id: 11, phases: Phases::default(), outcome: Outcome::Failed { reason: "LLVM error".into() }, messages: vec![] }),
            Message::Error { text: "protocol 2 is not spoken here".into() },
        ]
    }

    #[test]
    fn every_message_round_trips_through_one_stream() {
        let mut stream = Vec::new();
        for m in all() {
            m.write_to(&mut stream).unwrap();
        }
        let mut r = &stream[..];
        for m in all() {
            assert_eq!(Message::read_from(&mut r).unwrap(), Some(m));
        }
        assert_eq!(Message::read_from(&mut r).unwrap(), None);
    }

    #[test]
    fn truncated_or_damaged_frames_are_errors_not_panics() {
        for m in all() {
            let mut frame = Vec::new();
            m.write_to(&mut frame).unwrap();
            // Every truncation inside the frame.
            for cut in 1..frame.len() {
                assert!(Message::read_from(&mut &frame[..cut]).is_err(), "{m:?} cut at {cut}");
            }
            // A payload one byte longer than its message.
            let mut long = frame.clone();
            long.push(0);
            let n = u64::from_le_bytes(long[8..16].try_into().unwrap()) + 1;
            long[8..16].copy_from_slice(&n.to_le_bytes());
            assert!(matches!(Message::read_from(&mut &long[..]), Err(WireError::Malformed(_))), "{m:?} with a byte left over");
        }
        let mut bad = Vec::new();
        Message::Error { text: "x".into() }.write_to(&mut bad).unwrap();
        bad[0] = b'X';
        assert!(matches!(Message::read_from(&mut &bad[..]), Err(WireError::Malformed(m)) if m.contains("magic")));
        let mut unknown = bad.clone();
        unknown[..4].copy_from_slice(&MAGIC);
        unknown[4] = 99;
        assert!(matches!(Message::read_from(&mut &unknown[..]), Err(WireError::Malformed(m)) if m.contains("kind 99")));
    }

    #[test]
    fn hostile_lengths_and_counts_are_refused_before_allocating() {
        let mut frame = Vec::new();
        frame.extend_from_slice(&MAGIC);
        frame.extend_from_slice(&COMPILE.to_le_bytes());
        frame.extend_from_slice(&(MAX_PAYLOAD + 1).to_le_bytes());
        assert!(matches!(Message::read_from(&mut &frame[..]), Err(WireError::Malformed(m)) if m.contains("limit")));
        // A NeedModules claiming four billion hashes in a 12-byte payload.
        let mut payload = Vec::new();
        payload.extend_from_slice(&1u64.to_le_bytes());
        payload.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(Message::decode(NEED_MODULES, &payload), Err(WireError::Malformed(m)) if m.contains("cannot fit")));
        // A byte string claiming more than the payload holds.
        let mut payload = Vec::new();
        payload.extend_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(Message::decode(ERROR, &payload), Err(WireError::Malformed(m)) if m.contains("claimed")));
    }
}
