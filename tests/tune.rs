//! Autotuning: every candidate is correct on ragged shapes; the tuner picks a validated
//! configuration and caches it; a cached choice that is stale, unknown or no longer validates
//! is discarded, never trusted.

mod common;

use common::{assert_pass, check, ctx};
use qkv_wgpu::tune::{candidates, choose, shape_class_key, TuneOptions};
use qkv_wgpu::{ElementType, Kernel, QkvShape, Tolerance};

#[test]
fn every_candidate_is_correct_on_ragged_shapes() {
    let cands = candidates(ctx(), ElementType::F32, None);
    assert!(cands.len() >= 5, "{cands:?}");
    // lavapipe, the CI adapter, has subgroups of 8: the subgroup variant must be in the set.
    if ctx().summary.subgroup && ctx().summary.subgroup_size.0 >= 8 {
        assert!(cands.iter().any(|c| c.kernel == Kernel::Subgroup));
    }
    for (i, &(t, d, q, kv)) in [
        (1, 1, 1, 1),
        (9, 13, 5, 3),
        (33, 70, 130, 6),
        (70, 17, 64, 64),
    ]
    .iter()
    .enumerate()
    {
        for config in &cands {
            for bias in [false, true] {
                let shape = QkvShape::new(t, d, q, kv, bias).unwrap();
                let report = check_config(shape, *config, 40 + i as u64);
                assert_pass(&report, &format!("{config}, {shape}"));
            }
        }
    }
}

fn check_config(shape: QkvShape, config: qkv_wgpu::KernelConfig, seed: u64) -> qkv_wgpu::QkvReport {
    let (x, w) = qkv_wgpu::random_inputs(&shape, seed);
    let mut p = qkv_wgpu::Projector::new(ctx(), shape, config).unwrap();
    p.set_weights(&w).unwrap();
    let out = p.run(&x).unwrap();
    let r = qkv_wgpu::reference(&shape, &x, &w);
    qkv_wgpu::QkvReport::new(
        (&out.q, &out.k, &out.v),
        &r,
        shape.q_width,
        shape.kv_width,
        common::tolerance(&shape),
    )
}

fn opts(dir: &tempfile::TempDir) -> TuneOptions {
    TuneOptions {
        cache_dir: Some(dir.path().to_path_buf()),
        ..Default::default()
    }
}

/// A small shape so tuning takes well under a second per candidate on lavapipe.
fn small() -> QkvShape {
    QkvShape::new(40, 24, 16, 8, true).unwrap()
}

#[test]
fn tuning_picks_a_validated_candidate_caches_it_and_reuses_it() {
    let dir = tempfile::tempdir().unwrap();
    let first = choose(ctx(), &small(), &opts(&dir)).unwrap();
    assert!(
        first.reason.starts_with("autotuned now"),
        "{}",
        first.reason
    );
    assert!(first
        .trials
        .iter()
        .any(|t| t.config == first.config.to_string() && t.ms.is_some()));
    let report = check_config(small(), first.config, 7);
    assert_pass(&report, "the tuned choice");
    let cache = std::fs::read_to_string(dir.path().join("tuning.json")).unwrap();
    assert!(cache.contains(&first.config.to_string()));

    let again = choose(ctx(), &small(), &opts(&dir)).unwrap();
    assert_eq!(again.config, first.config);
    assert!(
        again.reason.starts_with("autotuned earlier"),
        "{}",
        again.reason
    );

    let forced = choose(
        ctx(),
        &small(),
        &TuneOptions {
            force: true,
            ..opts(&dir)
        },
    )
    .unwrap();
    assert!(forced.reason.contains("--tune"), "{}", forced.reason);
}

