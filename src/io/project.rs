//! X from a `.npy` file projected into output files, as `qkv project` does it for one file
//! and for each shard of a corpus (and the Python module's `project_shard`): the output
//! directory, opened and locked, checked ([`check_outputs`]); X streamed chunk by chunk from the file
//! through a [`Projector`] into partial output files ([`stream`]), the rows the check picks
//! kept and every row scanned for NaN and infinities; the kept rows checked against the
//! f64 reference of the inputs as the GPU read them ([`check`]); and the outputs put in
//! place only where all is well, with a shard's manifest where one is sealed ([`settle`]),
//! else removed.

use super::commit::OutputDir;
use super::npy::{NpyRows, XDims};
use super::outputs::{metadata, OutFormat, PartialOutputs};
use super::shards::{FileDigest, Manifest, MANIFEST};
use super::NonFinite;
use crate::element::ElementType;
use crate::error::Error;
use crate::measure::{self, keep_source_rows, weights_read, CheckRows, KeptRows};
use crate::projector::{Projector, RunTimings};
use crate::shape::QkvShape;
use crate::validate::{QkvReport, Tolerance, ToleranceOverrides};
use crate::weights::FusedWeights;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How a file is projected into its outputs.
#[derive(Debug, Clone, Default)]
pub struct FileJob<'a> {
    /// The rows checked against the f64 reference; None: unchecked (every element is still
    /// scanned for NaN and infinities).
    pub check: Option<CheckRows>,
    /// The caller's tolerances, over the kernel's own.
    pub tolerance: ToleranceOverrides,
    /// Write the outputs even where X or the weights hold NaN or Inf.
    pub allow_nonfinite: bool,
    /// Replace existing outputs.
    pub force: bool,
    /// Set from another thread to stop the run before its next chunk is read
    /// ([`Error::Interrupted`]).
    pub cancel: Option<&'a AtomicBool>,
}

/// The projection of X of `dims` (from `input`) through `w`: refused where X's columns are
/// not the weights' d_model.
pub fn file_shape(input: &Path, dims: XDims, w: &FusedWeights) -> Result<QkvShape, Error> {
    if dims.d_model != w.d_model {
        return Err(Error::Input(format!(
            "{}: X has {} columns, the weights' d_model is {}",
            input.display(),
            dims.d_model,
            w.d_model
        )));
    }
    QkvShape::new(
        dims.tokens,
        dims.d_model,
        w.q_width,
        w.kv_width,
        w.bias.is_some(),
    )
}

/// Checks the output directory (opened and locked by [`OutputDir::open`], which cleaned up
/// what an interrupted run left and named it in its `notes`, for the caller to show first)
/// for `format`, before any GPU work: `inputs` (a name for errors, and a path) are never
/// outputs, and existing outputs (a shard's manifest among them where `shard`) need `force`.
pub fn check_outputs(
    out_dir: &OutputDir,
    format: OutFormat,
    shard: bool,
    inputs: &[(&str, &Path)],
    force: bool,
) -> Result<(), Error> {
    let mut names = format.files().to_vec();
    if shard {
        names.push(MANIFEST);
    }
    // First what is at the outputs' names (a FIFO there must be refused before anything
    // opens it), then whether any is an input.
    out_dir.check_free(&names, force)?;
    out_dir.check_not_inputs(&names, inputs)
}

/// The partial outputs in `out_dir` of `projector`'s run over X of `batch_seq` (None: 2-D X),
/// in `format`, a safetensors file's metadata naming `sources` (key and path) and the
/// `tensors` read; and Q's and K's (and V's) dimensions in the projector's layout.
pub fn create_outputs(
    out_dir: &OutputDir,
    format: OutFormat,
    projector: &Projector<'_>,
    batch_seq: Option<(u32, u32)>,
    (sources, tensors): ([(&str, &Path); 2], &[&str]),
) -> Result<(PartialOutputs, [Vec<u64>; 2]), Error> {
    let (shape, layout, element) = (projector.shape(), projector.layout(), projector.dtype());
    let dims = [
        layout.dims(shape, false, batch_seq),
        layout.dims(shape, true, batch_seq),
    ];
    let meta = metadata(sources, tensors, element, projector.config(), layout);
    let [q, kv] = &dims;
    let stored = format.stored(element);
    let outputs = PartialOutputs::create(out_dir, format, stored, [q, kv, kv], &meta)?;
    Ok((outputs, dims))
}

/// A streamed projection: its times, the rows kept for the check (and X as given for them),
/// NaN or Inf found in X, and the partial outputs written so far (taken when committed).
pub struct Streamed {
    pub timings: RunTimings,
    pub kept: KeptRows,
    source_x: Vec<f32>,
    pub x_nonfinite: Option<NonFinite>,
    /// Time spent writing the outputs.
    pub write_time: Duration,
    outputs: Option<PartialOutputs>,
}

