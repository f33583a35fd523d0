//! The header parser on files written here byte by byte: a valid one read back exactly, and
//! every truncation and crafted field refused with its reason.

use super::*;

/// A GGUF file under construction.
pub(super) struct Writer {
    meta: Vec<u8>,
    n_meta: u64,
    table: Vec<(String, Vec<u64>, u32, Vec<u8>)>,
    alignment: u64,
}

fn string(out: &mut Vec<u8>, s: &str) {
    out.extend((s.len() as u64).to_le_bytes());
    out.extend(s.as_bytes());
}

impl Writer {
    pub(super) fn new() -> Self {
        Self {
            meta: Vec::new(),
            n_meta: 0,
            table: Vec::new(),
            alignment: 32,
        }
    }

    /// A metadata entry of value type `ty` whose value is `bytes`.
    pub(super) fn meta(mut self, key: &str, ty: u32, bytes: &[u8]) -> Self {
        string(&mut self.meta, key);
        self.meta.extend(ty.to_le_bytes());
        self.meta.extend(bytes);
        self.n_meta += 1;
        self
    }

    pub(super) fn tensor(mut self, name: &str, dims: &[u64], ty: u32, data: Vec<u8>) -> Self {
        self.table.push((name.into(), dims.to_vec(), ty, data));
        self
    }

    /// The file, each tensor's data at the next aligned offset; `offsets` overrides them.
    fn bytes_with(&self, offsets: Option<&[u64]>) -> Vec<u8> {
        let mut out = b"GGUF".to_vec();
        out.extend(3u32.to_le_bytes());
        out.extend((self.table.len() as u64).to_le_bytes());
        out.extend(self.n_meta.to_le_bytes());
        out.extend(&self.meta);
        let mut at = 0u64;
        let mut placed = Vec::new();
        for (i, (name, dims, ty, data)) in self.table.iter().enumerate() {
            string(&mut out, name);
            out.extend((dims.len() as u32).to_le_bytes());
            for d in dims {
                out.extend(d.to_le_bytes());
            }
            out.extend(ty.to_le_bytes());
            let offset = offsets.map_or(at, |o| o[i]);
            out.extend(offset.to_le_bytes());
            placed.push(offset);
            at = (at + data.len() as u64).next_multiple_of(self.alignment);
        }
        let data = (out.len() as u64).next_multiple_of(self.alignment);
        out.resize(data as usize, 0);
        for ((.., bytes), offset) in self.table.iter().zip(placed) {
            let start = (data + offset) as usize;
            if out.len() < start + bytes.len() {
                out.resize(start + bytes.len(), 0);
            }
            out[start..start + bytes.len()].copy_from_slice(bytes);
        }
        out
    }

    pub(super) fn bytes(&self) -> Vec<u8> {
        self.bytes_with(None)
    }
}

