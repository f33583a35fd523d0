//! One attention layer's Q, K and V projections found in a GGUF file by llama.cpp's tensor
//! names, each matrix kept in its stored format, with the head counts and d_model the file's
//! metadata gives.
//!
//! llama.cpp names a layer's tensors `blk.N.attn_q.weight`, `blk.N.attn_k.weight`,
//! `blk.N.attn_v.weight` (their biases `.bias`), or one fused `blk.N.attn_qkv.weight` whose
//! rows are Q's, then K's, then V's. A linear layer's weight is stored `[out, in]` (ggml's
//! dimensions `[in, out]`): a row per output feature, along d_model, in whole blocks of its
//! format. The hyperparameters are under the architecture's name:
//! `{arch}.embedding_length` (d_model), `{arch}.attention.head_count` and
//! `{arch}.attention.head_count_kv`.

use super::{Gguf, TensorInfo};
use crate::error::{Error, Result};
use crate::quant::{StoredMatrix, WeightType};
use crate::weights::FusedWeights;

/// Architectures whose Q and K rows llama.cpp's converter reorders for its RoPE
/// (`LlamaModel.permute` in `convert_hf_to_gguf.py`: within each head, the rotary pairs
/// (i, i + head_dim/2) of the Hugging Face layout become adjacent rows (2i, 2i + 1)).
pub const REORDERED_ARCHITECTURES: &[&str] = &["llama", "deci", "granite", "granitemoe"];

/// The Q, K and V projections of one attention layer of a GGUF file.
#[derive(Debug, Clone, PartialEq)]
pub struct AttentionLayer {
    /// The prefix the tensors were found under (`blk.0`).
    pub prefix: String,
    /// `general.architecture`, if the file names one.
    pub architecture: Option<String>,
    /// d_model: the length of every row.
    pub d_model: u32,
    /// Query heads, from the metadata.
    pub heads: Option<u32>,
    /// Key/value heads, from the metadata (equal to `heads` when the file names none).
    pub kv_heads: Option<u32>,
    /// Wq, Wk, Wv: rows are output features, each in its stored format.
    pub matrices: [StoredMatrix; 3],
    /// bq, bk, bv widened to f32, when the layer has biases.
    pub bias: Option<[Vec<f32>; 3]>,
    /// The tensors read: name, format, ggml dimensions.
    pub tensors: Vec<(String, WeightType, Vec<u64>)>,
    /// Q's and K's rows are in llama.cpp's order for its RoPE, not the original model's
    /// ([`REORDERED_ARCHITECTURES`]).
    pub rows_reordered: bool,
}

impl AttentionLayer {
    /// Columns of Q (rows of Wq).
    pub fn q_width(&self) -> u32 {
        self.matrices[0].rows
    }

    /// Columns of K and of V.
    pub fn kv_width(&self) -> u32 {
        self.matrices[1].rows
    }

    /// The projection's weights: each matrix kept in its stored format where any is a block
    /// format, else fused ([`FusedWeights::from_stored`]); the biases fused in Q, K, V order.
    pub fn weights(&self) -> Result<FusedWeights> {
        let bias = self.bias.as_ref().map(|b| b.concat());
        FusedWeights::from_stored(self.matrices.clone(), bias)
            .map_err(|e| Error::Input(format!("{}: {e}", self.prefix)))
    }
}

impl AttentionLayer {
    /// Q's and K's rows put back in the original model's order where llama.cpp's converter
    /// reordered them ([`rows_reordered`](Self::rows_reordered); nothing to do otherwise):
    /// within each head of `head_dim` rows, the converter's row `2i + j` (j = 0, 1) is the
    /// original row `j * head_dim / 2 + i`. Q has `heads` heads and K `kv_heads`, as the
    /// converter permuted them.
    pub fn into_original_order(mut self) -> Result<Self> {
        if !self.rows_reordered {
            return Ok(self);
        }
        for (i, heads) in [(0, self.heads), (1, self.kv_heads)] {
            let m = &self.matrices[i];
            let hd = heads
                .map(|h| m.rows / h)
                .filter(|hd| hd % 2 == 0 && *hd > 0);
            let Some(hd) = hd else {
                return Err(Error::Input(format!(
                    "{}: the original row order needs the head count (from the metadata) and an even head size; {} has {} rows for {heads:?} heads",
                    self.prefix,
                    ["Q", "K"][i],
                    m.rows
                )));
            };
            let half = hd / 2;
            // Original row r = (head, j, i) came from the converter's (head, i, j).
            self.matrices[i] = m.rows_from(|r| {
                let (head, within) = (r / hd, r % hd);
                head * hd + 2 * (within % half) + within / half
            });
            if let Some(b) = &mut self.bias {
                let old = b[i].clone();
                for (r, v) in b[i].iter_mut().enumerate() {
                    let (head, within) = (r as u32 / hd, r as u32 % hd);
                    *v = old[(head * hd + 2 * (within % half) + within / half) as usize];
                }
            }
        }
        self.rows_reordered = false;
        Ok(self)
    }
}

