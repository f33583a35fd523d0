//! safetensors checkpoints: the header parsed once when the file is opened, each tensor read
//! from its offset when asked for (F32, or F16 / BF16 kept as stored), and the Q/K/V
//! projection of one attention layer found by the naming conventions of common model
//! families, or by explicit names. Reads go through `read` at an offset, not a memory map: a
//! file truncated while it loads is an error naming it, not a SIGBUS.
//!
//! | family  | tensors under a prefix P                                  | stored as         |
//! |---------|-----------------------------------------------------------|-------------------|
//! | BERT    | P.attention.self.{query,key,value}.{weight,bias}          | nn.Linear [out, in] |
//! | Llama   | P.self_attn.{q,k,v}_proj.weight (+ .bias, e.g. Qwen)      | nn.Linear [out, in] |
//! | GPT-2   | P.attn.c_attn.weight [d_model, 3·d_model], P.attn.c_attn.bias | Conv1D [in, out] |

mod family;
mod fuse;

use crate::io::source::Source;
pub use family::{Family, Names, WeightLayout};
use fuse::{decide_layout, fuse, fuse_one, to_in_out};

use crate::element::ElementType;
use crate::error::{Error, Result};
use crate::io::NonFinite;
use crate::weights::{FusedWeights, WeightData};
use safetensors::tensor::Metadata;
use safetensors::Dtype;
use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};

/// The largest header the safetensors format allows (100 MB).
const MAX_HEADER: u64 = 100_000_000;

/// Which tensors hold the projection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WeightSource {
    /// Find a known family's tensors under this prefix ("" for none).
    Prefix(String),
    /// Exactly these tensors.
    Named(Names<String>),
}

/// What to load, and how to read it.
#[derive(Debug, Clone)]
pub struct WeightRequest {
    /// Where the tensors are.
    pub source: WeightSource,
    /// The stored layout; None: the family's convention, or whatever the shapes prove.
    pub layout: Option<WeightLayout>,
    /// Query heads, needed only to split a fused matrix with grouped K/V.
    pub heads: Option<u32>,
    /// Key/value heads, likewise.
    pub kv_heads: Option<u32>,
}

/// Projection weights read from a checkpoint, fused, with how they were found.
#[derive(Debug, Clone)]
pub struct LoadedWeights {
    /// The weights in the kernels' layout.
    pub weights: FusedWeights,
    /// The family recognized by `--prefix`, if that is how they were found.
    pub family: Option<Family>,
    /// The stored layout that was used.
    pub layout: WeightLayout,
    /// Why that layout: "--weight-layout", "the BERT convention", or "the tensor shapes".
    pub layout_reason: String,
    /// Every tensor read, with its stored dtype and shape.
    pub tensors: Vec<(String, String, Vec<usize>)>,
    /// Non-finite values found in them.
    pub nonfinite: Vec<NonFinite>,
}

/// A tensor as stored: f32, or f16 / bf16 bit patterns (not widened).
#[derive(Debug, Clone)]
pub struct Tensor {
    /// Dimensions as stored.
    pub shape: Vec<usize>,
    /// Elements, row-major, in the stored type.
    pub data: WeightData,
    /// The stored dtype: "F32", "F16" or "BF16".
    pub dtype: String,
}

/// A safetensors file whose header has been read, parsed once and checked against the
/// file's length; its tensors are read when asked for.
pub struct Checkpoint {
    path: PathBuf,
    source: Source,
    /// The header (issue #22, item 13: it was parsed again for every lookup).
    header: Metadata,
    /// Where the data starts: 8 bytes of header length, then the header.
    data_start: u64,
}