fn filled(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// A small Llama-like layer: Q in Q8_0, K in Q4_K, V in F32 with a bias, and metadata with
/// a vocabulary longer than the arrays that are kept.
fn layer() -> Writer {
    let mut vocab = 9u32.to_le_bytes().to_vec();
    vocab.extend(2000u64.to_le_bytes());
    for i in 0..2000 {
        string(&mut vocab, &format!("t{i}"));
    }
    Writer::new()
        .meta("general.architecture", 8, &{
            let mut b = Vec::new();
            string(&mut b, "llama");
            b
        })
        .meta("llama.attention.head_count", 4, &4u32.to_le_bytes())
        .meta("llama.embedding_length", 10, &256u64.to_le_bytes())
        .meta("tokenizer.ggml.tokens", 9, &{
            let mut b = 8u32.to_le_bytes().to_vec();
            b.extend(&vocab[4..]);
            b
        })
        .meta("small", 9, &{
            let mut b = 4u32.to_le_bytes().to_vec();
            b.extend(2u64.to_le_bytes());
            b.extend(7u32.to_le_bytes());
            b.extend(9u32.to_le_bytes());
            b
        })
        .tensor("blk.0.attn_q.weight", &[256, 4], 8, filled(4 * 8 * 34, 1))
        .tensor("blk.0.attn_k.weight", &[256, 2], 12, filled(2 * 144, 2))
        .tensor("blk.0.attn_v.weight", &[256, 2], 0, filled(2 * 256 * 4, 3))
        .tensor("blk.0.attn_v.bias", &[2], 0, filled(8, 4))
}

#[test]
fn a_valid_file_reads_back_exactly() {
    let w = layer();
    let g = Gguf::from_bytes("layer.gguf", w.bytes()).unwrap();
    assert_eq!(
        (g.version, g.alignment, g.architecture()),
        (3, 32, Some("llama"))
    );
    assert_eq!(g.uint("llama.attention.head_count"), Some(4));
    assert_eq!(g.uint("llama.embedding_length"), Some(256));
    let Some(Value::Array { len, items, .. }) = g.metadata.get("tokenizer.ggml.tokens") else {
        panic!("no vocabulary");
    };
    assert_eq!(
        (*len, items.is_none()),
        (2000, true),
        "long arrays keep their length only"
    );
    assert!(matches!(
        g.metadata.get("small"),
        Some(Value::Array { items: Some(v), .. }) if v == &[Value::Uint(7), Value::Uint(9)]
    ));
    for (name, dims, ty, data) in &w.table {
        let t = g.tensor(name).unwrap();
        assert_eq!(
            (&t.dims, t.ty, t.bytes),
            (dims, GgmlType(*ty), data.len() as u64)
        );
        assert!(t.offset.is_multiple_of(32), "{name}");
        assert_eq!(&g.read(t).unwrap(), data, "{name}");
    }
}

#[test]
fn every_truncation_is_refused_with_the_reason() {
    let bytes = layer().bytes();
    for n in 0..bytes.len() {
        let e = Gguf::from_bytes("cut.gguf", bytes[..n].to_vec()).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("cut.gguf")
                && (msg.contains("truncated")
                    || msg.contains("empty")
                    || msg.contains("GGUF")
                    || msg.contains("more than")),
            "{n}: {msg}"
        );
    }
}

/// The error for `bytes`, which must be refused.
fn refused(bytes: Vec<u8>) -> String {
    Gguf::from_bytes("bad.gguf", bytes).unwrap_err().to_string()
}