impl Gguf {
    /// The file's query and key/value head counts (`{arch}.attention.head_count` and
    /// `.head_count_kv`, which defaults to the first), where it names them.
    pub fn head_counts(&self) -> Result<Option<(u32, u32)>> {
        let heads = self.hyper("attention.head_count")?;
        let kv_heads = self.hyper("attention.head_count_kv")?;
        Ok(heads.map(|h| (h, kv_heads.unwrap_or(h))))
    }

    /// The metadata's unsigned integer at `{arch}.{key}`, refusing one that is not a u32
    /// (a per-layer array, a negative number).
    fn hyper(&self, key: &str) -> Result<Option<u32>> {
        let Some(arch) = self.architecture() else {
            return Ok(None);
        };
        let full = format!("{arch}.{key}");
        match self.metadata.get(&full) {
            None => Ok(None),
            Some(_) => match self.uint(&full).and_then(|v| u32::try_from(v).ok()) {
                Some(v) if v > 0 => Ok(Some(v)),
                _ => Err(Error::Input(format!(
                    "{}: {full} is {:?}; a positive integer is read (per-layer values are \
                     not)",
                    self.name, self.metadata[&full]
                ))),
            },
        }
    }

    /// The names of the layers' prefixes that hold attention projections (`blk.0`,
    /// `blk.1`, ...), in the file's order.
    pub fn attention_prefixes(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for t in &self.tensors {
            for suffix in [".attn_q.weight", ".attn_qkv.weight"] {
                if let Some(p) = t.name.strip_suffix(suffix) {
                    if !out.iter().any(|o| o == p) {
                        out.push(p.to_string());
                    }
                }
            }
        }
        out
    }

    /// The projection tensors of the layer under `prefix` that the table lists (`attn_q`,
    /// `attn_k`, `attn_v`, `attn_qkv`, weights then biases), read from the header alone:
    /// what a listing of every layer shows without reading them.
    pub fn attention_tensors(&self, prefix: &str) -> Vec<&TensorInfo> {
        let mut out = Vec::new();
        for kind in ["weight", "bias"] {
            for part in ["attn_q", "attn_k", "attn_v", "attn_qkv"] {
                if let Some(t) = self.tensor(&format!("{prefix}.{part}.{kind}")) {
                    out.push(t);
                }
            }
        }
        out
    }

    /// A 2-D weight `[rows, d_model]` (ggml dimensions `[d_model, rows]`) read as stored.
    fn matrix(&self, t: &TensorInfo, d_model: Option<u32>) -> Result<StoredMatrix> {
        let ty = self.weight_type(t)?;
        let (cols, rows) = match t.dims.as_slice() {
            [c, r] | [c, r, 1] | [c, r, 1, 1] => (*c, *r),
            d => {
                return Err(Error::Input(format!(
                    "{}: {} has dimensions {d:?}; a projection's weight is 2-D",
                    self.name, t.name
                )))
            }
        };
        let (Ok(cols), Ok(rows)) = (u32::try_from(cols), u32::try_from(rows)) else {
            return Err(Error::Input(format!(
                "{}: {} has dimensions {:?}, past 2^32",
                self.name, t.name, t.dims
            )));
        };
        if let Some(d) = d_model.filter(|&d| d != cols) {
            return Err(Error::Input(format!(
                "{}: {} has rows of {cols} elements; d_model is {d}",
                self.name, t.name
            )));
        }
        let what = format!("{}: {}", self.name, t.name);
        StoredMatrix::new(ty, rows, cols, self.read(t)?, &what)
    }

