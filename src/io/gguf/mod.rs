//! GGUF files (llama.cpp's checkpoints, versions 2 and 3): the header parsed once when the
//! file is opened (the metadata, the tensor table and the alignment of the data), each
//! tensor's bytes read from its offset when asked for, in its ggml format as stored
//! ([`GgmlType`]). Nothing in the file is trusted: every count, length, dimension and offset
//! is checked against the file's length (and the arithmetic against overflow) before it is
//! used, so a truncated or crafted file is refused with the reason, never read past its end
//! or allowed to reserve memory it does not hold. Reads go through `read` at an offset, as
//! the safetensors reader's do ([`crate::io::checkpoint`]).
//!
//! The layout (ggml's `docs/gguf.md`): the magic `GGUF`, the version (u32), the tensor
//! count and the metadata count (u64 each), the metadata as (key, type, value), the tensor
//! table as (name, dimensions, type, offset), then the data, starting at the next multiple
//! of the alignment (`general.alignment`, 32 by default), each tensor's offset relative to
//! it. All little-endian. Dimensions are ggml's order: the first is the row (contiguous), so
//! a linear layer's `[out, in]` weight is stored with dimensions `[in, out]`.

mod epilogue;
mod formats;
mod layer;

pub use epilogue::GgufEpilogue;

pub use formats::GgmlType;
pub use layer::{AttentionLayer, REORDERED_ARCHITECTURES};

use crate::error::{Error, Result};
use crate::io::source::Source;
use std::collections::BTreeMap;
use std::fs::File;
use std::path::Path;

/// The alignment of the data when the file names none.
const DEFAULT_ALIGNMENT: u64 = 32;
/// Arrays of metadata longer than this are kept as their type and length only (a tokenizer's
/// vocabulary): the header's scalars are what a projection needs.
const KEPT_ARRAY: u64 = 1024;
/// ggml's most dimensions (`GGML_MAX_DIMS`).
const MAX_DIMS: u32 = 4;
/// How deep arrays of arrays may nest.
const MAX_NESTING: u32 = 4;
/// Bytes read from the file at a time while parsing the header.
const WINDOW: usize = 1 << 20;

/// A metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Any unsigned integer type (u8 to u64).
    Uint(u64),
    /// Any signed integer type (i8 to i64).
    Int(i64),
    /// f32 or f64.
    Float(f64),
    /// A bool.
    Bool(bool),
    /// A string (invalid UTF-8 replaced).
    Str(String),
    /// An array: its items, or None past [`KEPT_ARRAY`] of them (its length is kept).
    Array {
        /// Its items' type number in the file.
        item_type: u32,
        /// Its length.
        len: u64,
        /// The items, when kept.
        items: Option<Vec<Value>>,
    },
}

/// One tensor of the table.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    /// Its name (`blk.0.attn_q.weight`).
    pub name: String,
    /// Its dimensions in ggml's order: `dims[0]` is the row (contiguous).
    pub dims: Vec<u64>,
    /// Its format.
    pub ty: GgmlType,
    /// Where its bytes start in the file.
    pub offset: u64,
    /// How many bytes it takes.
    pub bytes: u64,
}

/// A GGUF file whose header has been parsed and checked.
pub struct Gguf {
    name: String,
    source: Source,
    /// The format version (2 or 3).
    pub version: u32,
    /// The data's alignment.
    pub alignment: u64,
    /// The metadata, by key.
    pub metadata: BTreeMap<String, Value>,
    /// The tensor table, in the file's order.
    pub tensors: Vec<TensorInfo>,
}

impl std::fmt::Debug for Gguf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gguf")
            .field("name", &self.name)
            .field("version", &self.version)
            .field("tensors", &self.tensors.len())
            .finish_non_exhaustive()
    }
}

/// Reads the header through a window of the source, refusing to go past the file's end.
struct Reader<'a> {
    name: &'a str,
    source: &'a Source,
    len: u64,
    pos: u64,
    window: Vec<u8>,
    window_at: u64,
}

impl<'a> Reader<'a> {
    fn bad(&self, why: impl std::fmt::Display) -> Error {
        Error::Input(format!("{}: not a valid GGUF file: {why}", self.name))
    }