#[test]
fn crafted_fields_are_refused_by_name() {
    let ok = layer().bytes();
    let mut magic = ok.clone();
    magic[0] = b'X';
    assert!(refused(magic).contains("does not start with `GGUF`"));
    let mut version = ok.clone();
    version[4] = 1;
    assert!(refused(version).contains("version 1"));
    let mut count = ok.clone();
    count[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(refused(count).contains("tensor count"));
    let mut meta = ok.clone();
    meta[16..24].copy_from_slice(&(1u64 << 40).to_le_bytes());
    assert!(refused(meta).contains("metadata count"));
    // A key whose length is past the file.
    let mut key = ok.clone();
    key[24..32].copy_from_slice(&(1u64 << 50).to_le_bytes());
    assert!(refused(key).contains("truncated"));

    let q8 = |dims: &[u64]| Writer::new().tensor("w", dims, 8, filled(34 * 4, 0));
    assert!(refused(q8(&[33, 4]).bytes()).contains("not whole Q8_0 blocks of 32"));
    assert!(refused(q8(&[32, 0]).bytes()).contains("a dimension of 0"));
    assert!(refused(q8(&[32, 1, 1, 1, 1]).bytes()).contains("5 dimensions"));
    assert!(refused(q8(&[32, u64::MAX]).bytes()).contains("overflow"));
    assert!(refused(q8(&[32, 1 << 40]).bytes()).contains("past the file"));
    let odd = Writer::new().tensor("w", &[32, 1], 4, vec![0; 18]);
    assert!(refused(odd.bytes()).contains("type 4 is not a ggml type"));
    let two = Writer::new()
        .tensor("a", &[32, 1], 8, filled(34, 0))
        .tensor("b", &[32, 1], 8, filled(34, 0));
    assert!(refused(two.bytes_with(Some(&[0, 3]))).contains("not a multiple of the alignment"));
    assert!(refused(two.bytes_with(Some(&[0, 0]))).contains("overlap"));
    let twice = Writer::new()
        .tensor("a", &[32, 1], 8, filled(34, 0))
        .tensor("a", &[32, 1], 8, filled(34, 0));
    assert!(refused(twice.bytes()).contains("appears twice"));
    let align = Writer::new().meta("general.alignment", 4, &24u32.to_le_bytes());
    assert!(refused(align.bytes()).contains("general.alignment"));
    let dup = Writer::new()
        .meta("k", 4, &1u32.to_le_bytes())
        .meta("k", 4, &1u32.to_le_bytes());
    assert!(refused(dup.bytes()).contains("the key k appears twice"));
    let boolean = Writer::new().meta("b", 7, &[2]);
    assert!(refused(boolean.bytes()).contains("a bool of value 2"));
    let unknown = Writer::new().meta("u", 13, &[0; 8]);
    assert!(refused(unknown.bytes()).contains("unknown value type 13"));
    // Arrays of arrays of ... deeper than allowed.
    let mut nested = Vec::new();
    for _ in 0..6 {
        nested.extend(9u32.to_le_bytes());
        nested.extend(1u64.to_le_bytes());
    }
    nested.extend(4u32.to_le_bytes());
    nested.extend(0u64.to_le_bytes());
    let deep = Writer::new().meta("deep", 9, &nested);
    assert!(refused(deep.bytes()).contains("nested deeper"));
}

#[test]
fn a_file_shortened_after_opening_is_an_error_not_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("layer.gguf");
    std::fs::write(&path, layer().bytes()).unwrap();
    let g = Gguf::open(&path).unwrap();
    let v = g.tensor("blk.0.attn_v.weight").unwrap().clone();
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(v.offset + 10).unwrap();
    let e = g.read(&v).unwrap_err().to_string();
    assert!(e.contains("past the file's end"), "{e}");
    let none = Gguf::open(&dir.path().join("missing.gguf")).unwrap_err();
    assert!(none.to_string().contains("no such file"), "{none}");
}

#[test]
fn the_fuzz_seeds_are_valid_files() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/gguf");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let g = Gguf::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        for t in &g.tensors {
            assert_eq!(g.read(t).unwrap().len() as u64, t.bytes);
        }
        n += 1;
    }
    assert!(n >= 2, "{n} seeds");
}

/// A metadata string value.
pub(super) fn str_value(s: &str) -> Vec<u8> {
    let mut b = Vec::new();
    string(&mut b, s);
    b
}

/// `rows` x `cols` values, each distinct.
fn values(rows: usize, cols: usize, seed: f32) -> Vec<f32> {
    (0..rows * cols)
        .map(|i| (i as f32 * 0.37 + seed).sin() * 1.5)
        .collect()
}

fn stored(ty: crate::quant::WeightType, rows: u32, cols: u32, seed: f32) -> StoredMatrixBytes {
    let v = values(rows as usize, cols as usize, seed);
    let m = crate::quant::StoredMatrix::quantize(ty, rows, cols, &v, "test").unwrap();
    StoredMatrixBytes {
        values: m.values(),
        bytes: m.bytes,
    }
}

struct StoredMatrixBytes {
    values: Vec<f32>,
    bytes: Vec<u8>,
}

fn qwen_header(heads: u32, kv_heads: u32, d_model: u64) -> Writer {
    Writer::new()
        .meta("general.architecture", 8, &str_value("qwen2"))
        .meta("qwen2.attention.head_count", 4, &heads.to_le_bytes())
        .meta("qwen2.attention.head_count_kv", 4, &kv_heads.to_le_bytes())
        .meta("qwen2.embedding_length", 10, &d_model.to_le_bytes())
}

