//! Devices that offer less than lavapipe does (issue #11, items 12 to 14), made by creating
//! the device with lowered limits: what fits still runs and validates, and what does not is
//! refused by name with the limit, never a GPU validation error. And the subgroup size the
//! context measures (on Metal, where wgpu's reported range is a placeholder) agrees with
//! what the driver reports here.

mod common;

use common::{assert_pass, check_on, ctx};
use qkv_wgpu::{
    AdapterFilter, ContextOptions, GpuContext, Kernel, KernelConfig, KernelSpec, Projector,
    QkvShape,
};

fn context_with(limits: wgpu::Limits) -> GpuContext {
    let filter = AdapterFilter::from_env().unwrap();
    GpuContext::with_options(
        &filter,
        &ContextOptions {
            limits: Some(limits),
            ..Default::default()
        },
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

/// A ragged shape with a bias: no dimension a multiple of any tile.
fn shape() -> QkvShape {
    QkvShape::new(37, 50, 24, 8, true).unwrap()
}

#[test]
fn six_storage_buffers_run_every_kernel_but_split_k() {
    // Issue #11, item 12: split-K's layout (seven storage buffers) was built at start-up,
    // so a device with six could run nothing.
    let ctx = context_with(wgpu::Limits {
        max_storage_buffers_per_shader_stage: 6,
        ..wgpu::Limits::default()
    });
    for k in [
        Kernel::Naive,
        Kernel::Tiled,
        Kernel::Direct,
        Kernel::Texture,
    ] {
        assert_pass(&check_on(&ctx, shape(), k, 1), k.name());
    }
    let splitk = KernelConfig::from(Kernel::Splitk);
    let why = splitk
        .unsupported_on(&ctx.summary)
        .expect("split-K is refused");
    assert!(
        why.contains("binds 7 storage buffers") && why.contains("allows 6"),
        "{why}"
    );
    let err = Projector::new(&ctx, shape(), splitk)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("max_storage_buffers_per_shader_stage"),
        "{err}"
    );
}

#[test]
fn a_device_of_128_invocations_runs_what_fits_and_names_what_does_not() {
    // Issue #11, item 14: fill_nan (run before every dispatch) and four kernels used 256
    // invocations per workgroup; GLES 3.1 guarantees 128.
    let ctx = context_with(wgpu::Limits {
        max_compute_invocations_per_workgroup: 128,
        max_compute_workgroup_size_x: 128,
        max_compute_workgroup_size_y: 128,
        ..wgpu::Limits::default()
    });
    assert_eq!(ctx.grid_stride_workgroup(), 128);
    for c in ["direct(wg=64)", "texture(wg=32)", "regtile(wgx=8,wgy=16)"] {
        let config: KernelConfig = c.parse().unwrap();
        assert_pass(&check_on(&ctx, shape(), config, 2), c);
    }
    for k in [
        Kernel::Naive,
        Kernel::Tiled,
        Kernel::Blocktile,
        Kernel::Splitk,
    ] {
        let why = KernelConfig::from(k)
            .unsupported_on(&ctx.summary)
            .unwrap_or_else(|| panic!("{k} needs 256 invocations"));
        assert!(
            why.contains("needs workgroups of 256 invocations") && why.contains("allows 128"),
            "{why}"
        );
        let err = Projector::new(&ctx, shape(), k).unwrap_err().to_string();
        assert!(err.contains("allows 128"), "{k}: {err}");
    }
    let candidates = qkv_wgpu::tune::candidates(&ctx, qkv_wgpu::ElementType::F32, None);
    assert!(!candidates.is_empty());
    for c in candidates {
        assert!(KernelSpec::new(c).unwrap().invocations <= 128, "{c}");
    }
}

#[test]
fn the_measured_subgroup_size_is_within_what_the_driver_reports() {
    // Issue #11, item 13: on Metal wgpu reports 4..64 for every GPU, so the subgroup
    // kernels never ran on a Mac; the context measures instead. Here, on a driver that
    // reports its real range, the measurement must fall inside it.
    let ctx = ctx();
    assert!(
        ctx.summary.subgroup,
        "the test adapter ({}) must offer subgroups",
        ctx.summary.name
    );
    let (min, max) = ctx.measure_subgroup_size().unwrap();
    let (lo, hi) = ctx.summary.subgroup_size;
    assert!(
        lo <= min && min <= max && max <= hi,
        "measured {min}..{max}, reported {lo}..{hi}"
    );
}

#[test]
fn the_browsers_webgpu_runs_no_kernel_written_for_nagas_wgsl() {
    // Issue #14: the subgroup kernels use subgroup builtins with no `enable subgroups;`
    // (naga 30 rejects the directive, browsers require it) and coopmat uses naga's own
    // `enable wgpu_cooperative_matrix`. The browser compiles WGSL itself: its adapter says
    // so (`naga_wgsl: false`), and the kernels' requirements refuse them there by name,
    // whatever features the adapter offers.
    let native = ctx().summary.clone();
    assert!(
        native.naga_wgsl,
        "every native backend compiles through naga"
    );
    let mut browser = native.clone();
    browser.naga_wgsl = false;
    browser.name = "a browser's WebGPU adapter".into();
    browser.subgroup = true;
    browser.subgroup_size = (32, 32);
    browser.shader_f16 = true;
    browser.cooperative_matrix = vec![qkv_wgpu::adapter::CoopMatrix::f16_inputs(8, true)];
    for c in [
        "subgroup(wg=32)",
        "subgroup-texture(wg=32)",
        "coopmat(tile=8,acc=32)",
    ] {
        let config: KernelConfig = c.parse().unwrap();
        let why = config
            .unsupported_on(&browser)
            .unwrap_or_else(|| panic!("{c} must be refused in the browser"));
        assert!(
            why.contains("WGSL wgpu's naga reads") && why.contains("browser's WebGPU"),
            "{c}: {why}"
        );
    }
    for k in Kernel::ALL.into_iter().filter(|k| {
        !matches!(
            k,
            Kernel::Subgroup | Kernel::SubgroupTexture | Kernel::Coopmat
        )
    }) {
        let config = KernelConfig::from(k);
        assert_eq!(
            config.unsupported_on(&browser),
            config.unsupported_on(&native),
            "{k}: only naga's dialect differs between the two"
        );
    }
}

#[test]
fn where_the_clocks_are_coarse_a_timed_sample_holds_many_batches() {
    // Issue #14: the browser rounds WebGPU timestamps (and performance.now()) to 100 µs, so a
    // short kernel timed alone reads 0 and the tuner's comparisons mean nothing. There each
    // sample holds enough batches back to back to last 10 ms, its time divided among them.
    // This context says its clocks are coarse (as the browser's adapter does) on lavapipe.
    let mut ctx = GpuContext::new(&AdapterFilter::from_env().unwrap()).unwrap();
    let shape = QkvShape::new(8, 16, 8, 8, true).unwrap();
    let (x, w) = qkv_wgpu::random_inputs(&shape, 7);
    let fine = {
        let mut p = Projector::new(&ctx, shape, Kernel::Tiled).unwrap();
        p.set_weights(&w).unwrap();
        p.run(&x).unwrap();
        p.time_kernel(0, 3).unwrap()
    };
    assert_eq!(
        fine.per_sample, 1,
        "native clocks time one batch per sample"
    );
    ctx.summary.backend = format!("{:?}", wgpu::Backend::BrowserWebGpu);
    assert!(ctx.summary.coarse_clocks());
    let mut p = Projector::new(&ctx, shape, Kernel::Tiled).unwrap();
    p.set_weights(&w).unwrap();
    p.run(&x).unwrap();
    let coarse = p.time_kernel(0, 3).unwrap();
    assert_eq!(coarse.samples.len(), 3);
    assert!(coarse.per_sample > 1, "{coarse:?}");
    assert!(coarse.samples.iter().all(|t| !t.is_zero()), "{coarse:?}");
    if coarse.per_sample < 1024 {
        // Each sample was grown to last about 10 ms; half that leaves room for noise.
        let sample = coarse.median() * coarse.per_sample;
        assert!(sample >= std::time::Duration::from_millis(5), "{coarse:?}");
    }
    // The projector still validates after timing.
    let out = p.run(&x).unwrap();
    let reference = qkv_wgpu::reference(&shape, &x, &w);
    let tol = qkv_wgpu::Tolerance::for_f32_accumulation(shape.d_model);
    assert_pass(
        &qkv_wgpu::QkvReport::of(&out, &reference, &shape, tol),
        "after coarse timing",
    );
}

#[test]
fn a_context_told_to_use_the_host_clock_times_and_labels_with_it() {
    // Issue #14: kernel times come from GPU timestamps where the adapter has them, else from
    // the host's clock, labelled so. `host_timer` takes the second path on any adapter.
    let ctx = GpuContext::with_options(
        &AdapterFilter::from_env().unwrap(),
        &ContextOptions {
            host_timer: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert!(!ctx.has_timestamps());
    assert!(!ctx
        .device
        .features()
        .contains(wgpu::Features::TIMESTAMP_QUERY));
    let shape = shape();
    let (x, w) = qkv_wgpu::random_inputs(&shape, 11);
    let mut p = Projector::new(&ctx, shape, Kernel::Tiled).unwrap();
    p.set_weights(&w).unwrap();
    let out = p.run(&x).unwrap();
    assert_eq!(out.timings.kernel_timer, qkv_wgpu::KernelTimer::Host);
    let tol = qkv_wgpu::Tolerance::for_f32_accumulation(shape.d_model);
    let reference = qkv_wgpu::reference(&shape, &x, &w);
    assert_pass(
        &qkv_wgpu::QkvReport::of(&out, &reference, &shape, tol),
        "host timer",
    );
    let times = p.time_kernel(0, 3).unwrap();
    assert_eq!(times.timer, qkv_wgpu::KernelTimer::Host);
    assert!(times.samples.iter().all(|t| !t.is_zero()), "{times:?}");
}
