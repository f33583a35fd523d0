//! `qkv peak` and the peak shares of `run` and `bench`: the measurement on the test adapter
//! (lavapipe: small figures, the same code as on a GPU), its cache, and the shares.

mod common;

use common::ctx;
use qkv_wgpu::peak::{self, Peak};
use qkv_wgpu::{ElementType, Kernel, KernelConfig, KernelSpec, Projector, QkvShape};
use std::process::Command;
use std::sync::OnceLock;

/// One measurement for every test of this binary (seconds on lavapipe).
fn measured() -> &'static Peak {
    static PEAK: OnceLock<Peak> = OnceLock::new();
    PEAK.get_or_init(|| {
        let mut seen = Vec::new();
        let p = peak::measure(ctx(), &mut |what| seen.push(what.to_string()))
            .expect("the peak measures");
        assert_eq!(
            seen.first().map(String::as_str),
            Some("f32 FMA"),
            "{seen:?}"
        );
        assert!(seen.last().unwrap().contains("bandwidth"), "{seen:?}");
        p
    })
}

#[test]
fn every_figure_is_measured_for_this_adapter() {
    let p = measured();
    let s = &ctx().summary;
    assert!(p.is_for(s), "{p:?}");
    for (what, v) in [("f32 FMA", p.f32_fma_gflops), ("copy", p.copy_gbs)] {
        assert!(v.is_finite() && v > 0.0, "{what}: {v}");
    }
    // One figure per cooperative-matrix configuration with f16 inputs the adapter offers
    // (none on Debian 12's lavapipe; two in the Mesa 26 lane).
    let offered: Vec<String> = s
        .cooperative_matrix
        .iter()
        .filter(|c| c.inputs == "f16" && matches!(c.size, 8 | 16))
        .map(|c| c.to_string())
        .collect();
    let got: Vec<String> = p.coop.iter().map(|c| c.name()).collect();
    assert_eq!(got, offered);
    for c in &p.coop {
        assert!(c.gflops.is_finite() && c.gflops > 0.0, "{c:?}");
    }
}

#[test]
fn no_projection_kernel_beats_the_peak_of_its_arithmetic() {
    // The peak kernels do nothing but arithmetic: a projection kernel, which also loads,
    // stores and synchronises, cannot be faster. A wrong flop count or a peak kernel the
    // compiler thinned out would show here (the margin covers the timing noise of a shared
    // CPU).
    let p = measured();
    let shape = QkvShape::new(256, 256, 256, 256, false).unwrap();
    let (x, w) = qkv_wgpu::random_inputs(&shape, 3);
    let mut configs = vec![
        KernelConfig::from(Kernel::Blocktile),
        KernelConfig::new(Kernel::Texture, &[32]),
    ];
    configs.extend(
        qkv_wgpu::tune::candidates(ctx(), ElementType::F16, None)
            .into_iter()
            .filter(|c| c.kernel == Kernel::Coopmat),
    );
    for config in configs {
        let element = if config.kernel == Kernel::Coopmat {
            ElementType::F16
        } else {
            ElementType::F32
        };
        let spec = KernelSpec::new(config.for_adapter(&ctx().summary))
            .and_then(|s| s.with_element(element))
            .unwrap();
        if spec.unsupported_on(&ctx().summary).is_some() {
            continue;
        }
        let mut projector = Projector::typed(
            ctx(),
            shape,
            config,
            element,
            qkv_wgpu::OutputLayout::Tokens,
            &Default::default(),
        )
        .unwrap();
        projector.set_weights(&w).unwrap();
        let out = projector.run(&x).unwrap();
        let times = projector
            .time_kernel(projector.steady_warmups(out.timings.kernel), 3)
            .unwrap();
        let gflops = shape.gflops(times.median().as_secs_f64());
        let share = p.share(&spec, &shape, gflops).expect("measured");
        assert!(
            share.peak_share < 1.5,
            "{config}: {gflops:.2} GFLOP/s, {share}"
        );
        assert!(share.roofline_gflops <= share.peak_gflops);
    }
}

#[test]
fn the_cache_keeps_one_peak_per_adapter_and_driver() {
    let dir = tempfile::tempdir().unwrap();
    let d = || Some(dir.path().to_path_buf());
    let s = &ctx().summary;
    assert_eq!(peak::cached(s, d()).0, None);
    let p = measured().clone();
    assert!(peak::store(&p, d()).unwrap().is_empty());
    let other = Peak {
        driver: "another driver".into(),
        f32_fma_gflops: 1.0,
        ..p.clone()
    };
    peak::store(&other, d()).unwrap();
    let (back, notes) = peak::cached(s, d());
    assert_eq!(back.as_ref(), Some(&p), "{notes:?}");
    // Kernels of another version: measured again.
    let stale = Peak {
        version: peak::VERSION + 1,
        ..p.clone()
    };
    peak::store(&stale, d()).unwrap();
    assert_eq!(peak::cached(s, d()).0, None);
    // A file that is not a peak cache is named, never trusted.
    std::fs::write(dir.path().join("peak.json"), "{\"entries\": 3}").unwrap();
    let (none, notes) = peak::cached(s, d());
    assert_eq!(none, None);
    assert!(
        notes[0].contains("peak cache") && notes[0].contains("unreadable"),
        "{notes:?}"
    );
}

fn qkv(cache: &std::path::Path, args: &[&str]) -> (String, String) {
    let out = Command::new(assert_cmd::cargo::cargo_bin("qkv"))
        .env("QKV_CACHE_DIR", cache)
        .args(args)
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(out.status.success(), "qkv {args:?}:\n{stdout}\n{stderr}");
    (stdout, stderr)
}

