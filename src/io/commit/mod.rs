//! Writing output files so that nothing the user has is lost or half replaced, whatever
//! happens: another run racing into the same directory, a full disk, a signal, a power cut.
//!
//! The scheme is git's and rsync's, made into one transaction for the three outputs:
//!
//! - **One run per directory.** [`OutputDir::open`] takes an exclusive lock on
//!   `DIR/.qkv-lock` (an OS file lock, released by the kernel if the process dies, as cargo
//!   locks its package cache) and holds it to the end. A second run into the same directory
//!   is refused at once.
//! - **Partial files under unpredictable names, created exclusively** (`O_CREAT|O_EXCL`, which
//!   never follows a symlink): `.q.npy.<16 random hex>.qkv-partial`. Nothing is ever written
//!   through a name someone else could have planted.
//! - **No replacing without being asked.** A partial file is put in place with `link()` +
//!   `unlink()`, which fails if the final name exists by then (git's way of finalizing an
//!   object file), so a file that appeared during the run is never overwritten.
//! - **Three renames as one step.** Before the first rename a journal (`DIR/.qkv-commit`)
//!   names every partial file and every replaced file's backup (`.q.npy.<random>.qkv-old`).
//!   If a rename fails the earlier ones are undone at once; if the process dies in between,
//!   the next run into the directory reads the journal and restores the previous files. The
//!   journal's removal is the commit point; the backups go after it.
//! - **Signals.** Every partial file is registered in this module while it exists;
//!   [`remove_partials`] (called by the CLI's SIGINT/SIGTERM/SIGHUP handler thread) waits out
//!   a commit in progress, then removes them all. After SIGKILL, which nothing can catch,
//!   [`OutputDir::open`] removes the partial files and backups an interrupted run left
//!   behind, and names them in [`OutputDir::notes`].

mod recover;

pub use recover::is_stale_name;

use crate::error::{Error, Result};
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

/// What every partial file's name ends with.
pub const PARTIAL_SUFFIX: &str = ".qkv-partial";
/// What the backup of a replaced file is named with while a commit runs.
const OLD_SUFFIX: &str = ".qkv-old";
/// The journal of a commit in progress.
pub const JOURNAL: &str = ".qkv-commit";
/// The lock file of a directory being written.
pub const LOCK: &str = ".qkv-lock";

/// Paths to remove if the process is interrupted: live partial files and lock files. A
/// commit holds the lock for its whole length, so a signal waits for it to finish.
static LIVE: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

fn live() -> MutexGuard<'static, Vec<PathBuf>> {
    LIVE.lock().unwrap_or_else(|p| p.into_inner())
}

/// Removes every partial file (and lock file) of this process, after waiting for a commit
/// in progress to finish, and keeps new ones from being created: for a signal handler that
/// then ends the process. Returns how many files it removed.
pub fn remove_partials() -> usize {
    let mut guard = live();
    let mut removed = 0;
    for p in guard.drain(..) {
        if std::fs::remove_file(&p).is_ok() && !p.ends_with(LOCK) {
            removed += 1;
        }
    }
    // The process is about to end: hold the lock so that no partial file is created after.
    std::mem::forget(guard);
    removed
}

fn register(p: &Path) {
    live().push(p.to_path_buf());
}

fn unregister(list: &mut Vec<PathBuf>, p: &Path) {
    list.retain(|q| q != p);
}

fn io(what: String) -> impl FnOnce(std::io::Error) -> Error {
    move |e| Error::io(what, e)
}

/// A fresh name `.{name}.{16 hex}{suffix}` in `dir`.
fn random_name(dir: &Path, name: &str, suffix: &str) -> PathBuf {
    let r: u64 = rand::rng().random();
    dir.join(format!(".{name}.{r:016x}{suffix}"))
}

/// Creates a new file exclusively: fails if anything, a symlink included, has the name.
fn create_new(path: &Path) -> std::io::Result<File> {
    let mut o = OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o666);
    }
    o.open(path)
}

