//! The cache directory: lookups, atomic inserts, eviction, statistics.

use crate::entry;
use crate::key::Key;
use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

/// Subdirectory of this layout version: a future layout uses another one.
const LAYOUT: &str = "v1";
/// Suffix of entry files.
const ENTRY_SUFFIX: &str = ".entry";
/// Prefix of a writer's temporary file.
const TMP_PREFIX: &str = ".tmp-";
/// A temporary file older than this belongs to a writer that died: eviction removes it.
const STALE_TMP: Duration = Duration::from_secs(600);

/// An open cache directory.
#[derive(Debug)]
pub struct Cache {
    dir: PathBuf,
    root: PathBuf,
    max_bytes: u64,
}

/// The result of a lookup.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup {
    /// The payload stored under the key.
    Hit(Vec<u8>),
    /// Nothing stored under the key.
    Miss,
    /// An entry was there but is not usable (damaged, or not trusted); a damaged one was
    /// removed. The caller compiles as on a miss.
    Corrupt(String),
}

/// What `drti cache stats` prints.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Entries.
    pub entries: u64,
    /// Bytes in entries.
    pub bytes: u64,
    /// Temporary files of writers (running, or dead if old).
    pub temporaries: u64,
}

/// Whether `m` (of a directory or entry) could only have been written by this user: owned
/// by the effective user and writable by no group and no one else.
fn trusted(m: &fs::Metadata) -> Result<(), String> {
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    if m.uid() != me {
        return Err(format!("owned by uid {}, not by this user (uid {me})", m.uid()));
    }
    if m.mode() & 0o022 != 0 {
        return Err(format!("writable by others (mode {:o})", m.mode() & 0o7777));
    }
    Ok(())
}

