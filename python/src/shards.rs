//! `Projector.project_shard`: one shard of a corpus projected into `OUT/<name>/` exactly as
//! `qkv project --input 'dir/*.npy' --out OUT` writes it (the library's `io::project` and
//! `io::shards`): X streamed from its `.npy` file, the check sampled over every chunk, the
//! outputs committed all or nothing with the shard's manifest; a shard whose manifest still
//! vouches for its outputs is skipped, and outputs it cannot vouch for are left as they are
//! unless `force`. A failure is the shard's: reported in the dict, never raised, so that a
//! corpus goes on past it (`shard_paths` lists a corpus as `--input` does).

use crate::errors::py_err;
use crate::projector::{watch, Projector};
use crate::settings::XDims;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use qkv_wgpu::io::npy::NpyRows;
use qkv_wgpu::io::outputs::OutFormat;
use qkv_wgpu::io::project::{self as file, FileJob, JobWeights, Seal};
use qkv_wgpu::io::shards::{self, FileDigest, Inputs, Manifest, ShardState};
use qkv_wgpu::measure::{parse_check_rows, CheckRows};
use qkv_wgpu::{Error, QkvReport};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Instant;

/// The files a corpus is, as `qkv project --input` takes them: `.npy` files, directories of
/// them, glob patterns, list files (`.txt`, `.list`: a path a line); each a file, none
/// twice, no two with one name.
#[pyfunction]
pub fn shard_paths(py: Python<'_>, inputs: Vec<PathBuf>) -> PyResult<Vec<PathBuf>> {
    if inputs.is_empty() {
        return Err(PyValueError::new_err("no inputs given"));
    }
    match py.detach(|| shards::expand(&inputs)).map_err(py_err)? {
        Inputs::One(p) => Ok(vec![p]),
        Inputs::Shards(list) => Ok(list),
    }
}

/// How `project_shard` writes a shard, from its keyword arguments.
pub struct ShardOptions {
    pub format: OutFormat,
    /// Checked against the f64 reference (every element is scanned for NaN and
    /// infinities either way).
    pub check: bool,
    /// The rows checked; None: the CLI's default for the shard's shape.
    pub rows: Option<CheckRows>,
    pub force: bool,
    pub allow_nonfinite: bool,
}

impl ShardOptions {
    /// `out_format` ("npy", "safetensors"), `check_rows` (None: the CLI's default; "all";
    /// a number of rows) and `check` (False: unchecked).
    pub fn parse(
        out_format: &str,
        check: bool,
        check_rows: Option<&Bound<'_, PyAny>>,
        (force, allow_nonfinite): (bool, bool),
    ) -> PyResult<Self> {
        let format = out_format
            .parse::<OutFormat>()
            .map_err(PyValueError::new_err)?;
        let rows = match check_rows {
            None => None,
            Some(r) if !check => {
                return Err(PyValueError::new_err(format!(
                    "check_rows={r} with check=False: an unchecked run checks no rows"
                )))
            }
            Some(r) => {
                let text = match r.extract::<u64>() {
                    Ok(n) => n.to_string(),
                    Err(_) => r.extract::<String>().map_err(|_| {
                        PyValueError::new_err("check_rows: give 'all' or a number of rows")
                    })?,
                };
                Some(parse_check_rows(&text).map_err(PyValueError::new_err)?)
            }
        };
        Ok(Self {
            format,
            check,
            rows,
            force,
            allow_nonfinite,
        })
    }
}

/// What became of a shard, as a dict: `name`, `input`, `dir`, `tokens`, `state`
/// ("projected", "skipped", "failed"), `error`, `pass`, the check's errors, times.
#[derive(Default)]
pub struct ShardReport {
    pub name: String,
    pub input: String,
    pub dir: String,
    pub tokens: u32,
    pub state: &'static str,
    pub error: Option<String>,
    pub pass: Option<bool>,
    pub report: Option<QkvReport>,
    pub checked_rows: usize,
    pub kernel: Option<String>,
    pub kernel_ms: Option<f64>,
    pub gpu_total_ms: Option<f64>,
    pub seconds: f64,
    pub outputs: Vec<String>,
}

impl ShardReport {
    pub fn to_dict<'py>(&self, py: Python<'py>, adapter: &str) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("name", &self.name)?;
        d.set_item("input", &self.input)?;
        d.set_item("dir", &self.dir)?;
        d.set_item("tokens", self.tokens)?;
        d.set_item("state", self.state)?;
        d.set_item("error", &self.error)?;
        d.set_item("pass", self.pass)?;
        let r = self.report.as_ref();
        d.set_item("max_abs_err", r.map(QkvReport::max_abs_err))?;
        d.set_item("max_rel_err", r.map(QkvReport::max_rel_err))?;
        d.set_item("checked_rows", self.checked_rows)?;
        d.set_item("kernel", &self.kernel)?;
        d.set_item("kernel_ms", self.kernel_ms)?;
        d.set_item("gpu_total_ms", self.gpu_total_ms)?;
        d.set_item("seconds", self.seconds)?;
        d.set_item("outputs", &self.outputs)?;
        d.set_item("adapter", adapter)?;
        Ok(d)
    }
}

