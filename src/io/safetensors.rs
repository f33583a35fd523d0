//! Q, K and V written as one safetensors file, streamed: the header (tensors `q`, `k`, `v`
//! in their stored type, F32, F16 or BF16, and metadata naming the source) is written first,
//! since every shape is known before the run, and each chunk's rows are then written at
//! their place in each tensor's data. This is how bf16 results are kept as bf16 (NumPy has no
//! bf16 type); `qkv project --out-format safetensors` writes it for any type.

use crate::element::ElementType;
use crate::error::{Error, Result};
use crate::host::Elements;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Seek, SeekFrom, Write};

/// The safetensors dtype name of an element type.
pub fn dtype_name(element: ElementType) -> &'static str {
    match element {
        ElementType::F32 => "F32",
        ElementType::F16 => "F16",
        ElementType::Bf16 => "BF16",
    }
}

/// One tensor of the file being written.
struct Region {
    name: String,
    /// Byte offset of its data in the file.
    start: u64,
    /// Elements it holds, and how many are written so far.
    len: u64,
    written: u64,
}

/// A safetensors file of named tensors written in order, chunk by chunk.
pub struct SafetensorsWriter {
    file: File,
    shown: String,
    element: ElementType,
    regions: Vec<Region>,
    bytes: Vec<u8>,
}

impl SafetensorsWriter {
    /// Writes the header of `tensors` (name, dimensions), all of `element`, with `metadata`,
    /// into `file` (empty, opened for writing); `shown` names it in errors.
    pub fn new(
        file: File,
        shown: &str,
        element: ElementType,
        tensors: &[(&str, &[u64])],
        metadata: &BTreeMap<String, String>,
    ) -> Result<Self> {
        let mut header = serde_json::Map::new();
        let mut regions = Vec::new();
        let mut offset = 0u64;
        for (name, dims) in tensors {
            let len = dims
                .iter()
                .try_fold(1u64, |a, &d| a.checked_mul(d))
                .ok_or_else(|| Error::Shape(format!("{shown}: {name} {dims:?} is too large")))?;
            let bytes = len * element.size();
            header.insert(
                name.to_string(),
                serde_json::json!({
                    "dtype": dtype_name(element),
                    "shape": dims,
                    "data_offsets": [offset, offset + bytes],
                }),
            );
            regions.push(Region {
                name: name.to_string(),
                start: offset,
                len,
                written: 0,
            });
            offset += bytes;
        }
        header.insert("__metadata__".into(), serde_json::json!(metadata));
        let mut json = serde_json::to_vec(&header).expect("a header serializes");
        // The data starts 8-byte aligned, as the format recommends (padded with spaces).
        while !json.len().is_multiple_of(8) {
            json.push(b' ');
        }
        let data_start = 8 + json.len() as u64;
        for r in &mut regions {
            r.start += data_start;
        }
        let mut w = Self {
            file,
            shown: shown.to_string(),
            element,
            regions,
            bytes: Vec::new(),
        };
        let io = |e| Error::io(format!("cannot write {shown}"), e);
        w.file
            .write_all(&(json.len() as u64).to_le_bytes())
            .and_then(|_| w.file.write_all(&json))
            .map_err(io)?;
        // The file's full length, its blocks allocated now, so that a full disk shows before
        // the run, not after.
        crate::io::reserve(&w.file, data_start + offset, shown)?;
        w.file.set_len(data_start + offset).map_err(io)?;
        Ok(w)
    }

    /// Appends `data` (values of the writer's element type, as f32) to tensor `index`.
    pub fn write(&mut self, index: usize, data: Elements<'_>) -> Result<()> {
        let r = &mut self.regions[index];
        if r.written + data.len() as u64 > r.len {
            return Err(Error::Input(format!(
                "{}: {} more elements than tensor {} holds",
                self.shown,
                r.written + data.len() as u64 - r.len,
                r.name
            )));
        }
        self.bytes.clear();
        data.encode(self.element, &mut self.bytes);
        let at = r.start + r.written * self.element.size();
        let io = |e| Error::io(format!("cannot write {}", self.shown), e);
        self.file
            .seek(SeekFrom::Start(at))
            .and_then(|_| self.file.write_all(&self.bytes))
            .map_err(io)?;
        r.written += data.len() as u64;
        Ok(())
    }

    /// Hands the file back once every tensor is complete; an error if one is not.
    pub fn finish(self) -> Result<File> {
        if let Some(r) = self.regions.iter().find(|r| r.written != r.len) {
            return Err(Error::Input(format!(
                "{}: {} elements of {} were never written",
                self.shown,
                r.len - r.written,
                r.name
            )));
        }
        Ok(self.file)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::checkpoint::Checkpoint;
    use crate::weights::WeightData;

    #[test]
    fn written_in_pieces_reads_back_in_its_type_with_metadata() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.safetensors");
        let meta = BTreeMap::from([("source".to_string(), "x.npy".to_string())]);
        let (a, b) = ([2u64, 3], [2u64, 1]);
        let file = File::create(&path).unwrap();
        let mut w =
            SafetensorsWriter::new(file, "t", ElementType::Bf16, &[("q", &a), ("k", &b)], &meta)
                .unwrap();
        // Row by row, interleaved as chunks arrive.
        w.write(0, Elements::F32(&[1.0, 2.0, 3.0])).unwrap();
        w.write(1, Elements::F32(&[-1.5])).unwrap();
        w.write(0, Elements::F32(&[4.0, 5.0, 6.0])).unwrap();
        assert!(
            w.write(0, Elements::F32(&[7.0])).is_err(),
            "past the end of q"
        );
        w.write(1, Elements::F32(&[0.25])).unwrap();
        w.finish().unwrap().sync_all().unwrap();
        let ckpt = Checkpoint::open(&path).unwrap();
        let q = ckpt.tensor("q").unwrap();
        assert_eq!(
            (q.shape.as_slice(), q.dtype.as_str()),
            (&[2, 3][..], "BF16")
        );
        assert!(matches!(q.data, WeightData::Half(ElementType::Bf16, _)));
        let values: Vec<f32> = q.data.values().collect();
        assert_eq!(values, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let k: Vec<f32> = ckpt.tensor("k").unwrap().data.values().collect();
        assert_eq!(k, [-1.5, 0.25]);
        let bytes = std::fs::read(&path).unwrap();
        let (_, st_meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
        assert_eq!(
            st_meta.metadata().as_ref().unwrap().get("source").unwrap(),
            "x.npy"
        );

        // Incomplete: refused.
        let file = File::create(dir.path().join("u.safetensors")).unwrap();
        let w = SafetensorsWriter::new(file, "u", ElementType::F32, &[("q", &a)], &meta).unwrap();
        assert!(w
            .finish()
            .unwrap_err()
            .to_string()
            .contains("never written"));
    }
}
