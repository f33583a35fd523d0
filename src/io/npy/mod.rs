//! NumPy `.npy` files: X in, as f32 from f32, f16 or f64, its header read by NumPy's own rules
//! ([`header`]); Q, K, V out as f32, the header written by the `npyz` crate. C order only
//! (NumPy's default); anything else is refused with the reason.

pub mod header;

use crate::error::{Error, Result};
use crate::host::Elements;
use header::{Header, Stored};
use npyz::WriterBuilder;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;

/// An array read from a `.npy` file, converted to f32.
#[derive(Debug, Clone, PartialEq)]
pub struct NpyArray {
    /// Dimensions, outermost first.
    pub shape: Vec<usize>,
    /// Elements, row-major.
    pub data: Vec<f32>,
    /// The dtype as stored: "f32", "f16" or "f64".
    pub dtype: &'static str,
}

fn bad(path: &Path, why: impl std::fmt::Display) -> Error {
    Error::Input(format!("{}: {why}", path.display()))
}

/// Reads a C-order `.npy` array of f32, f16 or f64 (either byte order) as f32.
///
/// f64 values are rounded to f32, as the projection computes in f32; values past f32's range
/// become infinite, and the non-finite scan then reports them.
pub fn read_f32(path: &Path) -> Result<NpyArray> {
    let mut rows = NpyRows::open(path)?;
    let mut data = vec![0f32; rows.remaining()];
    rows.read(&mut data)?;
    Ok(NpyArray {
        shape: rows.shape,
        data,
        dtype: rows.dtype,
    })
}

/// A C-order `.npy` array of f32, f16 or f64 read front to back in pieces, as f32: how
/// `qkv project` reads an X larger than memory, chunk by chunk. The header is checked by
/// NumPy's rules ([`header`]) and the file's length compared with what it promises before any
/// data is read.
pub struct NpyRows<R = BufReader<File>> {
    name: String,
    reader: R,
    stored: Stored,
    big_endian: bool,
    remaining: usize,
    bytes: Vec<u8>,
    /// Dimensions, outermost first.
    pub shape: Vec<usize>,
    /// The dtype as stored: "f32", "f16" or "f64".
    pub dtype: &'static str,
}

impl<R> std::fmt::Debug for NpyRows<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NpyRows")
            .field("name", &self.name)
            .field("shape", &self.shape)
            .field("dtype", &self.dtype)
            .finish_non_exhaustive()
    }
}

/// X's dimensions as a projection reads them: `[tokens, d_model]`, or `[batch, seq,
/// d_model]` (tokens = batch x seq).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct XDims {
    /// Rows of X.
    pub tokens: u32,
    /// Columns of X.
    pub d_model: u32,
    /// Batch and sequence length, for a 3-D X.
    pub batch_seq: Option<(u32, u32)>,
}

impl XDims {
    /// The dimensions of X shaped `dims` (outermost first) in the file `name`: an error for
    /// another rank, no rows, or a size past u32.
    pub fn of(dims: &[usize], name: &str) -> Result<Self> {
        let (batch_seq, (tokens, d_model)) = match dims {
            &[t, d] => (None, (t, d)),
            &[b, s, d] => (Some((b, s)), (b * s, d)),
            other => {
                return Err(Error::Input(format!(
                    "{name}: X has shape {other:?}; it must be [tokens, d_model] or [batch, \
                     seq, d_model]"
                )))
            }
        };
        let to_u32 = |v: usize, what: &str| {
            u32::try_from(v).map_err(|_| Error::Shape(format!("{what} = {v} is too large")))
        };
        if tokens == 0 {
            return Err(Error::Input(format!(
                "{name}: X has no rows ({dims:?}): there is nothing to project"
            )));
        }
        Ok(Self {
            tokens: to_u32(tokens, "tokens")?,
            d_model: to_u32(d_model, "d_model")?,
            batch_seq: match batch_seq {
                Some((b, s)) => Some((to_u32(b, "batch")?, to_u32(s, "seq")?)),
                None => None,
            },
        })
    }
}