/// `Projector.project_shard` (the package makes it the method, with its docstring): one
/// shard of a corpus projected into `out/<name>/` with its manifest, a failure reported in
/// the dict it returns.
#[pyfunction]
#[pyo3(signature = (projector, input, out, *, out_format="npy", check=true, check_rows=None, force=false, allow_nonfinite=false))]
#[allow(clippy::too_many_arguments)]
pub fn project_shard<'py>(
    py: Python<'py>,
    projector: PyRef<'py, Projector>,
    input: std::path::PathBuf,
    out: std::path::PathBuf,
    out_format: &str,
    check: bool,
    check_rows: Option<&Bound<'py, PyAny>>,
    force: bool,
    allow_nonfinite: bool,
) -> PyResult<Bound<'py, PyDict>> {
    let opts = ShardOptions::parse(out_format, check, check_rows, (force, allow_nonfinite))?;
    let cancel = AtomicBool::new(false);
    let mut signal = None;
    let p: &Projector = &projector;
    let result = py.detach(|| {
        let mut progress = |_| watch(&cancel, &mut signal);
        shard(p, &input, &out, &opts, (&cancel, &mut progress))
    });
    if let Some(e) = signal {
        return Err(e);
    }
    let report = result.map_err(py_err)?;
    let summary = &p.context().summary;
    let adapter = format!("{} ({})", summary.name, summary.backend);
    report.to_dict(py, &adapter)
}

/// The shard of `input` into `out`/<name>/ by `p`: its report, a failure included (only an
/// interruption, `cancel` set, is an error). `progress` hears the tokens done after each
/// chunk.
fn shard(
    p: &Projector,
    input: &Path,
    out: &Path,
    opts: &ShardOptions,
    (cancel, progress): (&AtomicBool, &mut dyn FnMut(u32)),
) -> Result<ShardReport, Error> {
    let started = Instant::now();
    let mut r = ShardReport {
        input: input.display().to_string(),
        ..Default::default()
    };
    let run = project(p, input, out, opts, (cancel, progress), &mut r);
    r.seconds = started.elapsed().as_secs_f64();
    match run {
        Err(e @ Error::Interrupted { .. }) => return Err(e),
        Err(e) => {
            r.state = "failed";
            r.error = Some(crate::errors::named(&e.to_string()));
        }
        Ok(()) => {}
    }
    Ok(r)
}

/// Where the shard of `input` stands in `dir`: None where its manifest still vouches for
/// its outputs (skipped), else the seal its manifest will carry; refused where outputs are
/// there that this run cannot vouch for, unless `force`.
fn seal(
    p: &Projector,
    input: &Path,
    (dir, name): (&Path, &str),
    opts: &ShardOptions,
) -> Result<Option<Seal>, Error> {
    let job = p.job_key(opts.format)?;
    match Manifest::state(dir, input, &job, opts.format.files())? {
        ShardState::Done => return Ok(None),
        ShardState::Stale(why) if !opts.force => {
            return Err(Error::Input(format!(
                "{name}: left as it is, since this run cannot vouch for its outputs ({why}); \
                 pass `force` to project it again"
            )))
        }
        _ => {}
    }
    Ok(Some(Seal {
        job,
        input: input.to_path_buf(),
        // Taken before X is read: a change while it is read makes the manifest stale.
        digest: FileDigest::of(input)?,
    }))
}

/// The work of [`shard`], filling `r` as it goes.
fn project(
    p: &Projector,
    input: &Path,
    out: &Path,
    opts: &ShardOptions,
    (cancel, progress): (&AtomicBool, &mut dyn FnMut(u32)),
    r: &mut ShardReport,
) -> Result<(), Error> {
    r.name = shards::shard_name(input)?;
    let dir = out.join(&r.name);
    r.dir = dir.display().to_string();
    let mut x = NpyRows::open(input)?;
    let dims = x.x_dims()?;
    r.tokens = dims.tokens;
    let (w, settings) = (p.weights(), p.settings());
    file::file_shape(input, dims, w)?;
    let Some(seal) = seal(p, input, (&dir, &r.name), opts)? else {
        r.state = "skipped";
        return Ok(());
    };
    let inputs = [("the input", input)];
    let out_dir = qkv_wgpu::io::commit::OutputDir::open(&dir)?;
    file::check_outputs(&out_dir, opts.format, true, &inputs, opts.force)?;
    let xdims = XDims {
        tokens: dims.tokens,
        batch_seq: dims.batch_seq,
    };
    p.with_projector(
        xdims,
        qkv_wgpu::epilogue::Positions::Offset(0),
        |projector| {
            let shape = *projector.shape();
            let weights_path = p.source().unwrap_or(Path::new("arrays given in Python"));
            let sources = [("source_input", input), ("source_weights", weights_path)];
            let (outputs, _) = file::create_outputs(
                &out_dir,
                opts.format,
                projector,
                dims.batch_seq,
                (sources, &[]),
            )?;
            let job = FileJob {
                check: opts
                    .check
                    .then(|| opts.rows.unwrap_or(CheckRows::default_for(&shape))),
                tolerance: Default::default(),
                allow_nonfinite: opts.allow_nonfinite,
                force: opts.force,
                cancel: Some(cancel),
            };
            let mut run = file::stream(projector, &mut x, outputs, &job, progress)?;
            let weights = JobWeights {
                w,
                original: None,
                nonfinite: &[],
            };
            let checked = file::check(projector, &mut run, &job, weights);
            let (outcome, written) = file::settle(
                &mut run,
                &checked,
                (weights, settings.element),
                &job,
                (&out_dir, Some(&seal)),
            )?;
            r.kernel = Some(projector.config().to_string());
            r.kernel_ms = Some(run.timings.kernel.as_secs_f64() * 1e3);
            r.gpu_total_ms = Some(run.timings.total().as_secs_f64() * 1e3);
            r.checked_rows = run.kept.len();
            r.pass = outcome.pass;
            r.report = checked.report;
            r.outputs = written;
            match outcome.why_not_written() {
                None => r.state = "projected",
                Some((_, why)) => {
                    r.state = "failed";
                    r.error = Some(crate::errors::named(&why));
                }
            }
            Ok(())
        },
    )
}
