//! The header parser on files written here byte by byte: a valid one read back exactly, and
//! every truncation and crafted field refused with its reason.

use super::*;

/// A GGUF file under construction.
struct Writer {
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
    fn new() -> Self {
        Self {
            meta: Vec::new(),
            n_meta: 0,
            table: Vec::new(),
            alignment: 32,
        }
    }

    /// A metadata entry of value type `ty` whose value is `bytes`.
    fn meta(mut self, key: &str, ty: u32, bytes: &[u8]) -> Self {
        string(&mut self.meta, key);
        self.meta.extend(ty.to_le_bytes());
        self.meta.extend(bytes);
        self.n_meta += 1;
        self
    }

    fn tensor(mut self, name: &str, dims: &[u64], ty: u32, data: Vec<u8>) -> Self {
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

    fn bytes(&self) -> Vec<u8> {
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