/// Creates `dir` (and its parents) with mode 0700 where missing, and checks it is a
/// trusted directory.
fn trusted_dir(dir: &Path) -> Result<(), String> {
    fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let m = fs::metadata(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    if !m.is_dir() {
        return Err(format!("{} is not a directory", dir.display()));
    }
    trusted(&m).map_err(|e| format!("refusing cache directory {}: {e}", dir.display()))
}

impl Cache {
    /// Opens (creating if needed) the cache in `dir`, bounded to `max_bytes`.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Cache, String> {
        trusted_dir(dir)?;
        let root = dir.join(LAYOUT);
        trusted_dir(&root)?;
        Ok(Cache { dir: dir.to_owned(), root, max_bytes })
    }

    /// The directory given to [`Cache::open`].
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The size bound.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    fn shard(&self, key: &Key) -> PathBuf {
        self.root.join(&key.hex()[..2])
    }

    fn path_of(&self, key: &Key) -> PathBuf {
        self.shard(key).join(format!("{}{ENTRY_SUFFIX}", key.hex()))
    }

    /// The payload stored under `key`. A hit marks the entry as recently used.
    pub fn get(&self, key: &Key) -> Lookup {
        let path = self.path_of(key);
        let mut file = match OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC).open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound => return Lookup::Miss,
            Err(e) => return Lookup::Corrupt(format!("cannot open {}: {e}", path.display())),
        };
        let meta = match file.metadata() {
            Ok(m) => m,
            Err(e) => return Lookup::Corrupt(format!("cannot stat {}: {e}", path.display())),
        };
        if !meta.is_file() {
            return Lookup::Corrupt(format!("{} is not a regular file", path.display()));
        }
        if let Err(e) = trusted(&meta) {
            // Not ours to delete: left alone, and never used.
            return Lookup::Corrupt(format!("untrusted entry {}: {e}", path.display()));
        }
        let mut bytes = Vec::with_capacity(meta.len() as usize);
        if let Err(e) = file.read_to_end(&mut bytes) {
            return Lookup::Corrupt(format!("cannot read {}: {e}", path.display()));
        }
        match entry::decode(key, &bytes) {
            Ok(payload) => {
                // Recently used: eviction goes by modification time. A failure only makes
                // the entry look older.
                let _ = file.set_modified(SystemTime::now());
                Lookup::Hit(payload.to_vec())
            }
            Err(why) => {
                let _ = fs::remove_file(&path);
                Lookup::Corrupt(format!("damaged entry {} removed: {why}", path.display()))
            }
        }
    }

    /// Stores `payload` under `key` (replacing any entry), then evicts down to the size bound.
    pub fn put(&self, key: &Key, payload: &[u8]) -> Result<(), String> {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let shard = self.shard(key);
        match fs::DirBuilder::new().mode(0o700).create(&shard) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => return Err(format!("cannot create {}: {e}", shard.display())),
        }
        let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
        let tmp = shard.join(format!("{TMP_PREFIX}{}-{}-{nanos}", std::process::id(), SEQ.fetch_add(1, Ordering::Relaxed)));
        let write = || -> std::io::Result<()> {
            let mut f = OpenOptions::new().write(true).create_new(true).mode(0o600).custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC).open(&tmp)?;
            f.write_all(&entry::encode(key, payload))?;
            // rename(2) replaces the entry atomically: readers see all of one version.
            fs::rename(&tmp, self.path_of(key))
        };
        if let Err(e) = write() {
            let _ = fs::remove_file(&tmp);
            return Err(format!("cannot store {}: {e}", self.path_of(key).display()));
        }
        self.evict().map(|_| ())
    }

    /// Every entry and temporary file: (path, size, modification time, is an entry).
    fn files(&self) -> Vec<(PathBuf, u64, SystemTime, bool)> {
        let mut out = Vec::new();
        let Ok(shards) = fs::read_dir(&self.root) else { return out };
        for shard in shards.flatten() {
            let name = shard.file_name();
            let name = name.to_string_lossy();
            if name.len() != 2 || !name.bytes().all(|b| b.is_ascii_hexdigit()) {
                continue;
            }
            let Ok(files) = fs::read_dir(shard.path()) else { continue };
            for f in files.flatten() {
                let fname = f.file_name().to_string_lossy().into_owned();
                let is_entry = fname.ends_with(ENTRY_SUFFIX);
                if !is_entry && !fname.starts_with(TMP_PREFIX) {
                    continue;
                }
                // Another process may remove it meanwhile: then it is simply not listed.
                let Ok(m) = f.path().symlink_metadata() else { continue };
                if m.is_file() {
                    out.push((f.path(), m.len(), m.modified().unwrap_or(SystemTime::UNIX_EPOCH), is_entry));
                }
            }
        }
        out
    }

    /// Removes stale temporaries, then, if the entries exceed the size bound, the least
    /// recently used ones until they take at most 90% of it. Returns the entries removed.
    pub fn evict(&self) -> Result<u64, String> {
        let now = SystemTime::now();
        let mut entries = Vec::new();
        for (path, size, mtime, is_entry) in self.files() {
            if is_entry {
                entries.push((mtime, size, path));
            } else if now.duration_since(mtime).is_ok_and(|age| age > STALE_TMP) {
                let _ = fs::remove_file(&path);
            }
        }
        let mut total: u64 = entries.iter().map(|e| e.1).sum();
        if total <= self.max_bytes {
            return Ok(0);
        }
        entries.sort();
        let target = self.max_bytes / 10 * 9;
        let mut removed = 0;
        for (_, size, path) in entries {
            if total <= target {
                break;
            }
            match fs::remove_file(&path) {
                Ok(()) => removed += 1,
                // Another process evicted it first.
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(format!("cannot evict {}: {e}", path.display())),
            }
            total = total.saturating_sub(size);
        }
        Ok(removed)
    }

    /// Entries and bytes now.
    pub fn stats(&self) -> Stats {
        let mut s = Stats::default();
        for (_, size, _, is_entry) in self.files() {
            if is_entry {
                s.entries += 1;
                s.bytes += size;
            } else {
                s.temporaries += 1;
            }
        }
        s
    }

    /// Reads every entry whole and checks it (name, header, key, length, checksum, owner)
    /// as a lookup would, without marking any as used. Returns the number of good entries
    /// and a line per bad one; bad ones are removed when they are ours to remove.
    pub fn verify(&self) -> (u64, Vec<String>) {
        let (mut good, mut bad) = (0, Vec::new());
        for (path, _, _, is_entry) in self.files() {
            if !is_entry {
                continue;
            }
            let name = path.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_suffix(ENTRY_SUFFIX)).and_then(Key::from_hex);
            let checked = (|| -> Result<(), String> {
                let key = name.ok_or("not named after a key")?;
                let meta = fs::symlink_metadata(&path).map_err(|e| e.to_string())?;
                if !meta.is_file() {
                    return Err("not a regular file".into());
                }
                trusted(&meta).map_err(|e| format!("untrusted: {e}"))?;
                let bytes = fs::read(&path).map_err(|e| e.to_string())?;
                entry::decode(&key, &bytes).map(|_| ())
            })();
            match checked {
                Ok(()) => good += 1,
                Err(why) => {
                    if !why.starts_with("untrusted") {
                        let _ = fs::remove_file(&path);
                    }
                    bad.push(format!("{}: {why}", path.display()));
                }
            }
        }
        (good, bad)
    }

    /// Removes every entry and temporary file; returns how many entries there were.
    pub fn clear(&self) -> Result<u64, String> {
        let mut removed = 0;
        for (path, _, _, is_entry) in self.files() {
            match fs::remove_file(&path) {
                Ok(()) => removed += is_entry as u64,
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(format!("cannot remove {}: {e}", path.display())),
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::KeyBuilder;
    use std::os::unix::fs::PermissionsExt;

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("drti-cache-test-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    fn key(i: u32) -> Key {
        let mut b = KeyBuilder::new("test");
        b.field("i", &i.to_le_bytes());
        b.finish()
    }

    #[test]
    fn put_then_get_and_a_miss() {
        let d = scratch("basic");
        let c = Cache::open(&d, 1 << 20).unwrap();
        assert_eq!(c.get(&key(1)), Lookup::Miss);
        c.put(&key(1), b"object code").unwrap();
        assert_eq!(c.get(&key(1)), Lookup::Hit(b"object code".to_vec()));
        c.put(&key(1), b"newer").unwrap();
        assert_eq!(c.get(&key(1)), Lookup::Hit(b"newer".to_vec()));
        assert_eq!(c.stats(), Stats { entries: 1, bytes: (entry::HEADER + 5) as u64, temporaries: 0 });
        assert_eq!(fs::metadata(&d).unwrap().mode() & 0o777, 0o700);
        assert_eq!(c.clear().unwrap(), 1);
        assert_eq!(c.get(&key(1)), Lookup::Miss);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn verify_counts_good_entries_and_removes_damaged_ones() {
        let d = scratch("verify");
        let c = Cache::open(&d, 1 << 20).unwrap();
        for i in 0..3 {
            c.put(&key(i), b"code").unwrap();
        }
        assert_eq!(c.verify(), (3, vec![]));
        let path = c.path_of(&key(1));
        let mut bytes = fs::read(&path).unwrap();
        *bytes.last_mut().unwrap() ^= 1;
        fs::write(&path, &bytes).unwrap();
        let (good, bad) = c.verify();
        assert!(good == 2 && bad.len() == 1 && bad[0].contains(&key(1).hex()), "{bad:?}");
        assert!(!path.exists());
        assert_eq!(c.verify(), (2, vec![]));
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_damaged_entry_is_reported_removed_and_then_missed() {
        let d = scratch("damaged");
        let c = Cache::open(&d, 1 << 20).unwrap();
        c.put(&key(2), b"0123456789").unwrap();
        let path = c.path_of(&key(2));
        let bytes = fs::read(&path).unwrap();
        fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
        assert!(matches!(c.get(&key(2)), Lookup::Corrupt(why) if why.contains("header says")));
        assert!(!path.exists());
        assert_eq!(c.get(&key(2)), Lookup::Miss);
        // An entry file that holds another key's entry (a stray copy) is not trusted either.
        c.put(&key(3), b"three").unwrap();
        fs::create_dir_all(c.shard(&key(4))).unwrap();
        fs::copy(c.path_of(&key(3)), c.path_of(&key(4))).unwrap();
        assert!(matches!(c.get(&key(4)), Lookup::Corrupt(why) if why.contains("another key")));
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn eviction_keeps_the_bound_and_the_recently_used() {
        let d = scratch("evict");
        let payload = vec![7u8; 1000];
        let entry_size = (entry::HEADER + payload.len()) as u64;
        let c = Cache::open(&d, entry_size * 10).unwrap();
        for i in 0..10 {
            c.put(&key(i), &payload).unwrap();
            // Distinct modification times, oldest first.
            let t = SystemTime::now() - Duration::from_secs(1000 - i as u64);
            OpenOptions::new().write(true).open(c.path_of(&key(i))).unwrap().set_modified(t).unwrap();
        }
        assert_eq!(c.stats().entries, 10);
        // Key 0 is the oldest, but a hit makes it the most recently used.
        assert!(matches!(c.get(&key(0)), Lookup::Hit(_)));
        c.put(&key(10), &payload).unwrap();
        let s = c.stats();
        assert!(s.bytes <= entry_size * 9, "{s:?}");
        assert!(matches!(c.get(&key(0)), Lookup::Hit(_)), "the entry just used was evicted");
        assert_eq!(c.get(&key(1)), Lookup::Miss, "the least recently used entry stayed");
        assert!(matches!(c.get(&key(10)), Lookup::Hit(_)));
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_directory_others_can_write_is_refused() {
        let d = scratch("untrusted");
        fs::create_dir_all(&d).unwrap();
        fs::set_permissions(&d, fs::Permissions::from_mode(0o777)).unwrap();
        let err = Cache::open(&d, 1 << 20).unwrap_err();
        assert!(err.contains("writable by others"), "{err}");
        fs::set_permissions(&d, fs::Permissions::from_mode(0o700)).unwrap();
        let c = Cache::open(&d, 1 << 20).unwrap();
        c.put(&key(5), b"five").unwrap();
        fs::set_permissions(c.path_of(&key(5)), fs::Permissions::from_mode(0o666)).unwrap();
        assert!(matches!(c.get(&key(5)), Lookup::Corrupt(why) if why.contains("untrusted")));
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn concurrent_writers_and_readers_see_only_whole_entries() {
        let d = scratch("concurrent");
        let c = std::sync::Arc::new(Cache::open(&d, 1 << 30).unwrap());
        let threads: Vec<_> = (0..8u8)
            .map(|t| {
                let c = c.clone();
                std::thread::spawn(move || {
                    for round in 0..200u32 {
                        let k = key(round % 16);
                        // Every writer of a key writes a payload derived from the key only
                        // in its length, with its own fill byte: a reader must never see a
                        // mix of two writers.
                        let payload = vec![t; 4096 + (round % 16) as usize];
                        c.put(&k, &payload).unwrap();
                        match c.get(&k) {
                            Lookup::Hit(p) => {
                                assert_eq!(p.len(), payload.len());
                                assert!(p.iter().all(|&b| b == p[0]), "torn entry");
                            }
                            other => panic!("after a put: {other:?}"),
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let s = c.stats();
        assert_eq!((s.entries, s.temporaries), (16, 0), "{s:?}");
        fs::remove_dir_all(&d).unwrap();
    }
}
