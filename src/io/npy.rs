//! NumPy `.npy` files through the `npyz` crate: X in, as f32 from f32, f16 or f64; Q, K, V
//! out as f32. C order only (NumPy's default); anything else is refused with the reason.

use crate::error::{Error, Result};
use npyz::WriterBuilder;
use std::fs::File;
use std::io::{BufReader, BufWriter};
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
    let (kind, size) = (ts.type_char(), ts.size_field());
    let truncated = |e: std::io::Error| {
        bad(
            path,
            format!("the data is truncated or unreadable ({e}); the header promises {shape:?}"),
        )
    };
    let (data, dtype) = match (kind, size) {
        (npyz::TypeChar::Float, 4) => (npy.into_vec::<f32>().map_err(truncated)?, "f32"),
        (npyz::TypeChar::Float, 2) => (
            npy.into_vec::<half::f16>()
                .map_err(truncated)?
                .into_iter()
                .map(f32::from)
                .collect(),
            "f16",
        ),
        (npyz::TypeChar::Float, 8) => (
            npy.into_vec::<f64>()
                .map_err(truncated)?
                .into_iter()
                .map(|v| v as f32)
                .collect(),
            "f64",
        ),
        _ => {
            return Err(bad(
                path,
                format!("unsupported dtype '{ts}'; X must be float32, float16 or float64"),
            ))
        }
    };
    Ok(NpyArray { shape, data, dtype })
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
