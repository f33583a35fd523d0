//! What a run finds in its output directory from runs before it: a commit interrupted
//! between its renames (rolled back by its journal) and partial files of runs that were
//! killed (removed, and named in the report).

use super::{io, sync_dir, Journal, OutputDir, JOURNAL, OLD_SUFFIX, PARTIAL_SUFFIX};
use crate::error::{Error, Result};
use std::io::ErrorKind;
use std::path::Path;

impl OutputDir {
    /// Rolls back a commit an interrupted run left half done. Only a journal this tool
    /// wrote is obeyed: a regular file (not a symlink, FIFO or device), owned by this user,
    /// at most [`JOURNAL_MAX`] bytes, whose every entry names a plain file of this directory
    /// with partial and backup names of the form qkv gives them. Anything else is
    /// refused with nothing touched. And a final file is removed only where it is the run's
    /// own: its partial file's inode, as the journal recorded it.
    pub(super) fn recover(&mut self) -> Result<()> {
        let path = self.dir.join(JOURNAL);
        let Some(journal) = read_journal(&path)? else {
            return Ok(());
        };
        let (restored, removed, kept) = self.undo(&journal)?;
        std::fs::remove_file(&path).map_err(io(format!("cannot remove {}", path.display())))?;
        sync_dir(&self.dir);
        let mut what = Vec::new();
        if !restored.is_empty() {
            what.push(format!("restored the previous {}", restored.join(", ")));
        }
        if !removed.is_empty() {
            what.push(format!("removed its new {}", removed.join(", ")));
        }
        if !kept.is_empty() {
            what.push(format!(
                "left {}, which {} not the file that run wrote or moved aside",
                kept.join(", "),
                if kept.len() == 1 { "is" } else { "are" }
            ));
        }
        self.notes.push(format!(
            "a run into {} was interrupted while putting its outputs in place; its commit was \
             rolled back{}",
            self.dir.display(),
            if what.is_empty() {
                String::new()
            } else {
                format!(" ({})", what.join("; "))
            }
        ));
        Ok(())
    }

    /// Undoes what `journal` records: each backup the run made put back, each new file of
    /// the run's removed, anything else left; the partial files go. Returns the names
    /// restored, removed and left.
    #[allow(clippy::type_complexity)]
    fn undo(&self, journal: &Journal) -> Result<(Vec<String>, Vec<String>, Vec<String>)> {
        let mut restored = Vec::new();
        let mut removed = Vec::new();
        let mut kept = Vec::new();
        for e in &journal.entries {
            let fin = self.dir.join(&e.name);
            let partial = self.dir.join(&e.partial);
            // Names are looked at, never followed or opened: a symlink, FIFO or another
            // user's file is no file of the run's, and opening a FIFO would wait.
            match &e.old {
                Some(old) => {
                    let backup = self.dir.join(old);
                    match own_file(&backup) {
                        // The backup of the file the run replaced, as the journal recorded it.
                        Some(id) if e.old_id == Some(id) => {
                            std::fs::rename(&backup, &fin)
                                .map_err(io(format!("cannot restore {}", fin.display())))?;
                            restored.push(e.name.clone());
                        }
                        // Something else at the backup name: left where it is.
                        _ if std::fs::symlink_metadata(&backup).is_ok() => {
                            kept.push(old.clone());
                        }
                        // Never moved aside: the old file is still in place.
                        _ => {}
                    }
                }
                None => {
                    // The run's new file: the inode the journal recorded for its partial file
                    // (the final name is a link to it). Anything else there is left alone.
                    if e.id.is_some() && own_file(&fin) == e.id {
                        std::fs::remove_file(&fin)
                            .map_err(io(format!("cannot remove {}", fin.display())))?;
                        removed.push(e.name.clone());
                    } else if std::fs::symlink_metadata(&fin).is_ok() {
                        kept.push(e.name.clone());
                    }
                }
            }
            // The partial name: the run's file (or a link planted there, removed itself).
            let planted_link =
                std::fs::symlink_metadata(&partial).is_ok_and(|m| m.file_type().is_symlink());
            if own_file(&partial).is_some() || planted_link {
                let _ = std::fs::remove_file(&partial);
            }
        }
        Ok((restored, removed, kept))
    }

    /// Removes partial files and backups left by interrupted runs (this run holds the lock,
    /// so no live run owns them), and names them.
    pub(super) fn sweep(&mut self) -> Result<()> {
        let entries = std::fs::read_dir(&self.dir)
            .map_err(io(format!("cannot list {}", self.dir.display())))?;
        let mut stale = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if is_stale_name(&name) {
                // Only this user's regular files and symlinks (the link itself, never what it
                // points to): a directory, FIFO or another user's file that merely has such
                // a name is left alone.
                let Ok(m) = std::fs::symlink_metadata(entry.path()) else {
                    continue;
                };
                let t = m.file_type();
                if !(t.is_file() || t.is_symlink()) || !owned_by_me(&m) {
                    continue;
                }
                let size = m.len();
                std::fs::remove_file(entry.path())
                    .map_err(io(format!("cannot remove {}", entry.path().display())))?;
                stale.push(format!("{name} ({})", crate::error::fmt_bytes(size)));
            }
        }
        if !stale.is_empty() {
            stale.sort();
            let n = stale.len();
            if n > 12 {
                stale.truncate(10);
                stale.push(format!("and {} more", n - 10));
            }
            self.notes.push(format!(
                "removed {n} partial file{} left in {} by an interrupted run: {}",
                if n == 1 { "" } else { "s" },
                self.dir.display(),
                stale.join(", ")
            ));
        }
        Ok(())
    }
}