/// Streams X from the file through the projector into the partial outputs, keeping the rows
/// `job.check` picks (or scanning every row for NaN and infinities, unchecked); `progress`
/// hears the tokens done after each chunk. X holding NaN or Inf stops the run at the chunk
/// that holds it, unless `job.allow_nonfinite`.
pub fn stream(
    projector: &mut Projector<'_>,
    x: &mut NpyRows,
    mut outputs: PartialOutputs,
    job: &FileJob<'_>,
    mut progress: impl FnMut(u32),
) -> Result<Streamed, Error> {
    let (shape, layout) = (*projector.shape(), projector.layout());
    let (mut kept, mut source_x) = (KeptRows::default(), Vec::new());
    let mut x_nonfinite: Option<NonFinite> = None;
    let mut write_time = Duration::ZERO;
    let (d, x_dims) = (shape.d_model as usize, x.shape.clone());
    let (check, allow_nonfinite) = (job.check, job.allow_nonfinite);
    let timings = projector.stream(
        |rows, dst| {
            if job.cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
                return Err(Error::Interrupted {
                    done: rows.start,
                    tokens: shape.tokens,
                });
            }
            // What every value read goes through: the NaN/Inf scan, the kept rows.
            let inspect = |r0: usize, values: &[f32]| -> Result<(), Error> {
                let start = (rows.start as usize + r0) * d;
                let found = NonFinite::scan_at("X", values, start, &x_dims);
                x_nonfinite = NonFinite::merge(x_nonfinite.take(), found);
                // Refused at the chunk that holds it, not after the whole run.
                if let Some(nf) = x_nonfinite.as_ref().filter(|_| !allow_nonfinite) {
                    return Err(Error::Input(format!(
                        "X holds NaN or Inf ({nf}); the run stopped there and nothing was \
                         written. Pass `allow_nonfinite` to project it anyway"
                    )));
                }
                if let Some(check) = check {
                    let chunk = (rows.len(), shape.tokens as usize);
                    keep_source_rows(&mut source_x, chunk, check, r0, values, d);
                }
                Ok(())
            };
            x.fill_rows((rows.start, rows.len(), d), dst, inspect)
        },
        |c| {
            let start = Instant::now();
            outputs.write([c.q, c.k, c.v])?;
            write_time += start.elapsed();
            match check {
                Some(check) => kept.take(&c, &shape, layout, check),
                // Unchecked, every element is still scanned for NaN and infinities.
                None => kept.scan(&c, &shape, layout),
            }
            Ok(())
        },
        &mut progress,
    )?;
    Ok(Streamed {
        timings,
        kept,
        source_x,
        x_nonfinite,
        write_time,
        outputs: Some(outputs),
    })
}

/// The check of the kept rows: its report, the precision cost of a half type, the cost of
/// quantizing the weights, the reference's time, and the tolerance.
pub struct Checked {
    pub report: Option<QkvReport>,
    pub cost: Option<QkvReport>,
    /// Against the weights before they were quantized on load.
    pub quantization: Option<QkvReport>,
    pub cpu_ms: Option<f64>,
    pub tol: Tolerance,
}

/// The weights a file is projected through, as [`check`] and [`settle`] need them.
#[derive(Clone, Copy)]
pub struct JobWeights<'a> {
    /// The weights the projector holds.
    pub w: &'a FusedWeights,
    /// The weights before a quantization on load, whose cost is measured too.
    pub original: Option<&'a FusedWeights>,
    /// NaN or Inf they hold (allowed only with `allow_nonfinite`).
    pub nonfinite: &'a [NonFinite],
}

