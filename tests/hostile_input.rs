//! Never a panic on hostile input (issue #11): property tests over arbitrary bytes and over
//! mutations (bytes flipped, cut, spliced, repeated) of the fuzzing seed corpus in
//! `fuzz/seeds/`, for every parser that reads what a user hands `qkv`: the `.npy` reader,
//! safetensors checkpoints with family detection, the `--kernel` parser and the tuning
//! cache. The bodies are the fuzz targets' own (`fuzz/exercise.rs`); `cargo fuzz` runs them
//! coverage-guided for longer (fuzz/README.md).

#[path = "../fuzz/exercise.rs"]
mod exercise;

use proptest::prelude::*;
use std::path::Path;

/// The seed files of one fuzz target.
fn seeds(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/seeds")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let seeds: Vec<Vec<u8>> = files.iter().map(|p| std::fs::read(p).unwrap()).collect();
    assert!(!seeds.is_empty(), "no seeds in {}", dir.display());
    seeds
}

/// One mutation of a seed, as a fuzzer would make it.
#[derive(Debug, Clone)]
enum Mutation {
    /// XOR the byte at (position mod length) with a non-zero mask.
    Flip(usize, u8),
    /// Keep the first (position mod length + 1) bytes.
    Cut(usize),
    /// Insert bytes at (position mod length).
    Insert(usize, Vec<u8>),
    /// Overwrite with an interesting integer (little-endian u32 or u64) at a position.
    Number(usize, u64, bool),
    /// Repeat a slice (start, len) at its end.
    Repeat(usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let interesting = prop_oneof![
        Just(0u64),
        Just(1),
        Just(u32::MAX as u64),
        Just(u64::MAX),
        Just(1 << 31),
        Just(10_001),
        any::<u64>()
    ];
    prop_oneof![
        (any::<usize>(), 1u8..).prop_map(|(i, m)| Mutation::Flip(i, m)),
        any::<usize>().prop_map(Mutation::Cut),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(i, b)| Mutation::Insert(i, b)),
        (any::<usize>(), interesting, any::<bool>())
            .prop_map(|(i, v, w)| Mutation::Number(i, v, w)),
        (any::<usize>(), 1usize..64).prop_map(|(i, n)| Mutation::Repeat(i, n)),
    ]
}

fn mutate(mut data: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        if data.is_empty() {
            data.push(0);
        }
        let len = data.len();
        match m {
            Mutation::Flip(i, mask) => data[i % len] ^= mask,
            Mutation::Cut(i) => data.truncate(i % len + 1),
            Mutation::Insert(i, bytes) => {
                let at = i % len;
                data.splice(at..at, bytes.iter().copied());
            }
            Mutation::Number(i, v, wide) => {
                let bytes = if *wide {
                    v.to_le_bytes().to_vec()
                } else {
                    (*v as u32).to_le_bytes().to_vec()
                };
                for (k, b) in bytes.into_iter().enumerate() {
                    if let Some(slot) = data.get_mut(i % len + k) {
                        *slot = b;
                    }
                }
            }
            Mutation::Repeat(i, n) => {
                let start = i % len;
                let end = (start + n).min(len);
                let piece = data[start..end].to_vec();
                data.splice(end..end, piece);
            }
        }
    }
    data
}

/// (seed index, mutations) for a target's seeds.
fn mutated(target: &'static str) -> impl Strategy<Value = Vec<u8>> {
    let seeds = seeds(target);
    let n = seeds.len();
    (0..n, prop::collection::vec(mutation(), 1..6))
        .prop_map(move |(i, ms)| mutate(seeds[i].clone(), &ms))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn npy_never_panics_on_arbitrary_bytes(data in prop::collection::vec(any::<u8>(), 0..512)) {
        exercise::npy(&data);
    }

    #[test]
    fn npy_never_panics_on_mutated_files(data in mutated("npy")) {
        exercise::npy(&data);
    }

    #[test]
    fn kernel_config_never_panics_on_arbitrary_text(text in "\\PC{0,40}") {
        exercise::kernel_config(text.as_bytes());
    }

    #[test]
    fn kernel_config_never_panics_on_mutated_lists(data in mutated("kernel_config")) {
        exercise::kernel_config(&data);
    }

    #[test]
    fn tuning_cache_never_panics_on_arbitrary_bytes(data in prop::collection::vec(any::<u8>(), 0..512)) {
        exercise::tuning_cache(&data);
    }

    #[test]
    fn tuning_cache_never_panics_on_mutated_files(data in mutated("tuning_cache")) {
        exercise::tuning_cache(&data);
    }
}

proptest! {
    // Checkpoints do more work per input (family detection, loading at several d_model).
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    #[test]
    fn checkpoint_never_panics_on_arbitrary_bytes(data in prop::collection::vec(any::<u8>(), 0..512)) {
        exercise::checkpoint(&data);
    }

    #[test]
    fn checkpoint_never_panics_on_mutated_files(data in mutated("checkpoint")) {
        exercise::checkpoint(&data);
    }
}

#[test]
fn every_seed_is_read_as_its_name_says() {
    // The seeds are the corpus' valid starting points (and a few named near misses): the
    // valid ones must parse, so mutations start from the parsers' deep paths.
    for target in ["npy", "checkpoint", "kernel_config", "tuning_cache"] {
        for seed in seeds(target) {
            match target {
                "npy" => exercise::npy(&seed),
                "checkpoint" => exercise::checkpoint(&seed),
                "kernel_config" => exercise::kernel_config(&seed),
                _ => exercise::tuning_cache(&seed),
            }
        }
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/npy");
    for name in [
        "f32_2x3.npy",
        "f16_char_e.npy",
        "f32_native_v2.npy",
        "f32_v3_3d.npy",
        "empty_0x4.npy",
    ] {
        qkv_wgpu::io::npy::read_f32(&dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/checkpoint");
    for name in [
        "bert.safetensors",
        "llama_gqa_f16.safetensors",
        "gpt2.safetensors",
    ] {
        let c = qkv_wgpu::io::checkpoint::Checkpoint::open(&dir.join(name)).unwrap();
        c.find_family("").unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}