impl fmt::Debug for Checkpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Checkpoint")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Checkpoint {
    /// Opens `path`, reads its header and checks it against the file's length.
    pub fn open(path: &Path) -> Result<Self> {
        let bad = |why: String| Error::Input(format!("{}: {why}", path.display()));
        let special = || {
            bad(
                "is not a regular file (a pipe or a device): a checkpoint is read at its \
                 tensors' offsets; give the file itself"
                    .into(),
            )
        };
        // What the path is, before opening it: opening a FIFO would wait for a writer.
        if std::fs::metadata(path).is_ok_and(|m| !m.is_file() && !m.is_dir()) {
            return Err(special());
        }
        let file = File::open(path).map_err(|e| crate::io::open_error(path, e))?;
        let meta = file
            .metadata()
            .map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?;
        if meta.is_dir() {
            return Err(bad(
                "is a directory; give the .safetensors file itself".into()
            ));
        }
        if !meta.is_file() {
            return Err(special());
        }
        if meta.len() == 0 {
            return Err(bad("the file is empty".into()));
        }
        Self::check(path.to_path_buf(), Source::File(file), meta.len())
    }

    /// A checkpoint held in memory (a download, a fuzzer's input); `name` names it in
    /// messages.
    pub fn from_bytes(name: &str, bytes: Vec<u8>) -> Result<Self> {
        if bytes.is_empty() {
            return Err(Error::Input(format!("{name}: the file is empty")));
        }
        let len = bytes.len() as u64;
        Self::check(PathBuf::from(name), Source::Bytes(bytes), len)
    }

    /// Reads and parses the header of `source`, `len` bytes long: the safetensors format's
    /// rules (a little-endian u64 header length up to 100 MB, a JSON header whose tensors'
    /// offsets are contiguous and match their shapes and dtypes) and that the data is exactly
    /// what the header says.
    fn check(path: PathBuf, source: Source, len: u64) -> Result<Self> {
        let invalid = |why: String| {
            Error::Input(format!(
                "{}: not a valid safetensors file (corrupt or truncated header or data): {why}",
                path.display()
            ))
        };
        let io = |e| Error::io(format!("cannot read {}", path.display()), e);
        let n = source
            .read(0, 8)
            .map_err(io)?
            .ok_or_else(|| invalid("shorter than the 8-byte header length".into()))?;
        let n = u64::from_le_bytes(n.try_into().expect("8 bytes"));
        if n > MAX_HEADER {
            return Err(invalid(format!(
                "a header of {n} bytes, past the format's {MAX_HEADER}"
            )));
        }
        if 8 + n > len {
            return Err(invalid(format!("a header of {n} bytes in a file of {len}")));
        }
        let text = source
            .read(8, n as usize)
            .map_err(io)?
            .ok_or_else(|| invalid("the file is shorter than its header".into()))?;
        let text = std::str::from_utf8(&text)
            .map_err(|e| invalid(format!("the header is not UTF-8: {e}")))?;
        let header: Metadata =
            serde_json::from_str(text).map_err(|e| invalid(format!("the header: {e}")))?;
        let data = header.data_len() as u64;
        if (8 + n).checked_add(data) != Some(len) {
            return Err(invalid(format!(
                "the header describes {data} bytes of data; the file holds {}",
                len - 8 - n
            )));
        }
        Ok(Self {
            path,
            source,
            header,
            data_start: 8 + n,
        })
    }

    /// Every tensor name, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names = self.header.offset_keys();
        names.sort();
        names
    }

    /// The names nearest to `name`, for "did you mean" messages.
    pub fn nearest(&self, name: &str, n: usize) -> Vec<String> {
        let mut scored: Vec<(usize, String)> = self
            .names()
            .into_iter()
            .map(|c| (strsim::levenshtein(name, &c), c))
            .collect();
        scored.sort();
        scored.into_iter().take(n).map(|(_, c)| c).collect()
    }

    fn unknown(&self, name: &str) -> Error {
        let near = self.nearest(name, 3);
        Error::Input(format!(
            "{}: no tensor named '{name}'; nearest names: {}",
            self.path.display(),
            if near.is_empty() {
                "(the file holds no tensors)".to_string()
            } else {
                near.join(", ")
            }
        ))
    }

    /// Reads tensor `name` in its stored type (F32, or F16 / BF16 as bit patterns).
    pub fn tensor(&self, name: &str) -> Result<Tensor> {
        let info = self.header.info(name).ok_or_else(|| self.unknown(name))?;
        let (start, end) = info.data_offsets;
        let dtype = info.dtype;
        if !matches!(dtype, Dtype::F32 | Dtype::F16 | Dtype::BF16) {
            return Err(Error::Input(format!(
                "{}: tensor '{name}' has dtype {dtype:?}; supported: F32, F16, BF16",
                self.path.display()
            )));
        }
        let bytes = self
            .source
            .read(self.data_start + start as u64, end - start)
            .map_err(|e| Error::io(format!("cannot read {}", self.path.display()), e))?
            .ok_or_else(|| {
                Error::Input(format!(
                    "{}: the file changed while it was read (it is now shorter than its header \
                     says; tensor '{name}' is past its end)",
                    self.path.display()
                ))
            })?;
        let bits = |e| {
            WeightData::Half(
                e,
                bytes
                    .chunks_exact(2)
                    .map(|c| u16::from_le_bytes([c[0], c[1]]))
                    .collect(),
            )
        };
        let data = match dtype {
            Dtype::F32 => WeightData::F32(
                bytes
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
            ),
            Dtype::F16 => bits(ElementType::F16),
            _ => bits(ElementType::Bf16),
        };
        Ok(Tensor {
            shape: info.shape.clone(),
            data,
            dtype: format!("{dtype:?}"),
        })
    }

    fn has(&self, name: &str) -> bool {
        self.header.info(name).is_some()
    }

    /// Finds one attention layer of a known family under `prefix`.
    pub fn find_family(&self, prefix: &str) -> Result<(Family, Names<String>)> {
        let prefix = prefix.trim_end_matches('.');
        // (family, the layer's stem, whether the prefix names that layer or its attention
        // module exactly).
        let mut found: Vec<(Family, String, bool)> = Vec::new();
        for family in Family::ALL {
            let first = match family.names() {
                Names::Separate { w, .. } => w[0],
                Names::Fused { w, .. } => w,
            };
            for name in self.names() {
                let Some(stem) = name.strip_suffix(first) else {
                    continue;
                };
                // The suffix must start a name component: "xattn.c_attn.weight" is no GPT-2
                // layer "x".
                if !(stem.is_empty() || stem.ends_with('.')) {
                    continue;
                }
                let stem = stem.trim_end_matches('.');
                let module = if stem.is_empty() {
                    family.module().to_string()
                } else {
                    format!("{stem}.{}", family.module())
                };
                let exact = stem == prefix || module == prefix;
                if prefix.is_empty() || exact || stem.starts_with(&format!("{prefix}.")) {
                    found.push((family, stem.to_string(), exact));
                }
            }
        }
        // An exact match of the prefix wins over deeper ones ("layers.1" is not "layers.10").
        if let Some(exact) = found.iter().find(|(_, _, exact)| *exact) {
            found = vec![exact.clone()];
        }
        match found.len() {
            1 => {
                let (family, stem, _) = found.pop().expect("one");
                let full = |suffix: &str| {
                    if stem.is_empty() {
                        suffix.to_string()
                    } else {
                        format!("{stem}.{suffix}")
                    }
                };
                let names = match family.names() {
                    Names::Separate { w, b } => Names::Separate {
                        w: w.map(full),
                        b: b.map(|b| b.map(full))
                            .filter(|b| b.iter().any(|n| self.has(n))),
                    },
                    Names::Fused { w, b } => Names::Fused {
                        w: full(w),
                        b: b.map(full).filter(|n| self.has(n)),
                    },
                };
                Ok((family, names))
            }
            0 => {
                let looked: Vec<String> = Family::ALL
                    .iter()
                    .map(|f| {
                        let first = match f.names() {
                            Names::Separate { w, .. } => w[0],
                            Names::Fused { w, .. } => w,
                        };
                        let p = if prefix.is_empty() {
                            String::new()
                        } else {
                            format!("{prefix}.")
                        };
                        format!("{p}{first} ({})", f.name())
                    })
                    .collect();
                let near = self.nearest(&format!("{prefix}.attention"), 3);
                Err(Error::Input(format!(
                    "{}: no Q/K/V projection found under prefix '{prefix}'; looked for {}; \
                     nearest names: {}",
                    self.path.display(),
                    looked.join(", "),
                    near.join(", ")
                )))
            }
            _ => {
                let stems: Vec<String> = found
                    .iter()
                    .take(6)
                    .map(|(f, s, _)| format!("'{s}' ({})", f.name()))
                    .collect();
                Err(Error::Input(format!(
                    "{}: prefix '{prefix}' matches {} attention layers, e.g. {}; give the \
                     prefix of one layer",
                    self.path.display(),
                    found.len(),
                    stems.join(", ")
                )))
            }
        }
    }

    /// The width of X (d_model) the weights `request` names take, from the header alone:
    /// the in-features of the first matrix, in the layout the request or the family gives;
    /// with neither, a square matrix (both layouts agree), else an error asking for
    /// `weight_layout`.
    pub fn d_model_of(&self, request: &WeightRequest) -> Result<u32> {
        let (family, names) = match &request.source {
            WeightSource::Prefix(p) => {
                let (f, n) = self.find_family(p)?;
                (Some(f), n)
            }
            WeightSource::Named(n) => (None, n.clone()),
        };
        let first = match &names {
            Names::Separate { w, .. } => w[0].clone(),
            Names::Fused { w, .. } => w.clone(),
        };
        let info = self
            .header
            .info(&first)
            .ok_or_else(|| self.unknown(&first))?;
        let shape = &info.shape;
        let &[rows, cols] = shape.as_slice() else {
            return Err(Error::Input(format!(
                "tensor '{first}' has shape {shape:?}; a projection weight must be 2-D"
            )));
        };
        let d = match request.layout.or(family.map(Family::layout)) {
            Some(WeightLayout::InOut) => rows,
            Some(WeightLayout::OutIn) => cols,
            None if rows == cols => rows,
            None => {
                return Err(Error::Input(format!(
                    "tensor '{first}' is [{rows}, {cols}]: its layout says which is d_model; \
                     give `weight_layout` (out-in or in-out)"
                )))
            }
        };
        u32::try_from(d).map_err(|_| Error::Shape(format!("d_model {d} is too large")))
    }

    /// Loads and fuses the projection described by `request`, for X with `d_model` columns.
    pub fn load_qkv(&self, request: &WeightRequest, d_model: u32) -> Result<LoadedWeights> {
        let (family, names) = match &request.source {
            WeightSource::Prefix(p) => {
                let (f, n) = self.find_family(p)?;
                (Some(f), n)
            }
            WeightSource::Named(n) => (None, n.clone()),
        };
        let mut tensors = Vec::new();
        let mut nonfinite = Vec::new();
        let mut read = |name: &str| -> Result<Tensor> {
            let t = self.tensor(name)?;
            if let Some(nf) = NonFinite::scan_values(name, t.data.values(), &t.shape) {
                nonfinite.push(nf);
            }
            tensors.push((name.to_string(), t.dtype.clone(), t.shape.clone()));
            Ok(t)
        };
        let (mats, biases, fused) = match &names {
            Names::Separate { w, b } => {
                let mats = [read(&w[0])?, read(&w[1])?, read(&w[2])?];
                let biases = match b {
                    Some(b) => Some([read(&b[0])?, read(&b[1])?, read(&b[2])?]),
                    None => None,
                };
                (mats.to_vec(), biases.map(|b| b.to_vec()), None)
            }
            Names::Fused { w, b } => {
                let m = read(w)?;
                let bias = match b {
                    Some(b) => Some(vec![read(b)?]),
                    None => None,
                };
                (vec![m], bias, Some(w.clone()))
            }
        };
        let mat_names: Vec<String> = match &names {
            Names::Separate { w, .. } => w.to_vec(),
            Names::Fused { w, .. } => vec![w.clone()],
        };
        for (m, name) in mats.iter().zip(&mat_names) {
            if m.shape.len() != 2 {
                return Err(Error::Input(format!(
                    "tensor '{name}' has shape {:?}; a projection weight must be 2-D",
                    m.shape
                )));
            }
        }
        let (layout, layout_reason) = match (request.layout, family) {
            (Some(l), _) => (l, "`weight_layout`".to_string()),
            (None, Some(f)) => (f.layout(), format!("the {} convention", f.name())),
            (None, None) => (
                decide_layout(&mats, &mat_names, d_model)?,
                "the tensor shapes".into(),
            ),
        };
        let in_out = to_in_out(mats, &mat_names, layout, d_model)?;
        // Biases are n_out elements: widened to f32 (exactly) whatever their type.
        let bias_data: Option<Vec<Vec<f32>>> =
            biases.map(|b| b.into_iter().map(|t| t.data.values().collect()).collect());
        let weights = match fused {
            Some(name) => fuse_one(&in_out[0], bias_data, request, &name, d_model)?,
            None => {
                let widths = [in_out[0].1, in_out[1].1, in_out[2].1];
                let mut taken = in_out.into_iter().map(|(d, _)| d);
                let mut next = || taken.next().expect("three matrices");
                let parts = [next(), next(), next()];
                let bias_parts = bias_data.map(|b| [b[0].clone(), b[1].clone(), b[2].clone()]);
                fuse(d_model, &parts, widths, bias_parts.as_ref())?
            }
        };
        Ok(LoadedWeights {
            weights,
            family,
            layout,
            layout_reason,
            tensors,
            nonfinite,
        })
    }
}
