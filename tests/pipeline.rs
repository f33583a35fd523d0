//! The threaded streaming pipeline (src/projector/pipeline/): the same bits as the
//! one-after-another path on ragged chunk counts, in every storage type, through each way X
//! reaches the GPU (written into mapped staging memory, or by the queue into a texture), with
//! two to five buffer sets; and a failure at every stage (the source, a panic in it, the
//! GPU, the sink) ends the run with that error named, hands the sink nothing after it, and
//! leaves the projector ready for the next run.

mod common;

use common::{assert_pass, ctx, tolerance};
use qkv_wgpu::plan::ChunkOptions;
use qkv_wgpu::{
    random_inputs, reference, AdapterFilter, ElementType, Error, GpuContext, Kernel, OutputLayout,
    Projector, QkvReport, QkvShape,
};
use std::sync::atomic::{AtomicU32, Ordering};

fn projector(
    ctx: &GpuContext,
    shape: QkvShape,
    kernel: Kernel,
    element: ElementType,
    (chunk_tokens, streaming, buffer_sets): (u32, bool, u32),
) -> Projector<'_> {
    let opts = ChunkOptions {
        chunk_tokens: Some(chunk_tokens),
        streaming,
        buffer_sets,
        ..Default::default()
    };
    Projector::typed(ctx, shape, kernel, element, OutputLayout::Tokens, &opts).unwrap()
}

#[test]
fn the_pipeline_matches_the_sequential_path_bit_for_bit_on_ragged_chunk_counts() {
    // 150 tokens in chunks of 16: 10 chunks, the last of 6. d_model 33: odd rows, so a
    // half-typed chunk ends in half a word. `direct` reads X from a buffer written in
    // mapped staging memory; `texture` from a texture the queue writes.
    let shape = QkvShape::new(150, 33, 17, 9, true).unwrap();
    let (x, w) = random_inputs(&shape, 31);
    for kernel in [Kernel::Direct, Kernel::Texture, Kernel::Blocktile] {
        for element in [ElementType::F32, ElementType::F16, ElementType::Bf16] {
            if kernel == Kernel::Direct && element != ElementType::F32 {
                continue; // reads only f32
            }
            let mut sequential = projector(ctx(), shape, kernel, element, (16, false, 2));
            sequential.set_weights(&w).unwrap();
            let want = sequential.run(&x).unwrap();
            assert!(!want.timings.threaded && want.timings.buffer_sets == 1);
            for sets in [2, 3, 5] {
                let what = format!("{kernel} in {element}, {sets} buffer sets");
                let mut p = projector(ctx(), shape, kernel, element, (16, true, sets));
                p.set_weights(&w).unwrap();
                // Twice: the second run starts from the sets the first left.
                for round in 0..2 {
                    let got = p.run(&x).unwrap();
                    let t = &got.timings;
                    assert!(t.threaded && t.streamed, "{what}");
                    assert_eq!((t.chunks, t.buffer_sets), (10, sets), "{what}");
                    let same = |a: &[f32], b: &[f32]| {
                        a.len() == b.len()
                            && a.iter().zip(b).all(|(a, b)| a.to_bits() == b.to_bits())
                    };
                    assert!(same(&got.q, &want.q), "{what}, round {round}: Q differs");
                    assert!(same(&got.k, &want.k), "{what}, round {round}: K differs");
                    assert!(same(&got.v, &want.v), "{what}, round {round}: V differs");
                }
            }
            if element == ElementType::F32 {
                // And both are right (the half types' checks live in tests/half.rs).
                let r = reference(&shape, &x, &w);
                let report = QkvReport::new(
                    (&want.q, &want.k, &want.v),
                    &r,
                    shape.q_width,
                    shape.kv_width,
                    tolerance(&shape),
                );
                assert_pass(&report, &format!("{kernel}"));
            }
        }
    }
}

#[test]
fn every_stage_reports_where_the_time_went() {
    let shape = QkvShape::new(96, 16, 16, 8, false).unwrap();
    let (x, w) = random_inputs(&shape, 2);
    let mut p = projector(ctx(), shape, Kernel::Direct, ElementType::F32, (8, true, 3));
    p.set_weights(&w).unwrap();
    let t = p.run(&x).unwrap().timings;
    let stages = t.stages();
    assert_eq!(
        stages.map(|s| s.0),
        ["produce X", "upload", "GPU", "consume Q, K, V"]
    );
    // Every stage did work, none longer than the run (each is busy time inside it).
    for (name, busy) in stages {
        assert!(busy > std::time::Duration::ZERO, "{name}");
        assert!(busy <= t.wall, "{name}: {busy:?} > wall {:?}", t.wall);
    }
    let bound = t.bound();
    assert!(stages.iter().all(|s| s.1 <= bound.1));
}

