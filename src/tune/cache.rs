//! The caches in the user's cache directory: `tuning.json`, one tuning [`Entry`] per
//! (adapter, driver, shape class), and `peak.json`, one measured [`crate::peak::Peak`] per
//! (adapter, driver). Shared by every `qkv` run on the machine, so each is changed the way
//! cargo changes its package cache: under an exclusive lock on a file beside it
//! (`tuning.json.lock`), read again under the lock, the one entry merged in, and written
//! through a fresh temporary file renamed over the old one. Concurrent runs keep each other's
//! entries, a crash never leaves it half written, and nothing about it is silent: an
//! unreadable file is set aside and named, a malformed entry is dropped and named, and a
//! cache that cannot be written says so (the next run would tune, or measure, again).

use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

pub use super::Entry;

/// The entries of a cache file, and what was wrong with it.
#[derive(Debug)]
pub struct Parsed<E = Entry> {
    /// Entries that parsed, by key.
    pub entries: BTreeMap<String, E>,
    /// Entries dropped, each with why ("key: reason").
    pub dropped: Vec<String>,
    /// Why the file as a whole could not be read, when it could not.
    pub unreadable: Option<String>,
}

impl<E> Default for Parsed<E> {
    fn default() -> Self {
        Self {
            entries: BTreeMap::new(),
            dropped: Vec::new(),
            unreadable: None,
        }
    }
}

/// Parses the text of a tuning cache entry by entry: one malformed entry costs only itself.
/// Never panics, whatever the text.
pub fn parse(text: &str) -> Parsed {
    parse_as(text, "a tuning cache")
}

/// Parses the text of a cache of `E` entries (`what` names such a cache in the note on a
/// file that is not one).
pub fn parse_as<E: DeserializeOwned>(text: &str, what: &str) -> Parsed<E> {
    let mut out = Parsed::default();
    let value: serde_json::Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            out.unreadable = Some(format!("not JSON ({e})"));
            return out;
        }
    };
    let Some(entries) = value.get("entries").and_then(|e| e.as_object()) else {
        out.unreadable = Some(format!("not {what} (no \"entries\" object)"));
        return out;
    };
    for (key, entry) in entries {
        match E::deserialize(entry) {
            Ok(e) => {
                out.entries.insert(key.clone(), e);
            }
            Err(e) => {
                let shown: String = key.chars().take(120).collect();
                out.dropped.push(format!("{shown}: {e}"));
            }
        }
    }
    out
}

/// Whether `bytes` look like a cache file of qkv's, damaged or not: a JSON object whose
/// first key is "entries" (what [`Cache::store`] writes). Only such a file is ever set aside;
/// anything else at the cache's path is the user's.
fn looks_like_ours(bytes: &[u8]) -> bool {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(64)]);
    let t = text.trim_start();
    t.strip_prefix('{')
        .is_some_and(|rest| rest.trim_start().starts_with("\"entries\""))
}

#[derive(Serialize)]
struct Document<'a, E> {
    entries: &'a BTreeMap<String, E>,
}

/// The cache at `path`, of `E` entries.
#[derive(Debug, Clone)]
pub struct Cache<E = Entry> {
    path: PathBuf,
    /// "tuning cache", "peak cache": how notes name it.
    what: &'static str,
    /// What a run does when the cache cannot keep its result: "tune", "measure".
    redo: &'static str,
    entries: PhantomData<fn() -> E>,
}

impl Cache<Entry> {
    /// The tuning cache file at `path` (created on the first store).
    pub fn at(path: PathBuf) -> Self {
        Self::of(path, "tuning cache", "tune")
    }
}

impl<E: Serialize + DeserializeOwned> Cache<E> {
    /// The cache file at `path` (created on the first store), named `what` in notes; `redo`
    /// is what the next run does when this one cannot store its result.
    pub fn of(path: PathBuf, what: &'static str, redo: &'static str) -> Self {
        Self {
            path,
            what,
            redo,
            entries: PhantomData,
        }
    }

