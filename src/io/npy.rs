//! NumPy `.npy` files through the `npyz` crate: X in, as f32 from f32, f16 or f64; Q, K, V
//! out as f32. C order only (NumPy's default); anything else is refused with the reason.

use crate::error::{Error, Result};
use npyz::WriterBuilder;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, Write};
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

/// Element types X may be stored in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stored {
    F16,
    F32,
    F64,
}

/// A C-order `.npy` array of f32, f16 or f64 read front to back in pieces, as f32: how
/// `qkv project` reads an X larger than memory, chunk by chunk. The header is checked and the
/// file's length compared with what it promises before any data is read.
#[derive(Debug)]
pub struct NpyRows {
    path: std::path::PathBuf,
    reader: BufReader<File>,
    stored: Stored,
    big_endian: bool,
    remaining: usize,
    bytes: Vec<u8>,
    /// Dimensions, outermost first.
    pub shape: Vec<usize>,
    /// The dtype as stored: "f32", "f16" or "f64".
    pub dtype: &'static str,
}

impl NpyRows {
    /// Opens `path` and reads its header.
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| bad(path, format!("cannot open: {e}")))?;
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        if len == 0 {
            return Err(bad(path, "the file is empty"));
        }
        let npy = npyz::NpyFile::new(BufReader::new(file))
            .map_err(|e| bad(path, format!("not a valid .npy file: {e}")))?;
        if npy.order() != npyz::Order::C {
            return Err(bad(
                path,
                "the array is in Fortran order; save it in C order (numpy.ascontiguousarray)",
            ));
        }
        let shape: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
        let npyz::DType::Plain(ts) = npy.dtype() else {
            return Err(bad(
                path,
                "structured arrays are not supported; use f32, f16 or f64",
            ));
        };
        let (stored, dtype) = match (ts.type_char(), ts.size_field()) {
            (npyz::TypeChar::Float, 2) => (Stored::F16, "f16"),
            (npyz::TypeChar::Float, 4) => (Stored::F32, "f32"),
            (npyz::TypeChar::Float, 8) => (Stored::F64, "f64"),
            _ => {
                return Err(bad(
                    path,
                    format!("unsupported dtype '{ts}'; X must be float32, float16 or float64"),
                ))
            }
        };
        let big_endian = ts.endianness() == npyz::Endianness::Big;
        let elements = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        let mut reader = npy.into_inner();
        let data_start = reader
            .stream_position()
            .map_err(|e| bad(path, format!("cannot read: {e}")))?;
        let size = ts.size_field();
        let needed = elements
            .and_then(|n| (n as u64).checked_mul(size))
            .and_then(|b| b.checked_add(data_start));
        match needed {
            Some(needed) if needed <= len => {}
            _ => {
                return Err(bad(
                    path,
                    format!(
                        "the data is truncated: the header promises {shape:?} {dtype} ({} \
                         bytes after the header) but the file has {}",
                        elements.map_or("too many".into(), |n| (n as u64 * size).to_string()),
                        len - data_start
                    ),
                ))
            }
        }
        Ok(Self {
            path: path.to_path_buf(),
            reader,
            stored,
            big_endian,
            remaining: elements.unwrap_or(0),
            bytes: Vec::new(),
            shape,
            dtype,
        })
    }

    /// Elements not read yet.
    pub fn remaining(&self) -> usize {
        self.remaining
    }

    /// Reads the next `dst.len()` elements as f32.
    pub fn read(&mut self, dst: &mut [f32]) -> Result<()> {
        if dst.len() > self.remaining {
            return Err(bad(
                &self.path,
                format!(
                    "asked for {} more elements but only {} remain",
                    dst.len(),
                    self.remaining
                ),
            ));
        }
        let truncated = |e: std::io::Error| {
            bad(
                &self.path,
                format!("the data is truncated or unreadable ({e})"),
            )
        };
        if self.stored == Stored::F32 && self.big_endian == cfg!(target_endian = "big") {
            // Stored as this machine's f32: straight into place, no conversion.
            self.reader
                .read_exact(bytemuck::cast_slice_mut(dst))
                .map_err(truncated)?;
            self.remaining -= dst.len();
            return Ok(());
        }
        let size = match self.stored {
            Stored::F16 => 2,
            Stored::F32 => 4,
            Stored::F64 => 8,
        };
        self.bytes.resize(dst.len() * size, 0);
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
/// fails unless exactly the promised number of elements was written.
pub struct NpyRowWriter {
    path: std::path::PathBuf,
    writer: BufWriter<File>,
    remaining: u64,
}

impl NpyRowWriter {
    /// Creates (or truncates) `path` and writes the header for an array of `shape`.
    pub fn create(path: &Path, shape: &[u64]) -> Result<Self> {
        let io_err =
            |e: std::io::Error| Error::Input(format!("{}: cannot write: {e}", path.display()));
        let mut writer = BufWriter::with_capacity(1 << 20, File::create(path).map_err(io_err)?);
        // npyz writes the header; the data follows as raw little-endian f32.
        npyz::WriteOptions::new_header_only()
            .dtype(npyz::DType::new_scalar(
                "<f4".parse().expect("a valid type string"),
            ))
            .shape(shape)
            .writer(&mut writer)
            .write_header_only()
            .map_err(io_err)?;
        Ok(Self {
            path: path.to_path_buf(),
            writer,
            remaining: shape.iter().product(),
        })
    }

    /// Appends `data`.
    pub fn write(&mut self, data: &[f32]) -> Result<()> {
        if data.len() as u64 > self.remaining {
            return Err(Error::Input(format!(
                "{}: {} more elements than its shape holds",
                self.path.display(),
                data.len() as u64 - self.remaining
            )));
        }
        let written = if cfg!(target_endian = "little") {
            self.writer.write_all(bytemuck::cast_slice(data))
        } else {
            let bytes: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
            self.writer.write_all(&bytes)
        };
        written.map_err(|e| Error::Input(format!("{}: cannot write: {e}", self.path.display())))?;
        self.remaining -= data.len() as u64;
        Ok(())
    }

    /// Flushes the file; an error if elements are missing.
    pub fn finish(mut self) -> Result<()> {
        if self.remaining != 0 {
            return Err(Error::Input(format!(
                "{}: {} elements were never written",
                self.path.display(),
                self.remaining
            )));
        }
        self.writer
            .flush()
            .map_err(|e| Error::Input(format!("{}: cannot write: {e}", self.path.display())))
    }
}

/// Writes `data` as a C-order little-endian f32 `.npy` file of dimensions `shape`.
pub fn write_f32(path: &Path, shape: &[u64], data: &[f32]) -> Result<()> {
    let io_err = |e: std::io::Error| Error::Input(format!("{}: cannot write: {e}", path.display()));
    let file = File::create(path).map_err(io_err)?;
    let mut writer = npyz::WriteOptions::new()
        .default_dtype()
        .shape(shape)
        .writer(BufWriter::new(file))
        .begin_nd()
        .map_err(io_err)?;
    writer.extend(data.iter().copied()).map_err(io_err)?;
    writer.finish().map_err(io_err)
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
        assert!(e.contains("not a valid .npy"), "{e}");

        let full = dir.path().join("full.npy");
        write_f32(&full, &[4, 4], &[1.0; 16]).unwrap();
        let bytes = std::fs::read(&full).unwrap();
        let cut = dir.path().join("cut.npy");
        std::fs::write(&cut, &bytes[..bytes.len() - 10]).unwrap();
        let e = read_f32(&cut).unwrap_err().to_string();
        assert!(e.contains("truncated"), "{e}");

        let ints = dir.path().join("ints.npy");
        npyz::to_file_1d(&ints, vec![1i32, 2, 3]).unwrap();
        let e = read_f32(&ints).unwrap_err().to_string();
        assert!(e.contains("unsupported dtype '<i4'"), "{e}");
    }
}
