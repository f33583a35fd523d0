//! criterion benchmarks: each kernel configuration the adapter can run on the named model
//! shapes, at a token count small enough for a software adapter. Each configuration is
//! validated against the f64 reference before it is timed. The time is host-measured
//! (submit to results read back), so it includes upload and readback; `qkv bench` reports the
//! GPU-timestamp kernel time.
//!
//!     cargo bench                        # QKV_BENCH_TOKENS=512 cargo bench for more tokens

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use qkv_wgpu::presets::PRESETS;
use qkv_wgpu::{
    random_inputs, reference, AdapterFilter, GpuContext, Projector, QkvReport, QkvShape, Tolerance,
};

fn projection(c: &mut Criterion) {
    let filter = AdapterFilter::from_env().expect("QKV_BACKEND / QKV_ADAPTER are valid");
    let ctx =
        GpuContext::new(&filter).unwrap_or_else(|e| panic!("benchmarks need an adapter: {e}"));
    let tokens: u32 = std::env::var("QKV_BENCH_TOKENS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(128);
    let mut configs = vec![qkv_wgpu::KernelConfig::from(qkv_wgpu::Kernel::Naive)];
    configs.extend(qkv_wgpu::tune::candidates(
        &ctx,
        qkv_wgpu::ElementType::F32,
        None,
    ));
    for p in PRESETS {
        let shape = QkvShape::new(tokens, p.d_model, p.q_width, p.kv_width, p.bias).unwrap();
        let (x, w) = random_inputs(&shape, 42);
        let expected = reference(&shape, &x, &w);
        let tol = Tolerance::for_f32_accumulation(shape.d_model);
        let mut group = c.benchmark_group(format!("{}/{}tok", p.name, tokens));
        group.sample_size(10);
        group.throughput(Throughput::Elements(shape.flops() as u64));
        for config in &configs {
            let mut projector = Projector::new(&ctx, shape, *config).unwrap();
            projector.set_weights(&w).unwrap();
            let out = projector.run(&x).unwrap();
            let report = QkvReport::of(&out, &expected, &shape, tol);
            assert!(report.pass(), "{config} on {}: {}", p.name, report.q);
            group.bench_function(config.to_string(), |b| {
                b.iter(|| projector.run(&x).unwrap())
            });
        }
        group.finish();
    }
}

criterion_group!(benches, projection);
criterion_main!(benches);