    /// The next `n` bytes.
    fn take(&mut self, n: u64, what: &str) -> Result<&[u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.len);
        let Some(end) = end else {
            return Err(self.bad(format!(
                "{what} at byte {} needs {n} bytes; the file ends at {} (truncated?)",
                self.pos, self.len
            )));
        };
        let in_window =
            self.pos >= self.window_at && end <= self.window_at + self.window.len() as u64;
        if !in_window {
            let want = (n as usize).max(WINDOW).min((self.len - self.pos) as usize);
            let read = self
                .source
                .read(self.pos, want)
                .map_err(|e| Error::io(format!("cannot read {}", self.name), e))?;
            self.window = read.ok_or_else(|| {
                Error::Input(format!(
                    "{}: the file was shortened while it was read",
                    self.name
                ))
            })?;
            self.window_at = self.pos;
        }
        let start = (self.pos - self.window_at) as usize;
        self.pos = end;
        Ok(&self.window[start..start + n as usize])
    }

    fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(4, what)?.try_into().unwrap()))
    }

    fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.take(8, what)?.try_into().unwrap()))
    }

    fn string(&mut self, what: &str) -> Result<String> {
        let n = self.u64(what)?;
        Ok(String::from_utf8_lossy(self.take(n, what)?).into_owned())
    }

    /// A count of items of at least `min_bytes` each, checked against the bytes left.
    fn count(&mut self, what: &str, min_bytes: u64) -> Result<u64> {
        let n = self.u64(what)?;
        let left = self.len - self.pos;
        if n.checked_mul(min_bytes).is_none_or(|b| b > left) {
            return Err(self.bad(format!(
                "{what} is {n}, more than the {left} bytes left could hold"
            )));
        }
        Ok(n)
    }

    /// A value of type `ty`.
    fn value(&mut self, ty: u32, key: &str, depth: u32) -> Result<Value> {
        let fixed = |r: &mut Self, n| r.take(n, key).map(|b| b.to_vec());
        Ok(match ty {
            0 => Value::Uint(fixed(self, 1)?[0] as u64),
            1 => Value::Int(fixed(self, 1)?[0] as i8 as i64),
            2 => Value::Uint(u16::from_le_bytes(fixed(self, 2)?.try_into().unwrap()) as u64),
            3 => Value::Int(i16::from_le_bytes(fixed(self, 2)?.try_into().unwrap()) as i64),
            4 => Value::Uint(self.u32(key)? as u64),
            5 => Value::Int(self.u32(key)? as i32 as i64),
            6 => Value::Float(f32::from_bits(self.u32(key)?) as f64),
            7 => match fixed(self, 1)?[0] {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                b => return Err(self.bad(format!("{key}: a bool of value {b}"))),
            },
            8 => Value::Str(self.string(key)?),
            9 => self.array(key, depth)?,
            10 => Value::Uint(self.u64(key)?),
            11 => Value::Int(self.u64(key)? as i64),
            12 => Value::Float(f64::from_bits(self.u64(key)?)),
            t => return Err(self.bad(format!("{key}: unknown value type {t}"))),
        })
    }

    fn array(&mut self, key: &str, depth: u32) -> Result<Value> {
        if depth >= MAX_NESTING {
            return Err(self.bad(format!("{key}: arrays nested deeper than {MAX_NESTING}")));
        }
        let item_type = self.u32(key)?;
        let size = match item_type {
            0 | 1 | 7 => 1,
            2 | 3 => 2,
            4..=6 => 4,
            10..=12 => 8,
            // A string or an array: at least its length.
            8 | 9 => 8,
            t => return Err(self.bad(format!("{key}: an array of unknown type {t}"))),
        };
        let len = self.count(&format!("{key}'s length"), size)?;
        if len > KEPT_ARRAY {
            for _ in 0..len {
                if matches!(item_type, 8 | 9) {
                    self.value(item_type, key, depth + 1)?;
                } else {
                    self.take(size, key)?;
                }
            }
            return Ok(Value::Array {
                item_type,
                len,
                items: None,
            });
        }
        let items = (0..len)
            .map(|_| self.value(item_type, key, depth + 1))
            .collect::<Result<Vec<_>>>()?;
        Ok(Value::Array {
            item_type,
            len,
            items: Some(items),
        })
    }

    /// One entry of the tensor table, its offset still relative to the data.
    fn tensor(&mut self) -> Result<TensorInfo> {
        let name = self.string("a tensor's name")?;
        let n_dims = self.u32(&name)?;
        if n_dims == 0 || n_dims > MAX_DIMS {
            return Err(self.bad(format!("{name}: {n_dims} dimensions (1 to {MAX_DIMS})")));
        }
        let dims = (0..n_dims)
            .map(|_| self.u64(&name))
            .collect::<Result<Vec<_>>>()?;
        let ty = GgmlType(self.u32(&name)?);
        let offset = self.u64(&name)?;
        let bytes = tensor_bytes(&name, &dims, ty).map_err(|why| self.bad(why))?;
        Ok(TensorInfo {
            name,
            dims,
            ty,
            offset,
            bytes,
        })
    }
}