/// A stream of `shape` through a projector of 10 chunks, with `source` failing (or
/// panicking) at chunk `bad_source` and the sink at `bad_sink`; returns the error and the
/// chunks the sink was handed.
fn failing_run(
    p: &mut Projector<'_>,
    x: &[f32],
    d: usize,
    bad_source: Option<(u32, bool)>,
    bad_sink: Option<u32>,
) -> (Error, Vec<u32>) {
    let mut seen = Vec::new();
    let err = p
        .stream(
            |rows, mut dst| {
                let chunk = rows.start / 16;
                match bad_source {
                    Some((c, false)) if c == chunk => {
                        return Err(Error::Input("the source could not read chunk".into()))
                    }
                    Some((c, true)) if c == chunk => panic!("the source blew up"),
                    _ => {}
                }
                let part = &x[rows.start as usize * d..rows.end as usize * d];
                dst.put_f32(0, part).unwrap();
                Ok(())
            },
            |c| {
                if Some(c.index) == bad_sink {
                    return Err(Error::Input("the sink's disk is full".into()));
                }
                seen.push(c.index);
                Ok(())
            },
            |_| {},
        )
        .unwrap_err();
    (err, seen)
}

#[test]
fn a_failure_at_any_stage_ends_the_run_with_its_error_and_nothing_after_it() {
    let shape = QkvShape::new(150, 16, 16, 8, false).unwrap();
    let (x, w) = random_inputs(&shape, 4);
    let d = shape.d_model as usize;
    let mut p = projector(
        ctx(),
        shape,
        Kernel::Direct,
        ElementType::F32,
        (16, true, 3),
    );
    p.set_weights(&w).unwrap();
    let good = p.run(&x).unwrap();

    // The source fails at chunk 4: the sink got chunks before it, in order, and none after.
    let (err, seen) = failing_run(&mut p, &x, d, Some((4, false)), None);
    assert!(err.to_string().contains("could not read chunk"), "{err}");
    assert!(seen.iter().all(|&c| c < 4), "{seen:?}");
    assert!(seen.windows(2).all(|w| w[1] == w[0] + 1));

    // A panic in the source is an error naming it, not a hang or a crash.
    let (err, seen) = failing_run(&mut p, &x, d, Some((2, true)), None);
    assert!(
        err.to_string()
            .contains("the source of X panicked: the source blew up"),
        "{err}"
    );
    assert!(seen.iter().all(|&c| c < 2), "{seen:?}");

    // The sink fails at chunk 6: it is handed nothing after.
    let (err, seen) = failing_run(&mut p, &x, d, None, Some(6));
    assert!(err.to_string().contains("disk is full"), "{err}");
    assert_eq!(seen, (0..6).collect::<Vec<_>>());

    // The projector runs again, to the same bits.
    let again = p.run(&x).unwrap();
    assert_eq!(again.q, good.q);
    assert_eq!(again.v, good.v);
}

#[test]
fn a_gpu_lost_mid_run_ends_the_run_with_an_error_naming_a_chunk() {
    // A context of its own: its device is destroyed while chunk 3 is being produced.
    let filter = AdapterFilter::from_env().unwrap();
    let own = GpuContext::new(&filter).expect("an adapter (GPU tests never skip)");
    let shape = QkvShape::new(150, 16, 16, 8, false).unwrap();
    let (x, w) = random_inputs(&shape, 6);
    let d = shape.d_model as usize;
    let mut p = projector(&own, shape, Kernel::Direct, ElementType::F32, (16, true, 3));
    p.set_weights(&w).unwrap();
    let handed = AtomicU32::new(0);
    let device = own.device.clone();
    let err = p
        .stream(
            |rows, mut dst| {
                if rows.start / 16 == 3 {
                    device.destroy();
                }
                dst.put_f32(0, &x[rows.start as usize * d..rows.end as usize * d])
                    .unwrap();
                Ok(())
            },
            |_| {
                handed.fetch_add(1, Ordering::Relaxed);
                Ok(())
            },
            |_| {},
        )
        .unwrap_err();
    let message = err.to_string();
    assert!(message.contains("chunk"), "{message}");
    assert!(handed.load(Ordering::Relaxed) < 10, "{message}");
}