/// The journal at `path`, if there is one, trusted only if this tool wrote it (see
/// [`OutputDir::recover`]); an error, with nothing changed, otherwise.
fn read_journal(path: &Path) -> Result<Option<Journal>> {
    let untrusted = |why: String| {
        Error::Input(format!(
            "{} is not a journal qkv wrote ({why}); nothing was changed: remove it, after \
             looking at what it names",
            path.display()
        ))
    };
    let mut o = std::fs::OpenOptions::new();
    o.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // Never through a symlink; a FIFO opens without waiting for a writer.
        o.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
    }
    let file = match o.open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => match std::fs::symlink_metadata(path) {
            Ok(m) if !m.file_type().is_file() => {
                return Err(untrusted(format!("it is {}", super::kind_of(&m))))
            }
            _ => return Err(Error::io(format!("cannot read {}", path.display()), e)),
        },
    };
    let meta = file
        .metadata()
        .map_err(io(format!("cannot read {}", path.display())))?;
    if !meta.file_type().is_file() {
        return Err(untrusted(format!("it is {}", super::kind_of(&meta))));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        // SAFETY: geteuid has no preconditions and cannot fail.
        let me = unsafe { libc::geteuid() };
        if meta.uid() != me {
            return Err(untrusted(format!(
                "it belongs to user {}, not to this user ({me})",
                meta.uid()
            )));
        }
    }
    if meta.len() > JOURNAL_MAX {
        return Err(untrusted(format!(
            "{} bytes; a journal of qkv's is under {JOURNAL_MAX}",
            meta.len()
        )));
    }
    let mut text = String::new();
    {
        use std::io::Read;
        file.take(JOURNAL_MAX)
            .read_to_string(&mut text)
            .map_err(|e| untrusted(format!("unreadable: {e}")))?;
    }
    let journal: Journal = serde_json::from_str(&text).map_err(|e| {
        Error::Input(format!(
            "{} is a journal qkv cannot read ({e}): a run was killed while putting its \
             outputs in place. Look at the outputs and the .qkv-old files beside them, \
             then remove {}",
            path.display(),
            path.display()
        ))
    })?;
    for e in &journal.entries {
        // A plain file name in this directory, with partial and backup names of qkv's
        // own form for it.
        let plain = !e.name.is_empty()
            && !e.name.starts_with('.')
            && Path::new(&e.name).file_name() == Some(e.name.as_ref());
        if !plain
            || !is_own_name(&e.partial, &e.name, PARTIAL_SUFFIX)
            || e.old
                .as_deref()
                .is_some_and(|o| !is_own_name(o, &e.name, OLD_SUFFIX))
        {
            return Err(untrusted(format!(
                "it names {:?} with partial file {:?} and backup {:?}, names qkv does not \
                 give",
                e.name, e.partial, e.old
            )));
        }
    }
    Ok(Some(journal))
}

/// The largest journal qkv writes is a few hundred bytes; one past this is not its.
pub const JOURNAL_MAX: u64 = 64 * 1024;

/// Whether `name` is `.{output}.<16 lowercase hex>{suffix}`, as [`super::random_name`] makes.
fn is_own_name(name: &str, output: &str, suffix: &str) -> bool {
    name.strip_prefix(&format!(".{output}."))
        .and_then(|rest| rest.strip_suffix(suffix))
        .is_some_and(|hex| hex.len() == 16 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Whether this user owns the file (always, where there are no owners).
fn owned_by_me(m: &std::fs::Metadata) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        // SAFETY: geteuid has no preconditions and cannot fail.
        m.uid() == unsafe { libc::geteuid() }
    }
    #[cfg(not(unix))]
    {
        let _ = m;
        true
    }
}

/// The (device, inode) of the file at `path` if it is a regular file of this user's (not
/// following a symlink).
pub(super) fn own_file(path: &Path) -> Option<(u64, u64)> {
    let m = std::fs::symlink_metadata(path).ok()?;
    (m.file_type().is_file() && owned_by_me(&m))
        .then(|| id_of(path))
        .flatten()
}

/// The (device, inode) of the file at `path` (not following a symlink).
pub(super) fn id_of(path: &Path) -> Option<(u64, u64)> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        std::fs::symlink_metadata(path)
            .ok()
            .map(|m| (m.dev(), m.ino()))
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}

/// Whether `name` is a file this module leaves only when interrupted: a partial file, a
/// backup, or a partial file of qkv before 0.2 (`.q.npy.partial-<pid>`).
pub fn is_stale_name(name: &str) -> bool {
    let old_scheme = ["q.npy", "k.npy", "v.npy"].iter().any(|f| {
        name.strip_prefix(&format!(".{f}.partial-"))
            .is_some_and(|pid| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()))
    });
    name.starts_with('.')
        && (name.ends_with(PARTIAL_SUFFIX) || name.ends_with(OLD_SUFFIX) || old_scheme)
}
