//! Reading model data from files and writing results: `.npy` arrays ([`npy`]),
//! safetensors checkpoints with the Q/K/V naming conventions of common model families
//! ([`checkpoint`]), GGUF files' headers and tensors in their ggml formats ([`gguf`]),
//! Q, K, V streamed into one safetensors file ([`safetensors`]) or `.npy` files, put in
//! place all or none ([`outputs`], [`commit`]); a file of X projected into them ([`project`])
//! and a corpus of shards, resumably ([`shards`]).

pub mod checkpoint;
pub mod commit;
pub mod epilogue;
pub mod gguf;
pub mod npy;
pub mod outputs;
pub mod project;
pub mod safetensors;
pub mod shards;
pub(crate) mod source;

use crate::error::Error;
use std::fmt;
use std::path::Path;

/// The error for an input file that could not be opened: the user's (a wrong name, a
/// directory) or the machine's (a permission, a failing disk), told apart.
pub(crate) fn open_error(path: &Path, e: std::io::Error) -> Error {
    match e.kind() {
        std::io::ErrorKind::NotFound => {
            Error::Input(format!("{}: cannot open: no such file", path.display()))
        }
        std::io::ErrorKind::IsADirectory => {
            Error::Input(format!("{}: is a directory, not a file", path.display()))
        }
        _ => Error::io(format!("cannot open {}", path.display()), e),
    }
}

/// The text of `path`, `what` it is in errors ("the kernel"), read from a regular file only
/// and at most `cap` bytes: the file is opened without waiting (a FIFO's open would wait
/// for a writer), the opened handle's own type checked (a symlink to /dev/zero, a FIFO or a
/// directory is refused, whatever the name said when it was looked at), and at most `cap` +
/// 1 bytes read, so that a file growing without end cannot fill memory.
pub fn read_small_text(path: &Path, cap: u64, what: &str) -> Result<String, Error> {
    use std::io::Read;
    let cannot =
        |why: String| Error::Input(format!("cannot read {what} {}: {why}", path.display()));
    let failed = |e: std::io::Error| Error::io(format!("cannot read {what} {}", path.display()), e);
    let mut o = std::fs::OpenOptions::new();
    o.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.custom_flags(libc::O_NONBLOCK);
    }
    let file = o.open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => cannot("no such file".into()),
        std::io::ErrorKind::IsADirectory => cannot("it is a directory, not a file".into()),
        _ => failed(e),
    })?;
    let meta = file.metadata().map_err(failed)?;
    if !meta.is_file() {
        return Err(cannot(format!(
            "it is {}, not a regular file (qkv reads {what} from regular files only)",
            commit::kind_of(&meta)
        )));
    }
    let mut bytes = Vec::new();
    file.take(cap + 1).read_to_end(&mut bytes).map_err(failed)?;
    if bytes.len() as u64 > cap {
        return Err(cannot(format!(
            "it is larger than {}, the most qkv reads for {what}",
            crate::error::fmt_bytes(cap)
        )));
    }
    String::from_utf8(bytes).map_err(|e| {
        cannot(format!(
            "it is not UTF-8 text (byte {} is not)",
            e.utf8_error().valid_up_to()
        ))
    })
}

/// Reserves `len` bytes of disk for `file` (written as `shown`) before anything is written
/// into it, so that a full disk (or a file-size limit, `ulimit -f`) stops a run before its
/// GPU work, not chunks into it: `posix_fallocate` on Linux, which allocates the blocks (a
/// file system without it is left to find out as it writes). Elsewhere nothing is reserved,
/// and a full disk shows as the chunks are written (an I/O error all the same).
pub(crate) fn reserve(file: &std::fs::File, len: u64, shown: &str) -> Result<(), Error> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let Ok(len) = libc::off_t::try_from(len) else {
            return Err(Error::io(
                format!("cannot reserve {len} bytes for {shown}"),
                std::io::ErrorKind::FileTooLarge.into(),
            ));
        };
        // SAFETY: a valid open file descriptor; posix_fallocate returns an errno value.
        let r = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len) };
        match r {
            0 => Ok(()),
            // Not supported by this file system: found out while writing instead.
            libc::EOPNOTSUPP | libc::EINVAL => Ok(()),
            e => Err(Error::io(
                format!(
                    "cannot reserve {} for {shown} before the run",
                    crate::error::fmt_bytes(len as u64)
                ),
                std::io::Error::from_raw_os_error(e),
            )),
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (file, len, shown);
        Ok(())
    }
}

/// Non-finite values (NaN, +-Inf) found in an input, for the report users get before the
/// projection runs.
#[derive(Debug, Clone, PartialEq)]
pub struct NonFinite {
    /// Which input: "X" or a tensor name.
    pub what: String,
    /// How many elements are NaN or infinite.
    pub count: usize,
    /// Coordinates of the first one, in the input's own dimensions.
    pub first_at: Vec<usize>,
    /// Its value.
    pub first_value: f32,
}