/// Checks the kept rows against the f64 reference of the inputs as the GPU read them
/// ([`KeptRows::check`]), where `job.check` asks. Inputs that hold NaN or Inf (allowed)
/// carry them into the outputs: they are then no overflow.
pub fn check(
    projector: &Projector<'_>,
    run: &mut Streamed,
    job: &FileJob<'_>,
    weights: JobWeights<'_>,
) -> Checked {
    if run.x_nonfinite.is_some() || !weights.nonfinite.is_empty() {
        run.kept.inputs_not_finite();
    }
    let (w, original) = (weights.w, weights.original);
    let (shape, spec) = (projector.shape(), projector.spec());
    let d_model = shape.d_model;
    let tol = measure::tolerance(d_model, spec, &job.tolerance);
    if job.check.is_none() {
        return Checked {
            report: None,
            cost: None,
            quantization: None,
            cpu_ms: None,
            tol,
        };
    }
    let f32_tol = job
        .tolerance
        .over(Tolerance::for_f32_accumulation(d_model).for_output(ElementType::F32));
    let kept = &mut run.kept;
    kept.set_source_x(std::mem::take(&mut run.source_x), d_model);
    if let Some((ep, heads)) = projector.epilogue() {
        kept.set_epilogue(ep, heads, spec.types.out);
    }
    let (dtype, types) = (spec.dtype(), spec.types);
    let read = weights_read(w, dtype, types.w);
    let (report, took) = kept.check(shape, &read, (dtype, types.x), tol);
    let cost = types
        .reads_half()
        .then(|| kept.precision_cost(shape, w, f32_tol));
    let quantization = original.map(|o| kept.precision_cost(shape, o, f32_tol));
    Checked {
        report: Some(report),
        cost,
        quantization,
        cpu_ms: Some(took.as_secs_f64() * 1e3),
        tol,
    }
}

/// How a run ends.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The run's storage type.
    pub element: ElementType,
    /// NaN or Inf found in X and in the weights.
    pub nonfinite: Vec<NonFinite>,
    /// NaN or infinities in the outputs of finite inputs.
    pub overflow: Option<String>,
    /// The check's verdict (None unchecked).
    pub pass: Option<bool>,
    /// Inputs held NaN or Inf and that was not allowed.
    pub blocked_by_nonfinite: bool,
}

impl Outcome {
    /// Why the outputs were not written, if they were not, and whether that is the check's
    /// verdict (an overflow or a mismatch) rather than the inputs' (NaN or Inf).
    pub fn why_not_written(&self) -> Option<(bool, String)> {
        if let Some(o) = &self.overflow {
            return Some((
                true,
                format!(
                    "the projection overflowed {}'s range (the inputs are finite): {o}; \
                     nothing was written",
                    self.element
                ),
            ));
        }
        if self.pass == Some(false) {
            return Some((
                true,
                "the GPU result does not match the reference; nothing was written".into(),
            ));
        }
        self.blocked_by_nonfinite.then(|| {
            let found: Vec<String> = self.nonfinite.iter().map(|n| n.to_string()).collect();
            (
                false,
                format!(
                    "the inputs hold NaN or Inf ({}); nothing was written. Pass \
                     `allow_nonfinite` to write the outputs anyway",
                    found.join("; ")
                ),
            )
        })
    }
}

/// A shard's manifest, but for its outputs: the job and the input's digest, taken before
/// the input was read.
#[derive(Debug, Clone)]
pub struct Seal {
    pub job: String,
    pub input: PathBuf,
    pub digest: FileDigest,
}

/// Decides the run, after [`check`]: the outputs are put in place only where the check
/// passed, nothing overflowed and the inputs were finite (or allowed not to be); else the
/// partial files are removed. A shard's manifest (where
/// `seal`), with each output's size and checksum, is put in place with them. Returns the
/// outcome and the files put in place.
pub fn settle(
    run: &mut Streamed,
    checked: &Checked,
    (weights, element): (JobWeights<'_>, ElementType),
    job: &FileJob<'_>,
    (out_dir, seal): (&OutputDir, Option<&Seal>),
) -> Result<(Outcome, Vec<String>), Error> {
    let mut nonfinite: Vec<NonFinite> = run.x_nonfinite.iter().cloned().collect();
    nonfinite.extend(weights.nonfinite.iter().cloned());
    // With finite inputs, a NaN or infinity in the outputs is an overflow (the report of the
    // checked rows counts it too): the run fails and nothing is written.
    let overflow = run.kept.non_finite_outputs();
    let pass = match (&checked.report, &overflow) {
        (_, Some(_)) => Some(false),
        (r, None) => r.as_ref().map(QkvReport::pass),
    };
    let blocked_by_nonfinite = !nonfinite.is_empty() && !job.allow_nonfinite;
    let manifest = |named: &[(&str, &Path)]| -> Result<_, Error> {
        let Some(seal) = seal else {
            return Ok(None);
        };
        let mut m = Manifest::new(&seal.input, seal.digest.clone(), &seal.job);
        for (name, path) in named {
            m.outputs.insert(name.to_string(), FileDigest::of(path)?);
        }
        Ok(Some((MANIFEST, m.to_bytes())))
    };
    let written = match run.outputs.take() {
        Some(o) if pass != Some(false) && !blocked_by_nonfinite => {
            o.commit_with(out_dir, job.force, manifest)?
        }
        _ => Vec::new(),
    };
    let outcome = Outcome {
        element,
        nonfinite,
        overflow,
        pass,
        blocked_by_nonfinite,
    };
    Ok((outcome, written))
}