#[test]
fn an_attention_layer_is_found_with_each_matrix_in_its_format() {
    use crate::element::ElementType as E;
    use crate::quant::{BlockFormat as B, WeightType as T};
    let (q, k, v) = (
        stored(T::Blocks(B::Q4_0), 8, 64, 0.1),
        stored(T::Blocks(B::Q8_0), 4, 64, 0.2),
        stored(T::Element(E::F16), 4, 64, 0.3),
    );
    let bias: Vec<u8> = (0..16)
        .flat_map(|i| (i as f32 * 0.5).to_le_bytes())
        .collect();
    let w = qwen_header(4, 2, 64)
        .tensor("blk.3.attn_q.weight", &[64, 8], 2, q.bytes.clone())
        .tensor("blk.3.attn_k.weight", &[64, 4], 8, k.bytes.clone())
        .tensor("blk.3.attn_v.weight", &[64, 4], 1, v.bytes.clone())
        .tensor("blk.3.attn_q.bias", &[8], 0, bias[..32].to_vec())
        .tensor("blk.3.attn_k.bias", &[4], 0, bias[32..48].to_vec())
        .tensor("blk.3.attn_v.bias", &[4], 0, bias[48..].to_vec());
    let g = Gguf::from_bytes("qwen.gguf", w.bytes()).unwrap();
    assert_eq!(g.attention_prefixes(), ["blk.3"]);
    let layer = g.attention("blk.3").unwrap();
    assert_eq!(
        (
            layer.d_model,
            layer.heads,
            layer.kv_heads,
            layer.q_width(),
            layer.kv_width()
        ),
        (64, Some(4), Some(2), 8, 4)
    );
    assert!(!layer.rows_reordered, "qwen2 keeps the model's order");
    let types: Vec<T> = layer.matrices.iter().map(|m| m.ty).collect();
    assert_eq!(
        types,
        [T::Blocks(B::Q4_0), T::Blocks(B::Q8_0), T::Element(E::F16)]
    );
    for (m, want) in layer.matrices.iter().zip([&q, &k, &v]) {
        assert_eq!(m.values(), want.values, "{:?}", m.ty);
    }
    let b = layer.bias.unwrap();
    assert_eq!((b[0][1], b[1][0], b[2][3]), (0.5, 4.0, 7.5));
    assert_eq!(layer.tensors.len(), 6);

    // Missing: the message lists the prefixes there are.
    let err = g.attention("blk.0").unwrap_err().to_string();
    assert!(
        err.contains("no tensor blk.0.attn_q.weight") && err.contains("blk.3"),
        "{err}"
    );
}

#[test]
fn a_fused_qkv_is_split_by_the_metadatas_heads() {
    use crate::quant::{BlockFormat as B, WeightType as T};
    // 4 heads and 2 KV heads of head_dim 2: Q 8 rows, K and V 4 each.
    let all = stored(T::Blocks(B::Q5_1), 16, 32, 0.5);
    let bias: Vec<u8> = (0..16).flat_map(|i| (i as f32).to_le_bytes()).collect();
    let w = qwen_header(4, 2, 32)
        .tensor("blk.0.attn_qkv.weight", &[32, 16], 7, all.bytes.clone())
        .tensor("blk.0.attn_qkv.bias", &[16], 0, bias);
    let g = Gguf::from_bytes("fused.gguf", w.bytes()).unwrap();
    let names: Vec<&str> = g
        .attention_tensors("blk.0")
        .iter()
        .map(|t| t.name.as_str())
        .collect();
    assert_eq!(names, ["blk.0.attn_qkv.weight", "blk.0.attn_qkv.bias"]);
    let layer = g.attention("blk.0").unwrap();
    assert_eq!((layer.q_width(), layer.kv_width()), (8, 4));
    let joined: Vec<f32> = layer.matrices.iter().flat_map(|m| m.values()).collect();
    assert_eq!(joined, all.values);
    let b = layer.bias.unwrap();
    assert_eq!((b[0][7], b[1][0], b[2][0]), (7.0, 8.0, 12.0));

    // 15 rows are not head_dim x (4 + 2 x 2).
    let bad = qwen_header(4, 2, 32).tensor(
        "blk.0.attn_qkv.weight",
        &[32, 15],
        7,
        stored(T::Blocks(B::Q5_1), 15, 32, 0.5).bytes,
    );
    let err = Gguf::from_bytes("f.gguf", bad.bytes())
        .unwrap()
        .attention("blk.0")
        .unwrap_err()
        .to_string();
    assert!(err.contains("15 rows"), "{err}");
}