impl NpyRows {
    /// Opens `path` and reads its header.
    pub fn open(path: &Path) -> Result<Self> {
        // What the path is, before opening it: opening a FIFO would wait for a writer.
        if let Ok(m) = std::fs::metadata(path) {
            if !m.is_file() && !m.is_dir() {
                return Err(bad(
                    path,
                    "is not a regular file (a pipe, FIFO or device): give the .npy file \
                     itself, or save the stream to one first",
                ));
            }
        }
        let file = File::open(path).map_err(|e| crate::io::open_error(path, e))?;
        let meta = file
            .metadata()
            .map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?;
        if meta.is_dir() {
            return Err(bad(path, "is a directory, not a .npy file"));
        }
        if !meta.is_file() {
            // A pipe (`--input <(cat x.npy)`) or a device has no length to check the data
            // against: refused by name, not read as an empty file.
            return Err(bad(
                path,
                "is not a regular file (a pipe, FIFO or device): give the .npy file itself, \
                 or save the stream to one first",
            ));
        }
        Self::from_reader(
            BufReader::new(file),
            meta.len(),
            &path.display().to_string(),
        )
    }
}

impl<R: Read> NpyRows<R> {
    /// Reads the header of a `.npy` file of `len` bytes from `reader`; `name` names it in
    /// errors.
    pub fn from_reader(mut reader: R, len: u64, name: &str) -> Result<Self> {
        let bad = |why: String| Error::Input(format!("{name}: {why}"));
        if len == 0 {
            return Err(bad("the file is empty".into()));
        }
        let h = Header::read(&mut reader).map_err(bad)?;
        let dtype = h.stored.name();
        let elements = h
            .shape
            .iter()
            .try_fold(1u64, |a, &d| a.checked_mul(d as u64));
        let needed = elements.and_then(|n| n.checked_mul(h.stored.size()));
        let after_header = len.saturating_sub(h.data_start);
        match needed {
            Some(needed)
                if needed <= after_header && usize::try_from(elements.unwrap_or(0)).is_ok() => {}
            Some(needed) => {
                return Err(bad(format!(
                    "the data is truncated: the header promises {:?} {dtype} ({needed} bytes \
                     after the header) but the file has {after_header}",
                    h.shape
                )))
            }
            None => {
                return Err(bad(format!(
                    "the header promises {:?} {dtype}, over 2^64 bytes: no file holds that",
                    h.shape
                )))
            }
        }
        Ok(Self {
            name: name.to_string(),
            reader,
            stored: h.stored,
            big_endian: h.big_endian,
            remaining: elements.unwrap_or(0) as usize,
            bytes: Vec::new(),
            shape: h.shape,
            dtype,
        })
    }

    /// Elements not read yet.
    pub fn remaining(&self) -> usize {
        self.remaining
    }

    /// X's dimensions as a projection reads them ([`XDims::of`]), `name` naming the file.
    pub fn x_dims(&self) -> Result<XDims> {
        XDims::of(&self.shape, &self.name)
    }

    /// Reads the next `rows` rows of `d` elements into `dst` (GPU staging memory: written,
    /// never read), rounded to its storage type, in pieces of about 64K elements (whole
    /// rows), each handed to `inspect` (the offset of its first row within `rows`, its
    /// values as read) while it is in cache. A value the type cannot hold is refused naming
    /// its row: `first_row` is the batch row of the first of `rows`.
    pub fn fill_rows(
        &mut self,
        (first_row, rows, d): (u32, usize, usize),
        mut dst: crate::host::ElementsMut<'_>,
        mut inspect: impl FnMut(usize, &[f32]) -> Result<()>,
    ) -> Result<()> {
        let per = (65536 / d.max(1)).max(1);
        let mut piece = Vec::with_capacity(per * d);
        for r0 in (0..rows).step_by(per) {
            let r1 = (r0 + per).min(rows);
            piece.resize((r1 - r0) * d, 0.0);
            self.read(&mut piece)?;
            inspect(r0, &piece)?;
            dst.put_f32(r0 * d, &piece)
                .map_err(|e| e.in_rows("X", first_row + r0 as u32, d as u32))?;
        }
        Ok(())
    }