/// The bytes of a tensor of `dims` in `ty`, or why it has none.
fn tensor_bytes(name: &str, dims: &[u64], ty: GgmlType) -> std::result::Result<u64, String> {
    let Some((per, _)) = ty.block() else {
        return Err(format!("{name}: {ty} is not a ggml type"));
    };
    if dims.contains(&0) {
        return Err(format!("{name}: a dimension of 0 in {dims:?}"));
    }
    let rows = dims[1..]
        .iter()
        .try_fold(1u64, |a, &d| a.checked_mul(d))
        .ok_or_else(|| format!("{name}: dimensions {dims:?} overflow"))?;
    if !dims[0].is_multiple_of(per) {
        return Err(format!(
            "{name}: rows of {} elements are not whole {ty} blocks of {per}",
            dims[0]
        ));
    }
    let row = ty
        .row_bytes(dims[0])
        .ok_or_else(|| format!("{name}: dimensions {dims:?} overflow"))?;
    row.checked_mul(rows)
        .ok_or_else(|| format!("{name}: dimensions {dims:?} overflow"))
}

/// Whether `path` is a regular file that starts with GGUF's magic (`GGUF`): how `qkv
/// project` and the Python module tell a GGUF checkpoint from a safetensors one. A pipe or a
/// device is not opened (opening a FIFO waits for a writer).
pub fn is_gguf(path: &Path) -> bool {
    use std::io::Read;
    if !std::fs::metadata(path).is_ok_and(|m| m.is_file()) {
        return false;
    }
    let mut magic = [0u8; 4];
    File::open(path).is_ok_and(|mut f| f.read_exact(&mut magic).is_ok() && &magic == b"GGUF")
}

impl Gguf {
    /// Opens `path` and parses and checks its header.
    pub fn open(path: &Path) -> Result<Self> {
        let shown = path.display().to_string();
        if std::fs::metadata(path).is_ok_and(|m| !m.is_file() && !m.is_dir()) {
            return Err(Error::Input(format!(
                "{shown}: is not a regular file (a pipe or a device): a GGUF file is read at \
                 its tensors' offsets; give the file itself"
            )));
        }
        let file = File::open(path).map_err(|e| crate::io::open_error(path, e))?;
        let len = file
            .metadata()
            .map_err(|e| Error::io(format!("cannot read {shown}"), e))?
            .len();
        Self::parse(shown, Source::File(file), len)
    }

    /// A GGUF file held in memory (a fuzzer's input, a test's); `name` names it in messages.
    pub fn from_bytes(name: &str, bytes: Vec<u8>) -> Result<Self> {
        let len = bytes.len() as u64;
        Self::parse(name.to_string(), Source::Bytes(bytes), len)
    }