#[test]
fn a_layer_the_projection_cannot_use_is_refused_with_the_reason() {
    use crate::quant::{BlockFormat as B, WeightType as T};
    let q = stored(T::Blocks(B::Q8_0), 8, 32, 0.1).bytes;
    let kv = stored(T::Blocks(B::Q8_0), 4, 32, 0.2).bytes;
    let refused = |w: Writer| {
        Gguf::from_bytes("l.gguf", w.bytes())
            .unwrap()
            .attention("blk.0")
            .unwrap_err()
            .to_string()
    };
    // A format that is not read (Q2_K: 84 bytes per 256), by name with the list.
    let err = refused(
        qwen_header(4, 2, 256)
            .tensor("blk.0.attn_q.weight", &[256, 8], 10, vec![0; 8 * 84])
            .tensor("blk.0.attn_k.weight", &[256, 4], 10, vec![0; 4 * 84])
            .tensor("blk.0.attn_v.weight", &[256, 4], 10, vec![0; 4 * 84]),
    );
    assert!(err.contains("Q2_K") && err.contains("Q5_K, Q6_K"), "{err}");
    // Two biases of three.
    let err = refused(
        qwen_header(4, 2, 32)
            .tensor("blk.0.attn_q.weight", &[32, 8], 8, q.clone())
            .tensor("blk.0.attn_k.weight", &[32, 4], 8, kv.clone())
            .tensor("blk.0.attn_v.weight", &[32, 4], 8, kv.clone())
            .tensor("blk.0.attn_q.bias", &[8], 0, vec![0; 32])
            .tensor("blk.0.attn_k.bias", &[4], 0, vec![0; 16]),
    );
    assert!(err.contains("not blk.0.attn_v.bias"), "{err}");
    // K and V of different widths.
    let err = refused(
        qwen_header(4, 2, 32)
            .tensor("blk.0.attn_q.weight", &[32, 8], 8, q.clone())
            .tensor("blk.0.attn_k.weight", &[32, 4], 8, kv.clone())
            .tensor("blk.0.attn_v.weight", &[32, 8], 8, q.clone()),
    );
    assert!(err.contains("K and V must be as wide"), "{err}");
    // Rows of another length than the metadata's d_model.
    let err = refused(
        qwen_header(4, 2, 64)
            .tensor("blk.0.attn_q.weight", &[32, 8], 8, q.clone())
            .tensor("blk.0.attn_k.weight", &[32, 4], 8, kv.clone())
            .tensor("blk.0.attn_v.weight", &[32, 4], 8, kv.clone()),
    );
    assert!(err.contains("d_model is 64"), "{err}");
    // Widths that are not the metadata's heads: 8 rows for 3 heads.
    let err = refused(
        qwen_header(3, 1, 32)
            .tensor("blk.0.attn_q.weight", &[32, 8], 8, q.clone())
            .tensor("blk.0.attn_k.weight", &[32, 4], 8, kv.clone())
            .tensor("blk.0.attn_v.weight", &[32, 4], 8, kv),
    );
    assert!(err.contains("not one head size"), "{err}");
    // A per-layer head count (an array).
    let per_layer = {
        let mut b = 4u32.to_le_bytes().to_vec();
        b.extend(2u64.to_le_bytes());
        b.extend(4u32.to_le_bytes());
        b.extend(4u32.to_le_bytes());
        b
    };
    let err = refused(
        Writer::new()
            .meta("general.architecture", 8, &str_value("qwen2"))
            .meta("qwen2.attention.head_count", 9, &per_layer)
            .tensor("blk.0.attn_q.weight", &[32, 8], 8, q),
    );
    assert!(err.contains("qwen2.attention.head_count"), "{err}");
}