    /// Reads the next `dst.len()` elements as f32.
    pub fn read(&mut self, dst: &mut [f32]) -> Result<()> {
        if dst.len() > self.remaining {
            return Err(Error::Input(format!(
                "{}: asked for {} more elements but only {} remain",
                self.name,
                dst.len(),
                self.remaining
            )));
        }
        let name = &self.name;
        let truncated = |e: std::io::Error| {
            Error::Input(format!("{name}: the data is truncated or unreadable ({e})"))
        };
        if self.stored == Stored::F32 && self.big_endian == cfg!(target_endian = "big") {
            // Stored as this machine's f32: straight into place, no conversion.
            self.reader
                .read_exact(bytemuck::cast_slice_mut(dst))
                .map_err(truncated)?;
            self.remaining -= dst.len();
            return Ok(());
        }
        self.bytes
            .resize(dst.len() * self.stored.size() as usize, 0);
        self.reader.read_exact(&mut self.bytes).map_err(truncated)?;
        let big = self.big_endian;
        match self.stored {
            Stored::F16 => {
                for (d, b) in dst.iter_mut().zip(self.bytes.chunks_exact(2)) {
                    let b = [b[0], b[1]];
                    let bits = if big {
                        u16::from_be_bytes(b)
                    } else {
                        u16::from_le_bytes(b)
                    };
                    *d = half::f16::from_bits(bits).to_f32();
                }
            }
            Stored::F32 => {
                for (d, b) in dst.iter_mut().zip(self.bytes.chunks_exact(4)) {
                    let b = [b[0], b[1], b[2], b[3]];
                    *d = if big {
                        f32::from_be_bytes(b)
                    } else {
                        f32::from_le_bytes(b)
                    };
                }
            }
            Stored::F64 => {
                for (d, b) in dst.iter_mut().zip(self.bytes.chunks_exact(8)) {
                    let b: [u8; 8] = b.try_into().expect("chunks of 8");
                    let v = if big {
                        f64::from_be_bytes(b)
                    } else {
                        f64::from_le_bytes(b)
                    };
                    *d = v as f32;
                }
            }
        }
        self.remaining -= dst.len();
        Ok(())
    }
}

/// A C-order little-endian f32 `.npy` file written front to back in pieces: the header
/// (with the full shape) first, then the elements as they come. [`finish`](Self::finish)
/// fails unless exactly the promised number of elements was written. Write failures are
/// [`Error::Io`]: the machine's, not the input's.
pub struct NpyRowWriter {
    name: String,
    writer: BufWriter<File>,
    remaining: u64,
    /// f32 or f16: the type the elements are written in.
    element: crate::element::ElementType,
    bytes: Vec<u8>,
}

impl NpyRowWriter {
    /// Creates (or truncates) `path` and writes the header for an array of `shape`.
    pub fn create(path: &Path, shape: &[u64]) -> Result<Self> {
        let file = File::create(path)
            .map_err(|e| Error::io(format!("cannot create {}", path.display()), e))?;
        Self::new(file, &path.display().to_string(), shape)
    }

    /// Writes the header for an f32 array of `shape` into `file` (empty, opened for
    /// writing); `name` names it in errors.
    pub fn new(file: File, name: &str, shape: &[u64]) -> Result<Self> {
        Self::typed(file, name, shape, crate::element::ElementType::F32)
    }

