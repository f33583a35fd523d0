//! Where a checkpoint's bytes are, and reading them at an offset: a file through read(2)
//! (`pread`), never a memory map, so that a file shortened while it loads is an error, not a
//! SIGBUS; or bytes in memory.

use std::fs::File;

/// Where a checkpoint's bytes are.
pub(crate) enum Source {
    File(File),
    Bytes(Vec<u8>),
}

impl Source {
    /// `len` bytes at `offset`, or None if there are fewer (a file shortened since it was
    /// opened).
    pub(crate) fn read(&self, offset: u64, len: usize) -> std::io::Result<Option<Vec<u8>>> {
        match self {
            Source::Bytes(b) => {
                let start = usize::try_from(offset).unwrap_or(usize::MAX);
                Ok(start
                    .checked_add(len)
                    .and_then(|end| b.get(start..end))
                    .map(<[u8]>::to_vec))
            }
            Source::File(f) => {
                let mut buf = vec![0u8; len];
                match read_exact_at(f, &mut buf, offset) {
                    Ok(()) => Ok(Some(buf)),
                    Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(None),
                    Err(e) => Err(e),
                }
            }
        }
    }
}

#[cfg(unix)]
fn read_exact_at(f: &File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(f, buf, offset)
}

#[cfg(windows)]
fn read_exact_at(f: &File, mut buf: &mut [u8], mut offset: u64) -> std::io::Result<()> {
    use std::os::windows::fs::FileExt;
    while !buf.is_empty() {
        match f.seek_read(buf, offset)? {
            0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            n => {
                buf = &mut buf[n..];
                offset += n as u64;
            }
        }
    }
    Ok(())
}