    fn parse(name: String, source: Source, len: u64) -> Result<Self> {
        let mut r = Reader {
            name: &name,
            source: &source,
            len,
            pos: 0,
            window: Vec::new(),
            window_at: 0,
        };
        if len == 0 {
            return Err(Error::Input(format!("{name}: the file is empty")));
        }
        if r.take(4, "the magic").ok() != Some(b"GGUF".as_slice()) {
            return Err(r.bad("it does not start with `GGUF`"));
        }
        let version = r.u32("the version")?;
        if !matches!(version, 2 | 3) {
            return Err(r.bad(format!("version {version}; versions 2 and 3 are read")));
        }
        // The smallest tensor entry: a name's length, 1 dimension, a type, an offset.
        let n_tensors = r.count("the tensor count", 8 + 4 + 8 + 4 + 8)?;
        // The smallest metadata entry: a key's length, a type, one byte of value.
        let n_meta = r.count("the metadata count", 8 + 4 + 1)?;
        let mut metadata = BTreeMap::new();
        for _ in 0..n_meta {
            let key = r.string("a metadata key")?;
            let ty = r.u32(&key)?;
            let value = r.value(ty, &key, 0)?;
            if metadata.insert(key.clone(), value).is_some() {
                return Err(r.bad(format!("the key {key} appears twice")));
            }
        }
        let alignment = match metadata.get("general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some(Value::Uint(a)) if a.is_power_of_two() && *a <= 1 << 16 => *a,
            Some(v) => {
                return Err(r.bad(format!(
                    "general.alignment is {v:?}; a power of two up to 65536 is expected"
                )))
            }
        };
        let mut tensors = Vec::with_capacity(n_tensors as usize);
        for _ in 0..n_tensors {
            tensors.push(r.tensor()?);
        }
        let data = r.pos.next_multiple_of(alignment);
        check_table(&r, &mut tensors, data, alignment)?;
        Ok(Self {
            name,
            source,
            version,
            alignment,
            metadata,
            tensors,
        })
    }

    /// The tensor named `name`.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// The bytes of `tensor` as stored (its ggml format).
    pub fn read(&self, tensor: &TensorInfo) -> Result<Vec<u8>> {
        let n = usize::try_from(tensor.bytes)
            .map_err(|_| Error::Input(format!("{}: {} is too large", self.name, tensor.name)))?;
        self.source
            .read(tensor.offset, n)
            .map_err(|e| Error::io(format!("cannot read {}", self.name), e))?
            .ok_or_else(|| {
                Error::Input(format!(
                    "{}: {} ends past the file's end (the file was shortened?)",
                    self.name, tensor.name
                ))
            })
    }

    /// The unsigned integer at `key`, if it is one.
    pub fn uint(&self, key: &str) -> Option<u64> {
        match self.metadata.get(key)? {
            Value::Uint(v) => Some(*v),
            Value::Int(v) => u64::try_from(*v).ok(),
            _ => None,
        }
    }

    /// The string at `key`, if it is one.
    pub fn string(&self, key: &str) -> Option<&str> {
        match self.metadata.get(key)? {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The model's architecture (`general.architecture`: "llama", "qwen2", ...), which
    /// prefixes its hyperparameters' keys.
    pub fn architecture(&self) -> Option<&str> {
        self.string("general.architecture")
    }
}

/// Makes each tensor's offset absolute and checks the table: names unique, offsets aligned,
/// every tensor inside the file and none overlapping another.
fn check_table(r: &Reader, tensors: &mut [TensorInfo], data: u64, alignment: u64) -> Result<()> {
    let mut seen = std::collections::HashSet::new();
    for t in tensors.iter_mut() {
        if !seen.insert(t.name.clone()) {
            return Err(r.bad(format!("the tensor {} appears twice", t.name)));
        }
        if !t.offset.is_multiple_of(alignment) {
            return Err(r.bad(format!(
                "{}: offset {} is not a multiple of the alignment {alignment}",
                t.name, t.offset
            )));
        }
        let start = data.checked_add(t.offset);
        let end = start.and_then(|s| s.checked_add(t.bytes));
        match (start, end) {
            (Some(s), Some(e)) if e <= r.len => t.offset = s,
            _ => {
                return Err(r.bad(format!(
                    "{}: {} bytes at data offset {} end past the file's {} bytes (truncated?)",
                    t.name, t.bytes, t.offset, r.len
                )))
            }
        }
    }
    let mut spans: Vec<(u64, u64, &str)> = tensors
        .iter()
        .map(|t| (t.offset, t.offset + t.bytes, t.name.as_str()))
        .collect();
    spans.sort();
    for w in spans.windows(2) {
        if w[1].0 < w[0].1 {
            return Err(r.bad(format!("{} and {} overlap", w[0].2, w[1].2)));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