    /// Where it lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the entries, with notes on anything wrong (for the report). A file that does
    /// not parse at all is left where it is; the next [`store`](Self::store) sets it aside.
    pub fn load(&self) -> (BTreeMap<String, E>, Vec<String>) {
        if let Ok(m) = std::fs::symlink_metadata(&self.path) {
            if !m.file_type().is_file() {
                return (
                    BTreeMap::new(),
                    vec![format!(
                        "{} is not a regular file; the {} there is not used",
                        self.path.display(),
                        self.what
                    )],
                );
            }
        }
        let text = match std::fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Default::default(),
            Err(e) => {
                return (
                    BTreeMap::new(),
                    vec![format!(
                        "the {} {} cannot be read ({e}); going on as if it were empty",
                        self.what,
                        self.path.display()
                    )],
                )
            }
        };
        let parsed = self.parse(&text);
        let mut notes = Vec::new();
        if let Some(why) = &parsed.unreadable {
            notes.push(if looks_like_ours(&text) {
                format!(
                    "the {} {} is unreadable: {why}; it will be set aside as {} when this run \
                     stores its result",
                    self.what,
                    self.path.display(),
                    self.aside().display()
                )
            } else {
                format!(
                    "{} is not a {} qkv wrote ({why}); it is left as it is and nothing will be \
                     stored there: set QKV_CACHE_DIR to a directory of qkv's own",
                    self.path.display(),
                    self.what
                )
            });
        }
        for d in &parsed.dropped {
            notes.push(format!(
                "the {} {} has a malformed entry, dropped: {d}",
                self.what,
                self.path.display()
            ));
        }
        (parsed.entries, notes)
    }

    fn parse(&self, bytes: &[u8]) -> Parsed<E> {
        parse_as(&String::from_utf8_lossy(bytes), &format!("a {}", self.what))
    }

    fn aside(&self) -> PathBuf {
        self.path.with_extension("json.corrupt")
    }

    /// Stores `entry` under `key`, keeping every other entry, including those other runs
    /// stored since this one loaded. Returns notes for the report (a file set aside), or
    /// why the cache could not be written.
    pub fn store(&self, key: &str, entry: E) -> Result<Vec<String>, String> {
        let dir = self
            .path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let fail = |what: &str, e: std::io::Error| {
            format!(
                "the {} {} could not be written ({what}: {e}); the next run will {} again",
                self.what,
                self.path.display(),
                self.redo
            )
        };
        std::fs::create_dir_all(dir).map_err(|e| fail("creating its directory", e))?;
        let lock_path = self.path.with_extension("json.lock");
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| fail("opening its lock file", e))?;
        // Held until `lock` is dropped at the end of this function; the kernel releases it
        // if the process dies.
        lock.lock().map_err(|e| fail("locking it", e))?;

        let mut notes = Vec::new();
        // Only a regular file is read or replaced: a FIFO would block the read, /dev/zero
        // would never end it, and the rename below would replace a link or a device.
        if let Ok(m) = std::fs::symlink_metadata(&self.path) {
            if !m.file_type().is_file() {
                return Err(format!(
                    "{} is not a regular file; it was left as it is, so the next run will {} \
                     again (set QKV_CACHE_DIR to a directory of qkv's own)",
                    self.path.display(),
                    self.redo
                ));
            }
        }
        let mut entries = match std::fs::read(&self.path) {
            Ok(bytes) => {
                let parsed = self.parse(&bytes);
                if parsed.unreadable.is_some() && !looks_like_ours(&bytes) {
                    // Never rename or replace a file this tool did not write.
                    return Err(format!(
                        "{} is not a {} qkv wrote; it was left as it is, so the next run will \
                         {} again (set QKV_CACHE_DIR to a directory of qkv's own)",
                        self.path.display(),
                        self.what,
                        self.redo
                    ));
                }
                if parsed.unreadable.is_some() {
                    std::fs::rename(&self.path, self.aside())
                        .map_err(|e| fail("setting the unreadable file aside", e))?;
                    notes.push(format!(
                        "the unreadable {} was set aside as {}",
                        self.what,
                        self.aside().display()
                    ));
                }
                parsed.entries
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(fail("reading it again", e)),
        };
        entries.insert(key.to_string(), entry);
        let text = serde_json::to_string_pretty(&Document { entries: &entries })
            .expect("the cache serializes");
        let name = self
            .path
            .file_name()
            .map_or("cache".into(), |n| n.to_string_lossy().into_owned());
        let mut tmp = tempfile::Builder::new()
            .prefix(&format!(".{name}."))
            .suffix(".tmp")
            .tempfile_in(dir)
            .map_err(|e| fail("creating a temporary file", e))?;
        tmp.write_all(text.as_bytes())
            .and_then(|()| tmp.as_file().sync_all())
            .map_err(|e| fail("writing", e))?;
        tmp.persist(&self.path)
            .map_err(|e| fail("renaming into place", e.error))?;
        drop(lock);
        Ok(notes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(config: &str) -> Entry {
        Entry {
            config: config.into(),
            shader_hash: "0123".into(),
            proxy: "tokens 32".into(),
            trials: Vec::new(),
            margin: None,
        }
    }

    #[test]
    fn one_bad_entry_costs_only_itself() {
        let text = r#"{"entries": {"a": {"config": "naive", "shader_hash": "1", "proxy": "p",
            "trials": []}, "b": {"config": 7}}}"#;
        let p = parse(text);
        assert_eq!(p.entries.keys().collect::<Vec<_>>(), ["a"]);
        assert!(p.dropped[0].starts_with("b: "), "{:?}", p.dropped);
        assert!(p.unreadable.is_none());
        for bad in ["", "{", "[]", "{\"entries\": 5}", "\u{0}garbage"] {
            assert!(parse(bad).unreadable.is_some(), "{bad:?}");
        }
    }

    #[test]
    fn stores_merge_and_bad_files_are_set_aside_and_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tuning.json");
        // Two caches loaded before either stored: both entries survive.
        let (a, b) = (Cache::at(path.clone()), Cache::at(path.clone()));
        a.store("one", entry("naive")).unwrap();
        b.store("two", entry("tiled")).unwrap();
        let (entries, notes) = a.load();
        assert_eq!(entries.len(), 2, "{notes:?}");

        std::fs::write(&path, "{\"entries\": {\"one\": {\"config\": ").unwrap();
        let (entries, notes) = a.load();
        assert!(entries.is_empty());
        assert!(notes[0].contains("is unreadable"), "{notes:?}");
        let notes = a.store("three", entry("direct(wg=32)")).unwrap();
        assert!(notes[0].contains("set aside"), "{notes:?}");
        assert!(path.with_extension("json.corrupt").exists());
        assert_eq!(a.load().0.len(), 1);
    }

    #[test]
    fn concurrent_stores_keep_every_entry() {
        // Issue #11, item 10: concurrent runs lost each other's entries (each wrote back
        // what it had loaded).
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tuning.json");
        std::thread::scope(|s| {
            for i in 0..8 {
                let c = Cache::at(path.clone());
                s.spawn(move || c.store(&format!("key {i}"), entry("naive")).unwrap());
            }
        });
        let (entries, notes) = Cache::at(path).load();
        assert_eq!(entries.len(), 8, "{notes:?}");
    }

    #[test]
    fn a_file_qkv_did_not_write_is_never_renamed_item_7() {
        // Issue #22, item 7: a user's own tuning.json was renamed to tuning.json.corrupt.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tuning.json");
        std::fs::write(&path, "my own notes about tuning").unwrap();
        let c = Cache::at(path.clone());
        let (entries, notes) = c.load();
        assert!(entries.is_empty());
        assert!(
            notes[0].contains("not a tuning cache qkv wrote"),
            "{notes:?}"
        );
        let e = c.store("k", entry("naive")).unwrap_err();
        assert!(e.contains("left as it is"), "{e}");
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "my own notes about tuning"
        );
        assert!(!path.with_extension("json.corrupt").exists());
    }

    #[cfg(unix)]
    #[test]
    fn a_cache_path_that_is_a_link_or_fifo_is_neither_read_nor_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tuning.json");
        std::os::unix::fs::symlink("/dev/zero", &path).unwrap();
        let c = Cache::at(path.clone());
        assert!(c.load().1[0].contains("not a regular file"));
        let e = c.store("k", entry("naive")).unwrap_err();
        assert!(e.contains("not a regular file"), "{e}");
        assert!(std::fs::symlink_metadata(&path)
            .unwrap()
            .file_type()
            .is_symlink());
    }

    #[cfg(unix)]
    #[test]
    fn an_unwritable_cache_says_so() {
        // A cache whose directory is a file cannot be written, as root or not.
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("file"), b"x").unwrap();
        let c = Cache::at(dir.path().join("file").join("tuning.json"));
        let e = c.store("k", entry("naive")).unwrap_err();
        assert!(
            e.contains("could not be written") && e.contains("tune again"),
            "{e}"
        );
    }
}