    /// As [`new`](Self::new), for an array of `element`: f32 (`<f4`) or f16 (`<f2`; every
    /// value written must be an f16 value, as a result read back from an f16 run is, so the
    /// conversion is exact). bf16 has no NumPy type and is refused.
    pub fn typed(
        file: File,
        name: &str,
        shape: &[u64],
        element: crate::element::ElementType,
    ) -> Result<Self> {
        use crate::element::ElementType;
        let descr = match element {
            ElementType::F32 => "<f4",
            ElementType::F16 => "<f2",
            ElementType::Bf16 => {
                return Err(Error::Input(format!(
                    "{name}: NumPy has no bf16 type; write bf16 to safetensors, or widen to f32"
                )))
            }
        };
        let remaining = shape
            .iter()
            .try_fold(1u64, |a, &d| a.checked_mul(d))
            .ok_or_else(|| Error::Shape(format!("{name}: the shape {shape:?} is too large")))?;
        let data = remaining
            .checked_mul(element.size())
            .ok_or_else(|| Error::Shape(format!("{name}: the shape {shape:?} is too large")))?;
        let mut writer = BufWriter::with_capacity(1 << 20, file);
        // npyz writes the header; the data follows as raw little-endian elements.
        npyz::WriteOptions::new_header_only()
            .dtype(npyz::DType::new_scalar(
                descr.parse().expect("a valid type string"),
            ))
            .shape(shape)
            .writer(&mut writer)
            .write_header_only()
            .map_err(|e| Error::io(format!("cannot write {name}"), e))?;
        // The whole file's blocks, header and data, before any data is written: a full disk
        // (or a file-size limit) shows before the run, not chunks into it.
        use std::io::{Seek, Write};
        let header = writer
            .flush()
            .and_then(|()| writer.get_mut().stream_position())
            .map_err(|e| Error::io(format!("cannot write {name}"), e))?;
        crate::io::reserve(writer.get_ref(), header + data, name)?;
        Ok(Self {
            name: name.to_string(),
            writer,
            remaining,
            element,
            bytes: Vec::new(),
        })
    }

    /// Appends `data`.
    pub fn write(&mut self, data: &[f32]) -> Result<()> {
        self.write_elements(Elements::F32(data))
    }

    /// Writes the next elements from an array in any storage type: as they are when it is
    /// the file's, else rounded to nearest even or widened exactly.
    pub fn write_elements(&mut self, data: Elements<'_>) -> Result<()> {
        if data.len() as u64 > self.remaining {
            return Err(Error::Input(format!(
                "{}: {} more elements than its shape holds",
                self.name,
                data.len() as u64 - self.remaining
            )));
        }
        let written = match data {
            Elements::F32(d) if cfg!(target_endian = "little") && !self.element.is_half() => {
                self.writer.write_all(bytemuck::cast_slice(d))
            }
            Elements::Half(e, d) if cfg!(target_endian = "little") && e == self.element => {
                self.writer.write_all(bytemuck::cast_slice(d))
            }
            _ => {
                self.bytes.clear();
                data.encode(self.element, &mut self.bytes);
                self.writer.write_all(&self.bytes)
            }
        };
        written.map_err(|e| Error::io(format!("cannot write {}", self.name), e))?;
        self.remaining -= data.len() as u64;
        Ok(())
    }

    /// Flushes the file and hands it back; an error if elements are missing.
    pub fn finish(self) -> Result<File> {
        if self.remaining != 0 {
            return Err(Error::Input(format!(
                "{}: {} elements were never written",
                self.name, self.remaining
            )));
        }
        let name = self.name;
        self.writer
            .into_inner()
            .map_err(|e| Error::io(format!("cannot write {name}"), e.into_error()))
    }
}