/// Rewrites the cached entry for `small()` with `edit` applied to its JSON.
fn tamper(dir: &tempfile::TempDir, edit: impl Fn(&mut serde_json::Value)) {
    choose(ctx(), &small(), &opts(dir)).unwrap();
    let path = dir.path().join("tuning.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let key = shape_class_key(ctx(), &small(), ElementType::F32, None);
    edit(&mut v["entries"][&key]);
    std::fs::write(&path, serde_json::to_string(&v).unwrap()).unwrap();
}

#[test]
fn a_cached_choice_naming_no_real_variant_is_discarded() {
    let dir = tempfile::tempdir().unwrap();
    tamper(&dir, |e| e["config"] = "warp9(wg=3)".into());
    let c = choose(ctx(), &small(), &opts(&dir)).unwrap();
    assert!(
        c.reason
            .contains("the cached choice was discarded: warp9(wg=3)"),
        "{}",
        c.reason
    );
    assert!(c.reason.contains("unknown kernel 'warp9'"), "{}", c.reason);
}

#[test]
fn a_cached_choice_for_a_changed_shader_is_discarded() {
    let dir = tempfile::tempdir().unwrap();
    tamper(&dir, |e| e["shader_hash"] = "0000000000000000".into());
    let c = choose(ctx(), &small(), &opts(&dir)).unwrap();
    assert!(
        c.reason.contains("changed since it was tuned"),
        "{}",
        c.reason
    );
}

#[test]
fn a_cached_choice_that_no_longer_validates_is_discarded() {
    let dir = tempfile::tempdir().unwrap();
    choose(ctx(), &small(), &opts(&dir)).unwrap();
    // A zero tolerance that no f32 result meets: the cached choice must fail its re-check,
    // be discarded, and (with every candidate failing too) nothing may be chosen.
    let strict = TuneOptions {
        tolerance: Some(Tolerance::single(0.0, 0.0, 0.0)),
        ..opts(&dir)
    };
    let err = choose(ctx(), &small(), &strict).unwrap_err().to_string();
    assert!(err.contains("the cached choice was discarded"), "{err}");
    assert!(err.contains("failed validation"), "{err}");
}

#[test]
fn a_tiny_ragged_shape_passes_for_every_candidate_and_the_default() {
    let shape = QkvShape::new(3, 5, 7, 2, false).unwrap();
    for config in candidates(ctx(), ElementType::F32, None) {
        assert_pass(&check_config(shape, config, 1), &config.to_string());
    }
    // And the plain helper still covers the default kernels.
    assert_pass(&check(shape, Kernel::DEFAULT, 2), "default");
}

#[test]
fn a_choice_tuned_on_a_busy_machine_is_tuned_again_and_the_margin_is_kept() {
    // Issue #22: a tuning done while the machine was busy was cached for good. The entry
    // keeps the margin its winner won by; a re-check that runs the winner far faster than
    // it ran when tuned (here: a recorded time of 1000 s) discards it and tunes again.
    let dir = tempfile::tempdir().unwrap();
    let first = choose(ctx(), &small(), &opts(&dir)).unwrap();
    assert!(first.reason.contains("it won by"), "{}", first.reason);
    let path = dir.path().join("tuning.json");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let key = shape_class_key(ctx(), &small(), ElementType::F32, None);
    let margin = v["entries"][&key]["margin"].as_f64().expect("a margin");
    assert!(margin >= 1.0, "{margin}");
    tamper(&dir, |e| {
        let winner = e["config"].clone();
        for t in e["trials"].as_array_mut().unwrap() {
            if t["config"] == winner {
                t["ms"] = 1e6.into();
            }
        }
    });
    let again = choose(ctx(), &small(), &opts(&dir)).unwrap();
    assert!(
        again.reason.starts_with("autotuned now")
            && again.reason.contains("while the machine was busy"),
        "{}",
        again.reason
    );
}

#[test]
fn with_w_in_blocks_the_tuner_tries_only_kernels_that_read_them_and_keeps_them_apart() {
    // Issue #34: decode, blocktile and subgroup-texture read block formats; the others are no
    // candidates, and a choice for Q4_0 weights is its own cache entry, apart from f32's.
    use qkv_wgpu::quant::{BlockFormat, WeightType};
    let q4 = Some([WeightType::Blocks(BlockFormat::Q4_0); 3]);
    let cands = candidates(ctx(), ElementType::F32, q4);
    for kernel in [Kernel::Decode, Kernel::SubgroupTexture] {
        assert!(cands.iter().any(|c| c.kernel == kernel), "{cands:?}");
    }
    assert!(cands.iter().all(|c| matches!(
        c.kernel,
        Kernel::Decode | Kernel::Blocktile | Kernel::SubgroupTexture
    )));
    let shape = QkvShape::new(1, 64, 32, 16, true).unwrap();
    let plain = shape_class_key(ctx(), &shape, ElementType::F32, None);
    let blocks = shape_class_key(ctx(), &shape, ElementType::F32, q4);
    assert!(
        blocks.starts_with(&plain) && blocks.ends_with("| w q4_0,q4_0,q4_0"),
        "{blocks}"
    );
    let dir = tempfile::tempdir().unwrap();
    let opts = TuneOptions {
        cache_dir: Some(dir.path().to_path_buf()),
        weights: q4,
        ..TuneOptions::default()
    };
    let choice = choose(ctx(), &shape, &opts).unwrap();
    assert!(choice.spec.w_formats == q4, "{:?}", choice.spec);
    assert!(matches!(
        choice.config.kernel,
        Kernel::Decode | Kernel::Blocktile
    ));
}