#[test]
fn llama_files_say_their_rows_are_reordered() {
    use crate::quant::{BlockFormat as B, WeightType as T};
    let q = stored(T::Blocks(B::Q8_0), 8, 32, 0.1).bytes;
    let kv = stored(T::Blocks(B::Q8_0), 8, 32, 0.2).bytes;
    let w = Writer::new()
        .meta("general.architecture", 8, &str_value("llama"))
        .meta("llama.attention.head_count", 4, &4u32.to_le_bytes())
        .tensor("blk.0.attn_q.weight", &[32, 8], 8, q)
        .tensor("blk.0.attn_k.weight", &[32, 8], 8, kv.clone())
        .tensor("blk.0.attn_v.weight", &[32, 8], 8, kv);
    let layer = Gguf::from_bytes("llama.gguf", w.bytes())
        .unwrap()
        .attention("blk.0")
        .unwrap();
    assert!(layer.rows_reordered);
    assert_eq!(
        layer.kv_heads,
        Some(4),
        "no head_count_kv: as many as heads"
    );
}

#[test]
fn llamas_rows_are_put_back_in_the_original_order() {
    use crate::element::ElementType as E;
    use crate::quant::WeightType as T;
    // The original (Hugging Face) rows, each its own index, and llama.cpp's converter's
    // permutation of them per head (`LlamaModel.permute`): its row (h, i, j) is the
    // original (h, j, i), head_dim 4.
    let (d, hd) = (32usize, 4usize);
    let converted = |rows: usize| -> Vec<f32> {
        (0..rows)
            .flat_map(|g| {
                let (h, within) = (g / hd, g % hd);
                let original = h * hd + (within % 2) * (hd / 2) + within / 2;
                std::iter::repeat_n(original as f32, d)
            })
            .collect()
    };
    let f32_bytes = |v: Vec<f32>| -> Vec<u8> { v.iter().flat_map(|x| x.to_le_bytes()).collect() };
    let bias = |rows: usize| f32_bytes(converted(rows).into_iter().step_by(d).collect());
    let w = Writer::new()
        .meta("general.architecture", 8, &str_value("llama"))
        .meta("llama.attention.head_count", 4, &2u32.to_le_bytes())
        .meta("llama.attention.head_count_kv", 4, &1u32.to_le_bytes())
        .tensor("blk.0.attn_q.weight", &[32, 8], 0, f32_bytes(converted(8)))
        .tensor("blk.0.attn_k.weight", &[32, 4], 0, f32_bytes(converted(4)))
        .tensor("blk.0.attn_v.weight", &[32, 4], 0, f32_bytes(converted(4)))
        .tensor("blk.0.attn_q.bias", &[8], 0, bias(8))
        .tensor("blk.0.attn_k.bias", &[4], 0, bias(4))
        .tensor("blk.0.attn_v.bias", &[4], 0, bias(4));
    let layer = Gguf::from_bytes("llama.gguf", w.bytes())
        .unwrap()
        .attention("blk.0")
        .unwrap();
    assert!(layer.rows_reordered);
    assert_eq!(layer.matrices[0].ty, T::Element(E::F32));
    let original = layer.clone().into_original_order().unwrap();
    assert!(!original.rows_reordered);
    let rows = |m: &crate::quant::StoredMatrix| -> Vec<f32> {
        m.values().into_iter().step_by(d).collect()
    };
    assert_eq!(
        rows(&original.matrices[0]),
        (0..8).map(|r| r as f32).collect::<Vec<_>>()
    );
    assert_eq!(rows(&original.matrices[1]), [0.0, 1.0, 2.0, 3.0]);
    assert_eq!(
        original.matrices[2], layer.matrices[2],
        "V is never reordered"
    );
    let b = original.bias.unwrap();
    assert_eq!(b[0], (0..8).map(|r| r as f32).collect::<Vec<_>>());
    assert_eq!(b[1], [0.0, 1.0, 2.0, 3.0]);
    // A file of another architecture is left as it is.
    let qwen = qwen_header(4, 2, 32)
        .tensor("blk.0.attn_q.weight", &[32, 8], 0, f32_bytes(converted(8)))
        .tensor("blk.0.attn_k.weight", &[32, 4], 0, f32_bytes(converted(4)))
        .tensor("blk.0.attn_v.weight", &[32, 4], 0, f32_bytes(converted(4)));
    let kept = Gguf::from_bytes("q.gguf", qwen.bytes())
        .unwrap()
        .attention("blk.0")
        .unwrap();
    assert_eq!(kept.clone().into_original_order().unwrap(), kept);
}