/// Puts `from` at `to` unless `to` exists (then `AlreadyExists`), atomically: a hard link,
/// then the old name removed. On a file system without hard links, a rename after a check,
/// which a racing writer could slip between.
fn rename_noreplace(from: &Path, to: &Path) -> std::io::Result<()> {
    match std::fs::hard_link(from, to) {
        Ok(()) => std::fs::remove_file(from),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Err(e),
        Err(_) => {
            if std::fs::symlink_metadata(to).is_ok() {
                return Err(ErrorKind::AlreadyExists.into());
            }
            std::fs::rename(from, to)
        }
    }
}

/// Makes renames in `dir` durable (a no-op where directories cannot be synced).
fn sync_dir(dir: &Path) {
    #[cfg(unix)]
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    #[cfg(not(unix))]
    let _ = dir;
}

/// One output's entry in the journal.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct JournalEntry {
    /// The final name, in the directory.
    name: String,
    /// The partial file's name.
    partial: String,
    /// The backup name of the file it replaces, when one existed.
    old: Option<String>,
    /// The partial file's (device, inode), where the platform has them: after its rename
    /// only the final name is left, and recovery removes that file only if it is this one.
    #[serde(default)]
    id: Option<(u64, u64)>,
    /// The (device, inode) of the file it replaces, moved to `old`: recovery restores a
    /// backup only if it is this file.
    #[serde(default)]
    old_id: Option<(u64, u64)>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Journal {
    entries: Vec<JournalEntry>,
}

/// A directory being written into by this process alone.
#[derive(Debug)]
pub struct OutputDir {
    dir: PathBuf,
    lock_path: PathBuf,
    _lock: File,
    /// Whether [`open`](Self::open) created the directory (removed again if left empty).
    created: bool,
    /// What opening found and did: partial files of an interrupted run removed, a commit
    /// rolled back. For the report.
    pub notes: Vec<String>,
}

/// A partial file being written, removed when dropped unless committed.
#[derive(Debug)]
pub struct Partial {
    name: String,
    path: PathBuf,
    file: Option<File>,
}

impl Partial {
    /// The file, to write into (through a buffer) and hand back to [`OutputDir::commit`].
    pub fn take_file(&mut self) -> File {
        self.file.take().expect("the file is taken once")
    }

    /// Its path, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The name it is put in place under.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for Partial {
    fn drop(&mut self) {
        let mut list = live();
        if list.contains(&self.path) {
            let _ = std::fs::remove_file(&self.path);
            unregister(&mut list, &self.path);
        }
    }
}