#[test]
fn qkv_peak_measures_once_then_run_and_bench_show_each_kernels_share() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path();
    let run = [
        "run",
        "--tokens",
        "64",
        "--d-model",
        "64",
        "--q-width",
        "32",
    ];
    let (text, _) = qkv(cache, &[&run[..], &["--kernel", "texture(wg=32)"]].concat());
    assert!(text.contains("of the peak  unknown: `qkv peak`"), "{text}");

    let (json, _) = qkv(cache, &["peak", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["source"], "measured now, cached for run and bench");
    assert!(v["f32_fma_gflops"].as_f64().unwrap() > 0.0, "{v}");
    let (text, _) = qkv(cache, &["peak"]);
    assert!(text.contains("cached (qkv peak --refresh"), "{text}");
    assert!(text.contains("f32 FMA") && text.contains("GB/s"), "{text}");

    let (text, _) = qkv(cache, &[&run[..], &["--kernel", "texture(wg=32)"]].concat());
    assert!(
        text.contains("of the f32 FMA peak") && text.contains("of the roofline here"),
        "{text}"
    );
    let (json, _) = qkv(
        cache,
        &[&run[..], &["--kernel", "naive", "--json"]].concat(),
    );
    let v: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
    let share = v["peak_share"].as_f64().expect("a share");
    let expected = v["gflops"].as_f64().unwrap() / v["peak_gflops"].as_f64().unwrap();
    assert!((share - expected).abs() < 1e-9 * expected, "{v}");
    assert_eq!(v["peak_of"], "f32 FMA");

    let bench = [
        "bench",
        "--d-model",
        "64",
        "--q-width",
        "32",
        "--tokens",
        "64",
        "--kernel",
        "naive",
        "--no-cpu",
        "--repeats",
        "1",
    ];
    let (json, _) = qkv(cache, &[&bench[..], &["--json"]].concat());
    let rows: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert!(rows[0]["peak_share"].as_f64().unwrap() > 0.0, "{rows}");
    assert!(rows[0]["roofline_share"].as_f64().unwrap() >= rows[0]["peak_share"].as_f64().unwrap());
    let (csv, _) = qkv(cache, &[&bench[..], &["--csv"]].concat());
    assert!(csv.lines().next().unwrap().contains("peak_share"), "{csv}");
    let (table, _) = qkv(cache, &bench);
    assert!(
        table.contains("peak%") && table.contains("roof%"),
        "{table}"
    );
}

#[test]
fn a_cached_peak_that_cannot_be_a_measurement_is_ignored_issue_32() {
    // Issue #32: 0, -5, 1e-30 and 1e30 in peak.json printed inf%, -14.3%, a 32-digit share
    // and 0.0%. Each is named and ignored, and the next `qkv peak` measures again.
    let dir = tempfile::tempdir().unwrap();
    let d = || Some(dir.path().to_path_buf());
    let s = &ctx().summary;
    for bad in [0.0, -5.0, 1e-30, 1e30, f64::NAN] {
        for which in ["fma", "copy"] {
            let mut p = measured().clone();
            if which == "fma" {
                p.f32_fma_gflops = bad;
            } else {
                p.copy_gbs = bad;
            }
            peak::store(&p, d()).unwrap();
            let (back, notes) = peak::cached(s, d());
            assert_eq!(back, None, "{which} {bad}");
            assert!(
                // NaN is written as null, which the cache drops as malformed.
                notes
                    .iter()
                    .any(|n| n.contains("not a measurement") || n.contains("malformed")),
                "{which} {bad}: {notes:?}"
            );
        }
    }
    let p = measured().clone();
    peak::store(&p, d()).unwrap();
    assert_eq!(peak::cached(s, d()).0.as_ref(), Some(&p));
}

#[test]
fn a_share_past_the_peak_is_marked_impossible_not_printed_issue_32() {
    // A plausible but far too low cached peak (1 MFLOP/s, 1 MB/s): every kernel "beats" it,
    // which no kernel can; the share is marked impossible in text and JSON.
    let dir = tempfile::tempdir().unwrap();
    let mut low = measured().clone();
    low.f32_fma_gflops = 1e-3;
    low.copy_gbs = 1e-3;
    peak::store(&low, Some(dir.path().to_path_buf())).unwrap();
    let run = [
        "run",
        "--tokens",
        "16",
        "--d-model",
        "32",
        "--q-width",
        "16",
        "--kernel",
        "naive",
    ];
    let (text, _) = qkv(dir.path(), &run);
    assert!(
        text.contains("of the peak  impossible:") && !text.contains("% of the f32 FMA peak"),
        "{text}"
    );
    let (json, _) = qkv(dir.path(), &[&run[..], &["--json"]].concat());
    let v: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
    assert_eq!(v["impossible"], true, "{v}");
    let (table, _) = qkv(
        dir.path(),
        &[
            "bench",
            "--tokens",
            "16",
            "--d-model",
            "32",
            "--q-width",
            "16",
            "--kernel",
            "naive",
            "--no-cpu",
            "--repeats",
            "1",
        ],
    );
    assert!(
        table.contains("!>100") && table.contains("no kernel is"),
        "{table}"
    );
}

#[test]
fn a_peak_far_below_the_earlier_one_is_called_suspect() {
    let p = measured().clone();
    assert_eq!(peak::fell(&p, &p), None);
    let loaded = Peak {
        f32_fma_gflops: p.f32_fma_gflops * 0.3,
        ..p.clone()
    };
    let why = peak::fell(&p, &loaded).expect("suspect");
    assert!(
        why.contains("under load") && why.contains("f32 FMA"),
        "{why}"
    );
}
