//! One session: hello, then compile requests until the agent closes the socket.

use crate::{Compiler, Store};
use bitcode_embed::protocol::{Message, WireError, PROTOCOL_VERSION};
use std::io::{Read, Write};

/// Serves one session on `stream` until the peer closes it or breaks the protocol; returns
/// why it ended (None: a clean close).
pub fn serve<S: Read + Write>(stream: &mut S, store: &Store, compiler: &dyn Compiler) -> Option<String> {
    match Message::read_from(stream) {
        Ok(Some(Message::Hello { protocol, .. })) if protocol == PROTOCOL_VERSION => {
            let drti = std::env::current_exe().and_then(|exe| bitcode_embed::protocol::compiler_identity(&exe)).unwrap_or_else(|_| format!("drti {}", env!("CARGO_PKG_VERSION")));
            let welcome = Message::Welcome { protocol: PROTOCOL_VERSION, drti, llvm: compiler.llvm_version(), pid: std::process::id() };
            if let Err(e) = welcome.write_to(stream) {
                return Some(format!("cannot answer the hello: {e}"));
            }
        }
        Ok(Some(Message::Hello { protocol, .. })) => {
            let text = format!("protocol {protocol} is not spoken here (this server speaks {PROTOCOL_VERSION})");
            let _ = Message::Error { text: text.clone() }.write_to(stream);
            return Some(text);
        }
        Ok(None) => return None,
        Ok(Some(_)) => return refuse(stream, "the session must begin with a hello"),
        Err(e) => return Some(e.to_string()),
    }
    loop {
        let m = match Message::read_from(stream) {
            Ok(Some(m)) => m,
            Ok(None) => return None,
            Err(WireError::Malformed(m)) => return refuse(stream, &m),
            Err(e) => return Some(e.to_string()),
        };
        let reply = match m {
            Message::PutModule { hash, compressed, raw_size, globals } => match store.put(hash, &compressed, raw_size, globals) {
                Ok(()) => continue,
                Err(e) => return refuse(stream, &e),
            },
            Message::Compile(req) => {
                let missing = store.missing(req.modules.iter().map(|m| m.hash));
                if missing.is_empty() {
                    crate::test_hooks::before_compile();
                    Message::Compiled(compiler.compile(&req, &|h| store.get(h)))
                } else {
                    Message::NeedModules { id: req.id, hashes: missing }
                }
            }
            other => return refuse(stream, &format!("unexpected message {other:?}")),
        };
        if let Err(e) = reply.write_to(stream) {
            return Some(e.to_string());
        }
    }
}

/// Tells the peer why the session ends, and ends it.
fn refuse<S: Write>(stream: &mut S, why: &str) -> Option<String> {
    let _ = Message::Error { text: why.into() }.write_to(stream);
    Some(why.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcode_embed::protocol::*;
    use std::os::unix::net::UnixStream;
    use std::sync::Arc;

    struct Echo;
    impl Compiler for Echo {
        fn compile(&self, req: &CompileRequest, module: &dyn Fn(&Hash) -> Option<Arc<crate::StoredModule>>) -> CompileResult {
            let bytes = module(&req.function.module).map(|b| b.bitcode.clone()).unwrap_or_default();
            CompileResult { id: req.id, phases: Phases::default(), outcome: Outcome::Object { bytes, entry: req.function.name.clone() }, messages: vec![] }
        }
        fn llvm_version(&self) -> String {
            "test".into()
        }
    }

    fn exchange(script: Vec<Message>) -> (Vec<Message>, Option<String>) {
        let (mut client, mut server) = UnixStream::pair().unwrap();
        let store = Arc::new(Store::new(1 << 20));
        let t = std::thread::spawn(move || serve(&mut server, &store, &Echo));
        for m in &script {
            m.write_to(&mut client).unwrap();
        }
        client.shutdown(std::net::Shutdown::Write).unwrap();
        let mut got = Vec::new();
        while let Ok(Some(m)) = Message::read_from(&mut client) {
            got.push(m);
        }
        (got, t.join().unwrap())
    }

    fn hello(protocol: u32) -> Message {
        Message::Hello { protocol, drti: "t".into(), pid: 1 }
    }

    #[test]
    fn a_compile_asks_for_missing_modules_then_compiles() {
        let bitcode = b"module".to_vec();
        let compressed = zstd::bulk::compress(&bitcode, 3).unwrap();
        let hash = drti_cache::key::sha256(&compressed);
        let req = CompileRequest {
            id: 4,
            opt_level: 2,
            modules: vec![ModuleUse { hash, null_globals: vec![] }],
            function: FnRef { module: hash, name: "f".into() },
            sites: vec![],
            probes: vec![],
            countdown_static: false,
            inject_failure: false,
            osr: None,
        };
        let put = Message::PutModule { hash, compressed, raw_size: bitcode.len() as u64, globals: vec!["f".into()] };
        let (got, end) = exchange(vec![hello(PROTOCOL_VERSION), Message::Compile(req.clone()), put, Message::Compile(req)]);
        assert_eq!(end, None);
        assert!(matches!(&got[0], Message::Welcome { llvm, .. } if llvm == "test"));
        assert_eq!(got[1], Message::NeedModules { id: 4, hashes: vec![hash] });
        assert!(matches!(&got[2], Message::Compiled(r) if r.id == 4 && r.outcome == Outcome::Object { bytes: bitcode, entry: "f".into() }));
    }

    #[test]
    fn wrong_version_bad_module_and_no_hello_end_the_session_with_an_error() {
        let (got, end) = exchange(vec![hello(PROTOCOL_VERSION + 1)]);
        assert!(matches!(&got[..], [Message::Error { text }] if text.contains("not spoken")));
        assert!(end.unwrap().contains("not spoken"));
        let (got, end) = exchange(vec![hello(PROTOCOL_VERSION), Message::PutModule { hash: [0; 32], compressed: b"x".to_vec(), raw_size: 1, globals: vec![] }]);
        assert!(matches!(&got[1], Message::Error { text } if text.contains("hash")));
        assert!(end.is_some());
        let (got, _) = exchange(vec![Message::Error { text: "hi".into() }]);
        assert!(matches!(&got[..], [Message::Error { text }] if text.contains("hello")));
    }
}