    /// The weight type of `t`, or an error naming its format and those that are read.
    fn weight_type(&self, t: &TensorInfo) -> Result<WeightType> {
        WeightType::of_ggml_type(t.ty.0).ok_or_else(|| {
            Error::Input(format!(
                "{}: {} is stored as {}, which qkv-wgpu does not read; it reads {}",
                self.name,
                t.name,
                t.ty,
                super::GgmlType::supported_names()
            ))
        })
    }

    /// A bias of `len` elements, widened to f32.
    fn bias(&self, t: &TensorInfo, len: u32) -> Result<Vec<f32>> {
        if t.dims.iter().product::<u64>() != len as u64 || t.dims.len() > 2 {
            return Err(Error::Input(format!(
                "{}: {} has dimensions {:?}; {len} elements are expected",
                self.name, t.name, t.dims
            )));
        }
        let ty = self.weight_type(t)?;
        let what = format!("{}: {}", self.name, t.name);
        Ok(StoredMatrix::new(ty, 1, len, self.read(t)?, &what)?.values())
    }

    /// The attention projections under `prefix` (`blk.0`): separate `attn_q`/`attn_k`/
    /// `attn_v` or one fused `attn_qkv`, with their biases where the layer has all three.
    pub fn attention(&self, prefix: &str) -> Result<AttentionLayer> {
        let name = |part: &str, kind: &str| {
            if prefix.is_empty() {
                format!("{part}.{kind}")
            } else {
                format!("{prefix}.{part}.{kind}")
            }
        };
        let d_model = self.hyper("embedding_length")?;
        let heads = self.hyper("attention.head_count")?;
        let kv_heads = self.hyper("attention.head_count_kv")?.or(heads);
        let mut tensors = Vec::new();
        let mut note = |t: &TensorInfo, ty| tensors.push((t.name.clone(), ty, t.dims.clone()));
        let (matrices, bias_names) = if let Some(fused) = self.tensor(&name("attn_qkv", "weight")) {
            let all = self.matrix(fused, d_model)?;
            note(fused, all.ty);
            let (q, kv) = self.fused_split(&all, heads, kv_heads, &fused.name)?;
            let row = all.row_bytes() as usize;
            let cut = |from: u32, rows: u32| {
                let bytes = all.bytes[from as usize * row..(from + rows) as usize * row].to_vec();
                StoredMatrix::new(all.ty, rows, all.cols, bytes, &fused.name)
            };
            (
                [cut(0, q)?, cut(q, kv)?, cut(q + kv, kv)?],
                BiasNames::Fused(name("attn_qkv", "bias")),
            )
        } else {
            let mut found = Vec::new();
            for part in ["attn_q", "attn_k", "attn_v"] {
                let n = name(part, "weight");
                let t = self.tensor(&n).ok_or_else(|| self.missing(prefix, &n))?;
                let m = self.matrix(t, d_model.or(found.first().map(|m: &StoredMatrix| m.cols)))?;
                note(t, m.ty);
                found.push(m);
            }
            let [q, k, v] = <[StoredMatrix; 3]>::try_from(found).expect("three parts");
            if k.rows != v.rows {
                return Err(Error::Input(format!(
                    "{}: {} has {} rows and {} has {}; K and V must be as wide",
                    self.name,
                    name("attn_k", "weight"),
                    k.rows,
                    name("attn_v", "weight"),
                    v.rows
                )));
            }
            (
                [q, k, v],
                BiasNames::Separate(["attn_q", "attn_k", "attn_v"].map(|p| name(p, "bias"))),
            )
        };
        let widths = [matrices[0].rows, matrices[1].rows, matrices[2].rows];
        let bias = self.biases(&bias_names, widths, &mut note)?;
        let d_model = matrices[0].cols;
        if let (Some(h), Some(kv)) = (heads, kv_heads) {
            self.check_heads(h, kv, widths)?;
        }
        let architecture = self.architecture().map(str::to_string);
        let rows_reordered = architecture
            .as_deref()
            .is_some_and(|a| REORDERED_ARCHITECTURES.contains(&a));
        Ok(AttentionLayer {
            prefix: prefix.to_string(),
            architecture,
            d_model,
            heads,
            kv_heads,
            matrices,
            bias,
            tensors,
            rows_reordered,
        })
    }