impl OutputDir {
    /// Creates `dir` if needed, locks it against other runs, finishes what an interrupted
    /// run left (a commit rolled back, partial files removed: see [`notes`](Self::notes)).
    pub fn open(dir: &Path) -> Result<Self> {
        let created = match std::fs::metadata(dir) {
            Ok(m) if !m.is_dir() => {
                return Err(Error::Input(format!(
                    "`out` {} exists and is not a directory",
                    dir.display()
                )))
            }
            Ok(_) => false,
            Err(_) => {
                std::fs::create_dir_all(dir)
                    .map_err(io(format!("cannot create the directory {}", dir.display())))?;
                true
            }
        };
        let lock_path = dir.join(LOCK);
        let lock = lock_dir(dir, &lock_path)?;
        let mut out = Self {
            dir: dir.to_path_buf(),
            lock_path,
            _lock: lock,
            created,
            notes: Vec::new(),
        };
        out.recover()?;
        out.sweep()?;
        Ok(out)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Refuses outputs that would destroy an input: `inputs` compared with each final name by
    /// file identity (device and inode), so a hard link or a symlink is caught too.
    pub fn check_not_inputs(&self, names: &[&str], inputs: &[(&str, &Path)]) -> Result<()> {
        for name in names {
            let out = self.dir.join(name);
            // Only a regular file can be an input here (others are refused by check_free);
            // same_file opens both, and opening a FIFO would wait.
            if !std::fs::metadata(&out).is_ok_and(|m| m.is_file()) {
                continue;
            }
            for (what, input) in inputs {
                if same_file::is_same_file(input, &out).unwrap_or(false) {
                    return Err(Error::Input(format!(
                        "{what} {} is the same file as {}, which this run would replace; \
                         choose another `out`",
                        input.display(),
                        out.display()
                    )));
                }
            }
        }
        Ok(())
    }

    /// Refuses to go on if `names` exist and `force` is not given.
    pub fn check_free(&self, names: &[&str], force: bool) -> Result<()> {
        // Only regular files are ever replaced: a directory, a FIFO, a device or a symlink
        // at an output's name is refused, --force or not.
        for n in names {
            not_special(&self.dir.join(n))?;
        }
        if force {
            return Ok(());
        }
        let existing: Vec<String> = names
            .iter()
            .map(|n| self.dir.join(n))
            .filter(|p| std::fs::symlink_metadata(p).is_ok())
            .map(|p| p.display().to_string())
            .collect();
        if existing.is_empty() {
            return Ok(());
        }
        Err(Error::Input(format!(
            "{} already exist{}; pass `force` to overwrite",
            existing.join(", "),
            if existing.len() == 1 { "s" } else { "" }
        )))
    }

    /// A new partial file for output `name`.
    pub fn partial(&self, name: &str) -> Result<Partial> {
        let mut list = live();
        loop {
            let path = random_name(&self.dir, name, PARTIAL_SUFFIX);
            match create_new(&path) {
                Ok(file) => {
                    list.push(path.clone());
                    return Ok(Partial {
                        name: name.to_string(),
                        path,
                        file: Some(file),
                    });
                }
                Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
                Err(e) => {
                    return Err(Error::io(
                        format!("cannot create a file in {}", self.dir.display()),
                        e,
                    ))
                }
            }
        }
    }

    /// Puts every partial file in place under its name, all or none: each `(partial,
    /// file)` is a partial file and its finished handle. Existing files are replaced only
    /// with `force`. Returns the final paths.
    pub fn commit(&self, parts: Vec<(Partial, File)>, force: bool) -> Result<Vec<PathBuf>> {
        self.commit_failing_at(parts, force, None)
    }

    /// [`commit`](Self::commit), failing on purpose before rename `fail_at` (tests).
    #[doc(hidden)]
    pub fn commit_failing_at(
        &self,
        parts: Vec<(Partial, File)>,
        force: bool,
        fail_at: Option<usize>,
    ) -> Result<Vec<PathBuf>> {
        for (p, file) in &parts {
            file.sync_all()
                .map_err(io(format!("cannot write {}", p.path.display())))?;
        }
        // From here on a signal waits until the files are in place or rolled back.
        let mut list = live();
        if !force {
            // Checked at the start of the run too; a file can appear since. (The link below
            // is the check that no race can slip past.)
            for (p, _) in &parts {
                let fin = self.dir.join(&p.name);
                if std::fs::symlink_metadata(&fin).is_ok() {
                    return Err(appeared(&fin));
                }
            }
        }
        for (p, _) in &parts {
            // Checked when the run began; something may have appeared since.
            not_special(&self.dir.join(&p.name))?;
        }
        let entries = self.journal_entries(&parts);
        self.write_journal(&entries)?;

        // Tests of the recovery end the process here, as a power cut or SIGKILL would
        // (git's GIT_TEST_* variables play the same part).
        let abort_at: Option<usize> = std::env::var("QKV_TEST_ABORT_COMMIT_AT")
            .ok()
            .and_then(|v| v.parse().ok());
        let mut done = 0;
        let mut result = Ok(());
        for (i, e) in entries.iter().enumerate() {
            if abort_at == Some(i) {
                std::process::abort();
            }
            if fail_at == Some(i) {
                result = Err(Error::io(
                    format!("cannot move {} into place", e.name),
                    std::io::Error::other("failure injected by a test"),
                ));
                break;
            }
            if let Err(err) = self.put_in_place(e) {
                result = Err(err);
                break;
            }
            done = i + 1;
        }
        if let Err(err) = result {
            self.roll_back(&entries, done);
            return Err(err);
        }
        sync_dir(&self.dir);
        // The commit point.
        std::fs::remove_file(self.dir.join(JOURNAL)).map_err(io(format!(
            "cannot remove {}",
            self.dir.join(JOURNAL).display()
        )))?;
        sync_dir(&self.dir);
        for e in &entries {
            if let Some(old) = &e.old {
                let _ = std::fs::remove_file(self.dir.join(old));
            }
        }
        for (p, _) in &parts {
            unregister(&mut list, &p.path);
        }
        drop(list);
        Ok(entries.iter().map(|e| self.dir.join(&e.name)).collect())
    }

    /// The journal's line for each partial file: its final name, and the backup name of
    /// the file it replaces, if any.
    fn journal_entries(&self, parts: &[(Partial, File)]) -> Vec<JournalEntry> {
        parts
            .iter()
            .map(|(p, file)| {
                let fin = self.dir.join(&p.name);
                let replaces = std::fs::symlink_metadata(&fin).is_ok();
                JournalEntry {
                    name: p.name.clone(),
                    partial: file_name(&p.path),
                    old: replaces.then(|| file_name(&random_name(&self.dir, &p.name, OLD_SUFFIX))),
                    id: file_id(file),
                    old_id: if replaces { recover::id_of(&fin) } else { None },
                }
            })
            .collect()
    }

    /// Undoes a commit that put `done` of `entries` in place: in reverse, each new file out
    /// and the old one back (and the old file of the entry that failed, if it was moved);
    /// then the journal goes.
    fn roll_back(&self, entries: &[JournalEntry], done: usize) {
        for e in entries[..done].iter().rev() {
            let fin = self.dir.join(&e.name);
            let _ = std::fs::remove_file(&fin);
            if let Some(old) = &e.old {
                let _ = std::fs::rename(self.dir.join(old), &fin);
            }
        }
        if let Some(e) = entries.get(done) {
            if let Some(old) = &e.old {
                let old = self.dir.join(old);
                if old.exists() {
                    let _ = std::fs::rename(old, self.dir.join(&e.name));
                }
            }
        }
        sync_dir(&self.dir);
        let _ = std::fs::remove_file(self.dir.join(JOURNAL));
    }

    /// One output into place: the existing file to its backup name, the partial file to
    /// the final name without replacing anything.
    fn put_in_place(&self, e: &JournalEntry) -> Result<()> {
        let fin = self.dir.join(&e.name);
        if let Some(old) = &e.old {
            std::fs::rename(&fin, self.dir.join(old))
                .map_err(io(format!("cannot move the old {} aside", fin.display())))?;
        }
        rename_noreplace(&self.dir.join(&e.partial), &fin).map_err(|err| {
            if err.kind() == ErrorKind::AlreadyExists {
                appeared(&fin)
            } else {
                Error::io(format!("cannot move {} into place", fin.display()), err)
            }
        })
    }

    fn write_journal(&self, entries: &[JournalEntry]) -> Result<()> {
        let text = serde_json::to_string(&Journal {
            entries: entries.to_vec(),
        })
        .expect("the journal serializes");
        let tmp = random_name(&self.dir, "journal", PARTIAL_SUFFIX);
        let what = || {
            format!(
                "cannot write the journal {}",
                self.dir.join(JOURNAL).display()
            )
        };
        let write = || -> std::io::Result<()> {
            use std::io::Write;
            let mut f = create_new(&tmp)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
            rename_noreplace(&tmp, &self.dir.join(JOURNAL))
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            Error::io(what(), e)
        })?;
        sync_dir(&self.dir);
        Ok(())
    }
}

