//! Never a panic on hostile input (issue #11): property tests over arbitrary bytes and over
//! mutations (bytes flipped, cut, spliced, repeated) of the fuzzing seed corpus in
//! `fuzz/seeds/`, for every parser that reads what a user hands `qkv`: the `.npy` reader,
//! safetensors checkpoints with family detection, the `--kernel` parser, the tuning cache,
//! and the commit journal an output directory may hold (planted or damaged). The bodies are the fuzz targets' own (`fuzz/exercise.rs`); `cargo fuzz` runs them
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
    fn gguf_never_panics_on_arbitrary_bytes(data in prop::collection::vec(any::<u8>(), 0..512)) {
        exercise::gguf(&data);
    }

    #[test]
    fn gguf_never_panics_on_mutated_files(data in mutated("gguf")) {
        exercise::gguf(&data);
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
    // Each case makes a directory and files.
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    #[test]
    fn journal_never_panics_or_touches_a_users_file(data in prop::collection::vec(any::<u8>(), 0..512)) {
        exercise::journal(&data);
    }

    #[test]
    fn journal_never_panics_or_touches_a_users_file_on_mutated_journals(data in mutated("journal")) {
        exercise::journal(&data);
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
    for target in [
        "npy",
        "checkpoint",
        "kernel_config",
        "tuning_cache",
        "journal",
    ] {
        for seed in seeds(target) {
            match target {
                "npy" => exercise::npy(&seed),
                "checkpoint" => exercise::checkpoint(&seed),
                "kernel_config" => exercise::kernel_config(&seed),
                "journal" => exercise::journal(&seed),
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

#[cfg(unix)]
#[test]
fn special_files_are_refused_by_every_reader_never_read_or_waited_on() {
    // Issue #22: a FIFO hung every run, a symlink to /dev/zero grew memory past 2 GB. Every
    // reader of a user's file names what it got instead of reading it.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let fifo = d.join("fifo");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    let zero = d.join("zero");
    std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
    for special in [&fifo, &zero, Path::new("/dev/null")] {
        let e = qkv_wgpu::io::npy::NpyRows::open(special)
            .expect_err("refused")
            .to_string();
        assert!(e.contains("not a regular file"), "{e}");
        let e = qkv_wgpu::io::checkpoint::Checkpoint::open(special)
            .expect_err("refused")
            .to_string();
        assert!(e.contains("not a regular file"), "{e}");
        let (entries, notes) = qkv_wgpu::tune::cache::Cache::at(special.to_path_buf()).load();
        assert!(
            entries.is_empty() && notes[0].contains("not a regular file"),
            "{notes:?}"
        );
    }
    // The journal, as a FIFO and as a link to /dev/zero.
    for (i, target) in [&fifo, &zero].iter().enumerate() {
        let out = d.join(format!("out{i}"));
        std::fs::create_dir(&out).unwrap();
        std::fs::rename(target, out.join(qkv_wgpu::io::commit::JOURNAL)).unwrap();
        let e = qkv_wgpu::io::commit::OutputDir::open(&out)
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a journal qkv wrote"), "{e}");
    }
}