    fn missing(&self, prefix: &str, wanted: &str) -> Error {
        let prefixes = self.attention_prefixes();
        let shown: Vec<&str> = prefixes.iter().take(4).map(String::as_str).collect();
        let hint = if prefixes.is_empty() {
            "the file has no attention projections llama.cpp names (attn_q, attn_qkv)".into()
        } else {
            format!(
                "its attention layers are under {}{} ({} in all)",
                shown.join(", "),
                if prefixes.len() > 4 { ", ..." } else { "" },
                prefixes.len()
            )
        };
        Error::Input(format!(
            "{}: no tensor {wanted} (prefix '{prefix}'); {hint}",
            self.name
        ))
    }

    /// The rows of Q and of K (= V) in a fused `attn_qkv` of `all.rows` rows: from the
    /// head counts, or three equal parts without them.
    fn fused_split(
        &self,
        all: &StoredMatrix,
        heads: Option<u32>,
        kv_heads: Option<u32>,
        what: &str,
    ) -> Result<(u32, u32)> {
        let n = all.rows;
        let (q, kv) = match (heads, kv_heads) {
            (Some(h), Some(kv)) if kv != h => {
                // rows = head_dim (h + 2 kv).
                let parts = h + 2 * kv;
                if !n.is_multiple_of(parts) {
                    return Err(Error::Input(format!(
                        "{}: {what} has {n} rows, not head_dim x ({h} + 2 x {kv}) for the \
                         metadata's head counts",
                        self.name
                    )));
                }
                let hd = n / parts;
                (h * hd, kv * hd)
            }
            _ if n.is_multiple_of(3) => (n / 3, n / 3),
            _ => {
                return Err(Error::Input(format!(
                    "{}: {what} has {n} rows, not three equal parts, and the metadata gives \
                     no head counts to split it by",
                    self.name
                )))
            }
        };
        Ok((q, kv))
    }

    fn biases(
        &self,
        names: &BiasNames,
        widths: [u32; 3],
        note: &mut impl FnMut(&TensorInfo, WeightType),
    ) -> Result<Option<[Vec<f32>; 3]>> {
        match names {
            BiasNames::Fused(n) => {
                let Some(t) = self.tensor(n) else {
                    return Ok(None);
                };
                note(t, self.weight_type(t)?);
                let all = self.bias(t, widths.iter().sum())?;
                let (q, k) = (widths[0] as usize, widths[1] as usize);
                Ok(Some([
                    all[..q].to_vec(),
                    all[q..q + k].to_vec(),
                    all[q + k..].to_vec(),
                ]))
            }
            BiasNames::Separate(ns) => {
                let found: Vec<Option<&TensorInfo>> = ns.iter().map(|n| self.tensor(n)).collect();
                match found.iter().filter(|t| t.is_some()).count() {
                    0 => Ok(None),
                    3 => {
                        let mut out = Vec::new();
                        for (t, w) in found.into_iter().flatten().zip(widths) {
                            note(t, self.weight_type(t)?);
                            out.push(self.bias(t, w)?);
                        }
                        Ok(Some(<[Vec<f32>; 3]>::try_from(out).expect("three biases")))
                    }
                    _ => {
                        let missing: Vec<&str> = ns
                            .iter()
                            .zip(&found)
                            .filter(|(_, t)| t.is_none())
                            .map(|(n, _)| n.as_str())
                            .collect();
                        Err(Error::Input(format!(
                            "{}: the layer has some biases but not {}; a projection has all \
                             three or none",
                            self.name,
                            missing.join(", ")
                        )))
                    }
                }
            }
        }
    }

    /// Q's width a multiple of the heads, K's of the KV heads, with one head size.
    fn check_heads(&self, heads: u32, kv_heads: u32, widths: [u32; 3]) -> Result<()> {
        let ok = widths[0].is_multiple_of(heads)
            && widths[1].is_multiple_of(kv_heads)
            && widths[0] / heads == widths[1] / kv_heads;
        if ok {
            return Ok(());
        }
        Err(Error::Input(format!(
            "{}: Q is {} wide and K {} for {heads} heads and {kv_heads} KV heads (the \
             metadata's): not one head size",
            self.name, widths[0], widths[1]
        )))
    }
}

enum BiasNames {
    Fused(String),
    Separate([String; 3]),
}