impl Drop for OutputDir {
    fn drop(&mut self) {
        let mut list = live();
        // Removed while still locked: a run that opened the old file and locks it after
        // finds it is no longer the directory's lock file, and tries again.
        let _ = std::fs::remove_file(&self.lock_path);
        unregister(&mut list, &self.lock_path);
        if self.created {
            // Only if nothing was written into it.
            let _ = std::fs::remove_dir(&self.dir);
        }
    }
}

/// Writes `bytes` to `path` whole: into a new partial file beside it, synced, then put in
/// place, replacing an existing file only when `replace` is set. A full disk or a
/// read-only directory is an [`Error::Io`] and leaves nothing behind.
pub fn write_file(path: &Path, bytes: &[u8], replace: bool) -> Result<()> {
    use std::io::Write;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = file_name(path);
    // Never renamed over a device, FIFO, directory or symlink, even when asked to replace.
    not_special(path)?;
    if !replace && std::fs::symlink_metadata(path).is_ok() {
        return Err(exists(path));
    }
    let what = || format!("cannot write {}", path.display());
    let mut list = live();
    let tmp = loop {
        let p = random_name(dir, &name, PARTIAL_SUFFIX);
        match create_new(&p) {
            Ok(f) => break (p, f),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(Error::io(what(), e)),
        }
    };
    list.push(tmp.0.clone());
    let (tmp, mut file) = tmp;
    let mut result = file.write_all(bytes).and_then(|()| file.sync_all());
    drop(file);
    if result.is_ok() {
        result = if replace {
            std::fs::rename(&tmp, path)
        } else {
            rename_noreplace(&tmp, path)
        };
    }
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    unregister(&mut list, &tmp);
    match result {
        Ok(()) => {
            sync_dir(dir);
            Ok(())
        }
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Err(exists(path)),
        Err(e) => Err(Error::io(what(), e)),
    }
}