impl NonFinite {
    /// Scans `data` (row-major with dimensions `dims`); None when every value is finite.
    pub fn scan(what: &str, data: &[f32], dims: &[usize]) -> Option<Self> {
        Self::scan_at(what, data, 0, dims)
    }

    /// As [`scan`](Self::scan), for a part of an array: `data` starts at flat index `start`
    /// of the array of dimensions `dims` (X read chunk by chunk).
    pub fn scan_at(what: &str, data: &[f32], start: usize, dims: &[usize]) -> Option<Self> {
        let first = data.iter().position(|v| !v.is_finite())?;
        Some(Self {
            what: what.to_string(),
            count: data.iter().filter(|v| !v.is_finite()).count(),
            first_at: unravel(start + first, dims),
            first_value: data[first],
        })
    }

    /// As [`scan`](Self::scan), over values widened one by one (a half-typed tensor, with
    /// no f32 copy of it).
    pub fn scan_values(
        what: &str,
        values: impl Iterator<Item = f32>,
        dims: &[usize],
    ) -> Option<Self> {
        let mut found: Option<Self> = None;
        for (i, v) in values.enumerate() {
            if !v.is_finite() {
                match &mut found {
                    Some(f) => f.count += 1,
                    None => {
                        found = Some(Self {
                            what: what.to_string(),
                            count: 1,
                            first_at: unravel(i, dims),
                            first_value: v,
                        })
                    }
                }
            }
        }
        found
    }

    /// Adds what a later part of the same array holds: counts add, the first stays first.
    pub fn merge(earlier: Option<Self>, later: Option<Self>) -> Option<Self> {
        match (earlier, later) {
            (Some(mut a), Some(b)) => {
                a.count += b.count;
                Some(a)
            }
            (a, b) => a.or(b),
        }
    }
}

impl fmt::Display for NonFinite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at: Vec<String> = self.first_at.iter().map(|i| i.to_string()).collect();
        write!(
            f,
            "{} has {} non-finite value{} (first: {} at [{}])",
            self.what,
            self.count,
            if self.count == 1 { "" } else { "s" },
            self.first_value,
            at.join(", ")
        )
    }
}

/// Row-major coordinates of flat `index` in an array of dimensions `dims`.
pub fn unravel(mut index: usize, dims: &[usize]) -> Vec<usize> {
    let mut at = vec![0; dims.len()];
    for (slot, &d) in at.iter_mut().zip(dims).rev() {
        let d = d.max(1);
        *slot = index % d;
        index /= d;
    }
    at
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_text_is_read_from_regular_files_only_and_up_to_its_cap() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("k.wgsl");
        std::fs::write(&file, "fn main() {}").unwrap();
        assert_eq!(
            read_small_text(&file, 12, "the kernel").unwrap(),
            "fn main() {}"
        );
        let e = read_small_text(&file, 11, "the kernel")
            .unwrap_err()
            .to_string();
        assert!(e.contains("larger than 11 bytes"), "{e}");
        let e = read_small_text(dir.path(), 100, "the kernel")
            .unwrap_err()
            .to_string();
        assert!(e.contains("directory"), "{e}");
        let e = read_small_text(&dir.path().join("no"), 100, "the kernel").unwrap_err();
        assert!(e.to_string().contains("no such file"), "{e}");
        #[cfg(unix)]
        {
            // A FIFO with no writer: refused at once, not waited on.
            let fifo = dir.path().join("fifo");
            let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
            // SAFETY: a valid NUL-terminated path.
            assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
            let e = read_small_text(&fifo, 100, "the kernel")
                .unwrap_err()
                .to_string();
            assert!(e.contains("a FIFO, not a regular file"), "{e}");
            // A symlink to a device that never ends: refused by what it opens.
            let link = dir.path().join("zero.wgsl");
            std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
            let e = read_small_text(&link, 100, "the kernel")
                .unwrap_err()
                .to_string();
            assert!(e.contains("a device, not a regular file"), "{e}");
        }
    }

    #[test]
    fn scan_counts_and_locates_the_first() {
        let data = [1.0, 2.0, 3.0, f32::INFINITY, 5.0, f32::NAN];
        let nf = NonFinite::scan("X", &data, &[2, 3]).unwrap();
        assert_eq!((nf.count, nf.first_at.clone()), (2, vec![1, 0]));
        assert_eq!(
            nf.to_string(),
            "X has 2 non-finite values (first: inf at [1, 0])"
        );
        assert!(NonFinite::scan("X", &[1.0, 2.0], &[2]).is_none());
        // The same array scanned in parts of 4 and 2: the same finding.
        let parts = NonFinite::merge(
            NonFinite::scan_at("X", &data[..4], 0, &[2, 3]),
            NonFinite::scan_at("X", &data[4..], 4, &[2, 3]),
        );
        assert_eq!(parts.unwrap().to_string(), nf.to_string());
        let later = NonFinite::merge(None, NonFinite::scan_at("X", &data[4..], 4, &[2, 3]));
        assert_eq!(later.unwrap().first_at, vec![1, 2]);
        assert_eq!(unravel(7, &[2, 2, 3]), vec![1, 0, 1]);
    }
}