/// Writes `data` as a C-order little-endian f32 `.npy` file of dimensions `shape`.
pub fn write_f32(path: &Path, shape: &[u64], data: &[f32]) -> Result<()> {
    let mut w = NpyRowWriter::create(path, shape)?;
    w.write(data)?;
    w.finish()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f32_round_trips_and_f16_f64_convert() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.npy");
        write_f32(&p, &[2, 3], &[1.0, -2.0, 3.5, 4.0, 5.0, 6.25]).unwrap();
        let a = read_f32(&p).unwrap();
        assert_eq!(a.shape, vec![2, 3]);
        assert_eq!(a.data, vec![1.0, -2.0, 3.5, 4.0, 5.0, 6.25]);
        assert_eq!(a.dtype, "f32");

        let p16 = dir.path().join("h.npy");
        let halfs: Vec<half::f16> = [0.5f32, -1.25, 3.0]
            .iter()
            .map(|&v| half::f16::from_f32(v))
            .collect();
        npyz::to_file_1d(&p16, halfs).unwrap();
        let h = read_f32(&p16).unwrap();
        assert_eq!((h.data.clone(), h.dtype), (vec![0.5, -1.25, 3.0], "f16"));

        let p64 = dir.path().join("d.npy");
        npyz::to_file_1d(&p64, vec![0.1f64, 2.0]).unwrap();
        let d = read_f32(&p64).unwrap();
        assert_eq!((d.data, d.dtype), (vec![0.1f32, 2.0], "f64"));
    }

    #[test]
    fn rows_read_in_pieces_and_big_endian_data() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.npy");
        let data: Vec<f32> = (0..12).map(|i| i as f32 * 0.5 - 2.0).collect();
        write_f32(&p, &[4, 3], &data).unwrap();
        let mut rows = NpyRows::open(&p).unwrap();
        assert_eq!((rows.shape.clone(), rows.remaining()), (vec![4, 3], 12));
        let mut a = vec![0f32; 3];
        let mut b = vec![0f32; 9];
        rows.read(&mut a).unwrap();
        rows.read(&mut b).unwrap();
        assert_eq!([a, b].concat(), data);
        assert!(rows
            .read(&mut [0f32; 1])
            .unwrap_err()
            .to_string()
            .contains("only 0 remain"));

        // Big-endian f32 and f16, as NumPy writes them with dtype '>f4' / '>f2'.
        let be = dir.path().join("be.npy");
        npyz::WriteOptions::new()
            .dtype(npyz::DType::new_scalar(">f4".parse().unwrap()))
            .shape(&[2])
            .writer(BufWriter::new(File::create(&be).unwrap()))
            .begin_nd()
            .unwrap()
            .extend([1.5f32, -3.25])
            .unwrap();
        assert_eq!(read_f32(&be).unwrap().data, vec![1.5, -3.25]);
        let be16 = dir.path().join("be16.npy");
        let mut w = npyz::WriteOptions::new()
            .dtype(npyz::DType::new_scalar(">f2".parse().unwrap()))
            .shape(&[2])
            .writer(BufWriter::new(File::create(&be16).unwrap()))
            .begin_nd()
            .unwrap();
        w.extend([half::f16::from_f32(0.75), half::f16::from_f32(-8.0)])
            .unwrap();
        w.finish().unwrap();
        assert_eq!(read_f32(&be16).unwrap().data, vec![0.75, -8.0]);
    }

    #[test]
    fn row_writer_writes_exactly_its_shape() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("q.npy");
        let mut w = NpyRowWriter::create(&p, &[3, 2]).unwrap();
        w.write(&[1.0, 2.0]).unwrap();
        w.write(&[3.0, 4.0, 5.0, 6.0]).unwrap();
        assert!(w
            .write(&[7.0])
            .unwrap_err()
            .to_string()
            .contains("1 more elements"));
        w.finish().unwrap();
        let a = read_f32(&p).unwrap();
        assert_eq!(
            (a.shape, a.data),
            (vec![3, 2], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
        );

        let short = NpyRowWriter::create(&dir.path().join("short.npy"), &[2, 2]).unwrap();
        let e = short.finish().unwrap_err().to_string();
        assert!(e.contains("4 elements were never written"), "{e}");
    }

    /// A version-1 `.npy` file with the given descr and shape literals, then `data`.
    fn npy_bytes(descr: &str, shape: &str, data: &[u8]) -> Vec<u8> {
        let h = format!("{{'descr': {descr}, 'fortran_order': False, 'shape': {shape}, }}\n");
        let mut f = b"\x93NUMPY\x01\x00".to_vec();
        f.extend((h.len() as u16).to_le_bytes());
        f.extend(h.as_bytes());
        f.extend(data);
        f
    }

    #[test]
    fn numpy_dtype_spellings_read_as_numpy_reads_them() {
        // Issue #11: '<e', '=f4', '|f4' and a newline in the header were refused.
        let dir = tempfile::tempdir().unwrap();
        let h16: Vec<u8> = [1.5f32, -2.0]
            .iter()
            .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
            .collect();
        let f32s: Vec<u8> = [0.25f32, 8.0]
            .iter()
            .flat_map(|v| v.to_ne_bytes())
            .collect();
        for (descr, data) in [("'<e'", &h16), ("'=f4'", &f32s), ("'|f4'", &f32s)] {
            let p = dir.path().join("x.npy");
            std::fs::write(&p, npy_bytes(descr, "(2,)", data)).unwrap();
            let a = read_f32(&p).unwrap_or_else(|e| panic!("{descr}: {e}"));
            assert_eq!(a.data.len(), 2, "{descr}");
            assert!(a.data == [1.5, -2.0] || a.data == [0.25, 8.0], "{descr}");
        }
        let p = dir.path().join("nl.npy");
        std::fs::write(&p, npy_bytes("'<f4'", "(1,\n 2)", &f32s)).unwrap();
        assert_eq!(read_f32(&p).unwrap().shape, vec![1, 2]);
    }

    #[test]
    fn bad_files_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let missing = read_f32(&dir.path().join("nope.npy"))
            .unwrap_err()
            .to_string();
        assert!(missing.contains("cannot open"), "{missing}");

        let empty = dir.path().join("empty.npy");
        std::fs::write(&empty, b"").unwrap();
        assert!(read_f32(&empty).unwrap_err().to_string().contains("empty"));

        let garbage = dir.path().join("garbage.npy");
        std::fs::write(&garbage, b"this is not numpy at all").unwrap();
        let e = read_f32(&garbage).unwrap_err().to_string();
        assert!(e.contains("not a .npy file"), "{e}");

        let full = dir.path().join("full.npy");
        write_f32(&full, &[4, 4], &[1.0; 16]).unwrap();
        let bytes = std::fs::read(&full).unwrap();
        let cut = dir.path().join("cut.npy");
        std::fs::write(&cut, &bytes[..bytes.len() - 10]).unwrap();
        let e = read_f32(&cut).unwrap_err().to_string();
        assert!(e.contains("truncated"), "{e}");

        // Issue #11: a shape whose byte count passes 2^64 was reported with a wrapped count.
        let huge = dir.path().join("huge.npy");
        std::fs::write(
            &huge,
            npy_bytes("'<f4'", "(4294967296, 4294967296, 16)", &[]),
        )
        .unwrap();
        let e = read_f32(&huge).unwrap_err().to_string();
        assert!(e.contains("over 2^64 bytes"), "{e}");
        // A valid empty array is empty, not truncated.
        let none = dir.path().join("none.npy");
        std::fs::write(&none, npy_bytes("'<f4'", "(0, 768)", &[])).unwrap();
        let a = read_f32(&none).unwrap();
        assert_eq!((a.shape, a.data.len()), (vec![0, 768], 0));
        // A directory is named as one.
        let e = read_f32(dir.path()).unwrap_err().to_string();
        assert!(e.contains("is a directory"), "{e}");

        let ints = dir.path().join("ints.npy");
        npyz::to_file_1d(&ints, vec![1i32, 2, 3]).unwrap();
        let e = read_f32(&ints).unwrap_err().to_string();
        assert!(e.contains("unsupported dtype '<i4'"), "{e}");
    }
}