fn appeared(path: &Path) -> Error {
    Error::Input(format!(
        "{} appeared while this run was writing (another program wrote it); it was not \
         replaced and nothing was written (`force` replaces it)",
        path.display()
    ))
}

fn exists(path: &Path) -> Error {
    Error::Input(format!(
        "{} already exists; pass `force` to overwrite it",
        path.display()
    ))
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Opens and locks `lock_path`, making sure the locked file is still the one at that path.
fn lock_dir(dir: &Path, lock_path: &Path) -> Result<File> {
    for _ in 0..100 {
        let mut o = OpenOptions::new();
        o.write(true).create(true).truncate(false);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            o.custom_flags(libc::O_NOFOLLOW).mode(0o666);
        }
        let file = o.open(lock_path).map_err(io(format!(
            "cannot create the lock file {}",
            lock_path.display()
        )))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(Error::Input(format!(
                    "another qkv run is writing into {} (it holds {}); wait for it to finish \
                     or choose another `out`",
                    dir.display(),
                    lock_path.display()
                )))
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(Error::io(format!("cannot lock {}", lock_path.display()), e))
            }
        }
        if still_at(&file, lock_path) {
            register(lock_path);
            return Ok(file);
        }
    }
    Err(Error::Input(format!(
        "cannot hold {}: it keeps being replaced",
        lock_path.display()
    )))
}

/// An error unless `path` is absent or a regular file (not a symlink): outputs replace
/// regular files only, never move a directory aside or rename over a device or FIFO.
pub fn not_special(path: &Path) -> Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if !m.file_type().is_file() => Err(Error::Input(format!(
            "{} exists and is {}: qkv replaces regular files only (nothing was moved or \
             overwritten); move it away or choose another name",
            path.display(),
            kind_of(&m)
        ))),
        _ => Ok(()),
    }
}

/// "a directory", "a symbolic link", "a FIFO", ...: what a non-regular file is.
pub(crate) fn kind_of(m: &std::fs::Metadata) -> &'static str {
    let t = m.file_type();
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return "a FIFO";
        }
        if t.is_char_device() || t.is_block_device() {
            return "a device";
        }
        if t.is_socket() {
            return "a socket";
        }
    }
    if t.is_dir() {
        "a directory"
    } else if t.is_symlink() {
        "a symbolic link"
    } else if t.is_file() {
        "a regular file"
    } else {
        "not a regular file"
    }
}

/// The (device, inode) of an open file, where the platform has them.
fn file_id(file: &File) -> Option<(u64, u64)> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        file.metadata().ok().map(|m| (m.dev(), m.ino()))
    }
    #[cfg(not(unix))]
    {
        let _ = file;
        None
    }
}

/// Whether the open `file` is still the file at `path`.
fn still_at(file: &File, path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        match (file.metadata(), std::fs::symlink_metadata(path)) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (file, path);
        true
    }
}

#[cfg(test)]
mod tests;
