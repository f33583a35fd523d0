//! What a run finds in its output directory from runs before it: a commit interrupted
//! between its renames (rolled back by its journal) and partial files of runs that were
//! killed (removed, and named in the report).

use super::{io, sync_dir, Journal, OutputDir, JOURNAL, OLD_SUFFIX, PARTIAL_SUFFIX};
use crate::error::{Error, Result};
use std::io::ErrorKind;
use std::path::Path;

impl OutputDir {
    /// Rolls back a commit an interrupted run left half done.
    pub(super) fn recover(&mut self) -> Result<()> {
        let path = self.dir.join(JOURNAL);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::io(format!("cannot read {}", path.display()), e)),
        };
        let journal: Journal = serde_json::from_str(&text).map_err(|e| {
            Error::Input(format!(
                "{} is a journal qkv cannot read ({e}): a run was killed while putting its \
                 outputs in place. Look at the outputs and the .qkv-old files beside them, \
                 then remove {}",
                path.display(),
                path.display()
            ))
        })?;
        let mut restored = Vec::new();
        let mut removed = Vec::new();
        for e in &journal.entries {
            // Names from the journal are file names in this directory, nothing else.
            let safe = |n: &str| !n.is_empty() && Path::new(n).file_name() == Some(n.as_ref());
            if !safe(&e.name) || !safe(&e.partial) || e.old.as_deref().is_some_and(|o| !safe(o)) {
                return Err(Error::Input(format!(
                    "{} names files outside {}; remove it",
                    path.display(),
                    self.dir.display()
                )));
            }
            let fin = self.dir.join(&e.name);
            let partial = self.dir.join(&e.partial);
            match &e.old {
                Some(old) if self.dir.join(old).exists() => {
                    std::fs::rename(self.dir.join(old), &fin)
                        .map_err(io(format!("cannot restore {}", fin.display())))?;
                    restored.push(e.name.clone());
                }
                // The old file was never moved: it is still in place.
                Some(_) => {}
                None => {
                    let new = std::fs::symlink_metadata(&fin).is_ok()
                        && (!partial.exists()
                            || same_file::is_same_file(&partial, &fin).unwrap_or(false));
                    if new {
                        std::fs::remove_file(&fin)
                            .map_err(io(format!("cannot remove {}", fin.display())))?;
                        removed.push(e.name.clone());
                    }
                }
            }
            let _ = std::fs::remove_file(&partial);
        }
        std::fs::remove_file(&path).map_err(io(format!("cannot remove {}", path.display())))?;
        sync_dir(&self.dir);
        let mut what = Vec::new();
        if !restored.is_empty() {
            what.push(format!("restored the previous {}", restored.join(", ")));
        }
        if !removed.is_empty() {
            what.push(format!("removed its new {}", removed.join(", ")));
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

    /// Removes partial files and backups left by interrupted runs (this run holds the lock,
    /// so no live run owns them), and names them.
    pub(super) fn sweep(&mut self) -> Result<()> {
        let entries = std::fs::read_dir(&self.dir)
            .map_err(io(format!("cannot list {}", self.dir.display())))?;
        let mut stale = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if is_stale_name(&name) {
                let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
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
