//! What each fuzz target does with its input, shared with the never-panic property tests in
//! `tests/hostile_input.rs` (which include this file), so the fuzzer and CI run the same
//! bodies. Each reads arbitrary bytes the way `qkv` reads a user's file or argument, and
//! asserts the promises that hold for any input: an accepted file can be read to its end, an
//! accepted configuration resolves and displays as it parses. Errors are fine; panics,
//! hangs and unbounded allocations are the bugs.

#![allow(dead_code)] // each fuzz target calls one of these

use qkv_wgpu::io::checkpoint::{Checkpoint, WeightRequest, WeightSource};
use qkv_wgpu::io::gguf::Gguf;
use qkv_wgpu::io::npy::NpyRows;
use qkv_wgpu::kernels::CoopBlock;
use qkv_wgpu::{Kernel, KernelConfig, KernelSpec};

/// The `.npy` reader: header, dtype, shape, length checks, and the data.
pub fn npy(data: &[u8]) {
    if let Ok(mut rows) = NpyRows::from_reader(data, data.len() as u64, "fuzz.npy") {
        // The length check promises the data is there: read it all, in two pieces.
        let n = rows.remaining();
        let mut first = vec![0f32; n / 2];
        rows.read(&mut first).expect("the first half is there");
        let mut rest = vec![0f32; n - n / 2];
        rows.read(&mut rest).expect("the second half is there");
        assert!(rows.read(&mut [0f32]).is_err());
    }
}

/// GGUF files: the header check promises every tensor it lists is there, inside the file,
/// in whole blocks of its format: read each one.
pub fn gguf(data: &[u8]) {
    let Ok(g) = Gguf::from_bytes("fuzz.gguf", data.to_vec()) else {
        return;
    };
    for t in &g.tensors {
        let bytes = g.read(t).expect("a listed tensor is inside the file");
        assert_eq!(bytes.len() as u64, t.bytes);
        assert_eq!(t.ty.row_bytes(t.dims[0]).map(|r| r > 0), Some(true));
    }
    let _ = (g.architecture(), g.uint("general.alignment"));
}

/// safetensors checkpoints: the header check, family detection under every prefix the
/// names suggest, and loading the projection at every d_model the shapes suggest.
pub fn checkpoint(data: &[u8]) {
    let Ok(ckpt) = Checkpoint::from_bytes("fuzz.safetensors", data.to_vec()) else {
        return;
    };
    let names = ckpt.names();
    let mut prefixes = vec![String::new()];
    let mut dims = vec![1u32, 2, 4];
    for n in names.iter().take(4) {
        let parts: Vec<&str> = n.split('.').collect();
        for i in 0..parts.len() {
            prefixes.push(parts[..i].join("."));
        }
        if let Ok(t) = ckpt.tensor(n) {
            dims.extend(
                t.shape
                    .iter()
                    .filter_map(|&d| u32::try_from(d).ok())
                    .take(2),
            );
        }
    }
    for prefix in prefixes.iter().take(8) {
        let _ = ckpt.find_family(prefix);
        for &d_model in dims.iter().take(6) {
            for (heads, kv_heads) in [(None, None), (Some(2), Some(1))] {
                let request = WeightRequest {
                    source: WeightSource::Prefix(prefix.clone()),
                    layout: None,
                    heads,
                    kv_heads,
                };
                let _ = ckpt.load_qkv(&request, d_model);
            }
        }
    }
}

/// The `--kernel` parser: every configuration it accepts resolves into a spec and displays
/// as text that parses back to itself.
pub fn kernel_config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(configs) = Kernel::parse_list(text) {
        for c in configs {
            // A bare `coopmat` takes its tile from the adapter (`KernelConfig::for_adapter`;
            // 8x8 with an f32 accumulator where none is offered): resolve it as that does.
            let bare_coopmat = c.kernel == Kernel::Coopmat && c.value(0) == 0;
            let resolved = if bare_coopmat {
                KernelConfig::coopmat(8, true, CoopBlock::default_for(8))
            } else {
                c
            };
            let spec = KernelSpec::new(resolved).expect("a parsed configuration resolves");
            let back: KernelConfig = c.to_string().parse().expect("displays as it parses");
            assert_eq!(back, c);
            let _ = spec.grid(1 + data.len() as u32, 7);
        }
    }
}

/// The tuning cache's parser: whole-file and per-entry failures; every entry it keeps
/// serializes again.
pub fn tuning_cache(data: &[u8]) {
    let parsed = qkv_wgpu::tune::cache::parse(&String::from_utf8_lossy(data));
    for entry in parsed.entries.values() {
        let _ = entry.config.parse::<KernelConfig>();
        serde_json::to_string(entry).expect("an entry serializes");
    }
}

/// The commit journal (`DIR/.qkv-commit`) a run finds in its output directory, planted or
/// damaged: opening the directory either refuses it or rolls it back, and never changes a
/// file that is not the interrupted run's own (here: a user's `thesis.tex` and `q.npy`, with
/// no backups beside them).
pub fn journal(data: &[u8]) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let d = dir.path();
    std::fs::write(d.join("thesis.tex"), "years of work").unwrap();
    std::fs::write(d.join("q.npy"), "the user's q").unwrap();
    std::fs::write(d.join(qkv_wgpu::io::commit::JOURNAL), data).unwrap();
    let _ = qkv_wgpu::io::commit::OutputDir::open(d);
    assert_eq!(
        std::fs::read_to_string(d.join("thesis.tex")).unwrap(),
        "years of work"
    );
    assert_eq!(
        std::fs::read_to_string(d.join("q.npy")).unwrap(),
        "the user's q"
    );
}
