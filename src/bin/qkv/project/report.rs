//! What `qkv project` reports: the result (its JSON) and the text a person reads.

use super::ProjectArgs;
use crate::stdout::outln;
use crate::text::{ms, print_checks, print_condition, Stages};
use qkv_wgpu::io::checkpoint::LoadedWeights;
use qkv_wgpu::io::commit::OutputDir;
use qkv_wgpu::io::npy::{NpyRows, XDims};
use qkv_wgpu::io::project::{Checked, Streamed};
use qkv_wgpu::io::NonFinite;
use qkv_wgpu::{ElementType, GpuContext, HeadSplit, OutputLayout, Projector, QkvReport, QkvShape};
use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct ProjectResult {
    pub adapter: String,
    pub backend: String,
    pub device_type: String,
    pub kernel: String,
    pub config_reason: String,
    pub input: String,
    pub input_dtype: &'static str,
    /// The storage type on the GPU, and of the files written.
    pub dtype: ElementType,
    pub out_format: &'static str,
    pub out_dtype: ElementType,
    pub weights: String,
    pub family: Option<&'static str>,
    pub weight_layout: String,
    pub weight_layout_reason: String,
    /// How Wq, Wk, Wv are held on the GPU: a type, or three (Q, K, V) where they differ.
    pub weight_type: String,
    /// Bytes of W on the GPU (a block format's blocks as stored).
    pub w_bytes: u64,
    /// GGUF: the order of Q's and K's rows: "file" (llama.cpp's RoPE order, for a
    /// Llama-family file), "original" (the model's); null for other checkpoints.
    pub row_order: Option<&'static str>,
    pub tensors: Vec<(String, String, Vec<usize>)>,
    pub tokens: u32,
    pub batch: Option<u32>,
    pub seq: Option<u32>,
    pub d_model: u32,
    pub q_width: u32,
    pub kv_width: u32,
    pub bias: bool,
    pub head_layout: &'static str,
    pub heads: Option<u32>,
    pub kv_heads: Option<u32>,
    pub q_shape: Vec<u64>,
    pub kv_shape: Vec<u64>,
    pub gpu_kernel_ms: f64,
    /// --rope and --qk-norm as applied (null without them).
    pub epilogue: Option<String>,
    /// Of gpu_kernel_ms, the epilogue's pass (GPU timestamps; null without an epilogue or
    /// timestamps, or where it is fused into the kernel).
    pub epilogue_ms: Option<f64>,
    /// Whether the kernel applies the epilogue in its store, with no pass of its own (null
    /// without an epilogue).
    pub epilogue_fused: Option<bool>,
    /// Where the epilogue runs, and why not fused where it is a pass (null without one).
    pub epilogue_plan: Option<String>,
    /// Q's and K's ttol, with the epilogue's part (null without one: then ttol is theirs).
    pub qk_ttol: Option<f64>,
    pub gpu_total_ms: f64,
    pub chunks: u32,
    pub chunk_tokens: u32,
    pub chunk_reason: String,
    pub streamed: bool,
    pub read_ms: f64,
    pub write_ms: f64,
    /// Each stage's busy time (reading X is the producer's, writing Q, K, V the consumer's),
    /// and the busiest.
    pub stages: Stages,
    pub tokens_per_s: f64,
    pub cpu_ms: Option<f64>,
    pub gflops: f64,
    pub checked: bool,
    pub checked_rows: usize,
    pub max_abs_err: Option<f64>,
    pub max_rel_err: Option<f64>,
    pub rel_l2_err: Option<f64>,
    /// Half types: the errors against the reference of the unrounded inputs (X as read, the
    /// weights as stored); null for f32 or without a check.
    pub precision_max_abs_err: Option<f64>,
    pub precision_max_rel_err: Option<f64>,
    pub precision_rel_l2_err: Option<f64>,
    /// With --weight-type: the errors against the reference of X as given and the weights
    /// before quantization; null otherwise.
    pub quantization_max_abs_err: Option<f64>,
    pub quantization_max_rel_err: Option<f64>,
    pub quantization_rel_l2_err: Option<f64>,
    pub atol: f64,
    pub rtol: f64,
    /// The part of the bound relative to each element's Σ|x·w| + |b| (probabilistic).
    pub ttol: f64,
    /// The deterministic bound's part: elements between the two pass flagged.
    pub sound_ttol: f64,
    /// Elements past the probabilistic bound, within the deterministic one (errors that did
    /// not cancel); null without a check.
    pub flagged: Option<usize>,
    /// Which bound decided the verdict; null without a check.
    pub decided_by: Option<&'static str>,
    /// With finite inputs: where the outputs hold NaN or infinities (an overflow), if
    /// anywhere; the run then fails and writes nothing.
    pub overflow: Option<String>,
    pub pass: Option<bool>,
    pub nonfinite: Vec<String>,
    /// What opening the output directory cleaned up after an interrupted run.
    pub notes: Vec<String>,
    pub written: bool,
    pub outputs: Vec<String>,
}

pub fn print_text(r: &ProjectResult, report: Option<&QkvReport>, tol: &qkv_wgpu::Tolerance) {
    outln!("adapter   {} ({}, {})", r.adapter, r.backend, r.device_type);
    let dims = match (r.batch, r.seq) {
        (Some(b), Some(s)) => format!("[{b}, {s}, {}]", r.d_model),
        _ => format!("[{}, {}]", r.tokens, r.d_model),
    };
    outln!("input     {} ({}, {dims})", r.input, r.input_dtype);
    outln!(
        "dtype     {} on the GPU (accumulated in f32); written as {} {}{}",
        r.dtype,
        r.out_dtype,
        r.out_format,
        if r.dtype != r.out_dtype {
            " (widened without loss: NumPy has no bf16; --out-format safetensors keeps bf16)"
        } else {
            ""
        }
    );
    outln!(
        "weights   {}: {}{} stored {} (by {})",
        r.weights,
        r.family
            .map(|f| format!("{f} family, "))
            .unwrap_or_default(),
        r.tensors
            .iter()
            .map(|(n, d, s)| format!("{n} {d} {s:?}"))
            .collect::<Vec<_>>()
            .join(", "),
        r.weight_layout,
        r.weight_layout_reason
    );
    outln!(
        "          on the GPU as {} ({:.2} MB){}",
        r.weight_type,
        r.w_bytes as f64 / 1e6,
        match r.row_order {
            Some("file") => {
                "; Q's and K's rows in the file's order (llama.cpp's, for its RoPE): \
                 --original-order restores the model's"
            }
            Some(_) => "; rows in the model's order",
            None => "",
        }
    );
    outln!(
        "shape     d_model {} -> q {} + k {} + v {}{}; Q {:?}, K and V {:?} ({} layout)",
        r.d_model,
        r.q_width,
        r.kv_width,
        r.kv_width,
        if r.bias { " + bias" } else { "" },
        r.q_shape,
        r.kv_shape,
        r.head_layout
    );
    outln!(
        "kernel    {}: {:.3} ms ({:.2} GFLOP/s); end-to-end {:.3} ms, {:.0} tokens/s\n          \
         chosen: {}",
        r.kernel,
        r.gpu_kernel_ms,
        r.gflops,
        r.gpu_total_ms,
        r.tokens_per_s,
        r.config_reason
    );
    print_epilogue(r);
    outln!(
        "chunks    {} of up to {} tokens ({}){}; reading X {:.1} ms, writing Q, K, V {:.1} ms",
        r.chunks,
        r.chunk_tokens,
        r.chunk_reason,
        if r.streamed { ", streamed" } else { "" },
        r.read_ms,
        r.write_ms
    );
    outln!("stages    {}", r.stages.line());
    print_check(r, report, tol);
    if r.written {
        outln!("wrote     {}", r.outputs.join(", "));
    }
}

/// The epilogue's lines of the text report: what, where it runs, its cost, its tolerance.
fn print_epilogue(r: &ProjectResult) {
    let Some(e) = &r.epilogue else {
        return;
    };
    let cost = match r.epilogue_ms {
        Some(e_ms) => {
            let alone = r.gpu_kernel_ms - e_ms;
            format!(
                "\n          its pass {e_ms:.3} ms of the kernel's {:.3} ms: {:+.1}% over the \
                 projection alone ({alone:.3} ms)",
                r.gpu_kernel_ms,
                100.0 * e_ms / alone
            )
        }
        None => String::new(),
    };
    let tol = match r.qk_ttol {
        Some(t) => format!("\n          Q and K checked with ttol {t:.3e}: the norm's and RoPE's own rounding added"),
        None => String::new(),
    };
    let how = r.epilogue_plan.as_deref().unwrap_or_default();
    let fused = if r.epilogue_fused == Some(true) {
        "\n          its cost is inside the kernel's time: compare a run without it, or one \
         with --epilogue-pass"
    } else {
        ""
    };
    outln!("epilogue  {e}\n          on the GPU, {how}{fused}{cost}{tol}");
}

/// The check's lines: the tolerance, the reference's time, each part's verdict, and the
/// precision and quantization costs.
fn print_check(r: &ProjectResult, report: Option<&QkvReport>, tol: &qkv_wgpu::Tolerance) {
    match (report, r.cpu_ms) {
        (Some(report), Some(cpu)) => {
            print_condition(tol);
            let rows = if r.checked_rows == r.tokens as usize {
                "every row".to_string()
            } else {
                format!(
                    "{} rows spread over every chunk (--check-rows all checks every row)",
                    r.checked_rows
                )
            };
            outln!("  CPU reference (f64) over {rows}: {cpu:.1} ms");
            print_checks(report);
            let precision = format!(
                "precision: storing in {} moved Q, K, V from the reference of the inputs as given",
                r.dtype
            );
            let errs = (
                r.precision_max_abs_err,
                r.precision_max_rel_err,
                r.precision_rel_l2_err,
            );
            cost_line(&precision, errs);
            let quantization = format!(
                "quantization: W as {} moved Q, K, V from the reference of the weights before",
                r.weight_type
            );
            let errs = (
                r.quantization_max_abs_err,
                r.quantization_max_rel_err,
                r.quantization_rel_l2_err,
            );
            cost_line(&quantization, errs);
        }
        _ => outln!("check     skipped (--no-check)"),
    }
}

/// A cost's line (`what` moved the outputs by these errors), where it was measured.
fn cost_line(what: &str, errs: (Option<f64>, Option<f64>, Option<f64>)) {
    if let (Some(abs), Some(rel), Some(l2)) = errs {
        outln!(
            "  {what} by max abs {abs:.3e}, max rel {rel:.3e}, rel L2 {l2:.3e} (a cost, not a \
             check)"
        );
    }
}

/// What a run of `qkv project` was: its arguments, the adapter, X, the weights, the shape
/// and layout, the projector and why its kernel.
pub struct Facts<'a> {
    pub args: &'a ProjectArgs,
    pub ctx: &'a GpuContext,
    /// X's file.
    pub input: &'a std::path::Path,
    pub x: &'a NpyRows,
    pub dims: XDims,
    pub loaded: &'a LoadedWeights,
    pub shape: &'a QkvShape,
    pub split: Option<HeadSplit>,
    /// Q's dimensions, then K's and V's.
    pub out_shapes: &'a [Vec<u64>; 2],
    pub projector: &'a Projector<'a>,
    pub config_reason: String,
    /// What a GGUF file told beyond its weights.
    pub gguf: Option<&'a super::load::GgufFacts>,
}

impl Facts<'_> {
    /// The result of the run: what `--json` prints and the text says.
    pub fn result(
        &self,
        run: &Streamed,
        checked: &Checked,
        (overflow, pass): (Option<String>, Option<bool>),
        nonfinite: &[NonFinite],
        out_dir: &OutputDir,
        outputs: Vec<String>,
    ) -> ProjectResult {
        let (args, s, shape, t) = (self.args, &self.ctx.summary, self.shape, &run.timings);
        let (report, cost) = (checked.report.as_ref(), checked.cost.as_ref());
        let (p, element) = (&self.projector, self.projector.dtype());
        ProjectResult {
            adapter: s.name.clone(),
            backend: s.backend.clone(),
            device_type: s.device_type.clone(),
            kernel: self.projector.config().to_string(),
            config_reason: self.config_reason.clone(),
            input: self.input.display().to_string(),
            input_dtype: self.x.dtype,
            dtype: element,
            out_format: args.out_format.name(),
            out_dtype: args.out_format.stored(element),
            weights: args.weights.display().to_string(),
            family: self.loaded.family.map(|f| f.name()),
            weight_layout: self.loaded.layout.to_string(),
            weight_layout_reason: crate::args::flags(&self.loaded.layout_reason),
            weight_type: match self.loaded.weights.w_formats() {
                Some(f) => qkv_wgpu::quant::WeightType::parts_name(f),
                None => self.loaded.weights.w.element().name().to_string(),
            },
            w_bytes: self.loaded.weights.w_bytes(),
            row_order: self
                .gguf
                .map(|g| if g.rows_reordered { "file" } else { "original" }),
            tensors: self.loaded.tensors.clone(),
            tokens: shape.tokens,
            batch: self.dims.batch_seq.map(|b| b.0),
            seq: self.dims.batch_seq.map(|b| b.1),
            d_model: shape.d_model,
            q_width: shape.q_width,
            kv_width: shape.kv_width,
            bias: shape.bias,
            head_layout: match self.projector.layout() {
                OutputLayout::Tokens => "tokens",
                OutputLayout::Heads(_) => "heads",
            },
            heads: self.split.map(|h| h.heads),
            kv_heads: self.split.map(|h| h.kv_heads),
            q_shape: self.out_shapes[0].clone(),
            kv_shape: self.out_shapes[1].clone(),
            gpu_kernel_ms: ms(t.kernel),
            epilogue: self.projector.epilogue().map(|(e, _)| e.to_string()),
            epilogue_ms: (self.projector.epilogue().is_some()
                && !self.projector.epilogue_fused()
                && t.kernel_timer == qkv_wgpu::KernelTimer::GpuTimestamp)
                .then(|| ms(t.epilogue)),
            epilogue_fused: Some(p.epilogue_fused()).filter(|_| p.epilogue().is_some()),
            epilogue_plan: p.epilogue_plan(),
            qk_ttol: report
                .filter(|_| self.projector.epilogue().is_some())
                .map(|r| r.q.tolerance.terms),
            gpu_total_ms: ms(t.total()),
            chunks: self.projector.plan().chunks(),
            chunk_tokens: self.projector.plan().chunk_tokens,
            chunk_reason: crate::args::flags(&self.projector.plan().chunk_reason),
            streamed: self.projector.streaming(),
            read_ms: ms(t.input),
            write_ms: ms(run.write_time),
            stages: Stages::of(t),
            tokens_per_s: shape.tokens as f64 / t.total().as_secs_f64(),
            cpu_ms: checked.cpu_ms,
            gflops: shape.gflops(t.kernel.as_secs_f64()),
            checked: report.is_some(),
            checked_rows: run.kept.len(),
            max_abs_err: report.map(QkvReport::max_abs_err),
            max_rel_err: report.map(QkvReport::max_rel_err),
            rel_l2_err: report.map(QkvReport::rel_l2_err),
            precision_max_abs_err: cost.map(QkvReport::max_abs_err),
            precision_max_rel_err: cost.map(QkvReport::max_rel_err),
            precision_rel_l2_err: cost.map(QkvReport::rel_l2_err),
            quantization_max_abs_err: checked.quantization.as_ref().map(QkvReport::max_abs_err),
            quantization_max_rel_err: checked.quantization.as_ref().map(QkvReport::max_rel_err),
            quantization_rel_l2_err: checked.quantization.as_ref().map(QkvReport::rel_l2_err),
            atol: checked.tol.atol,
            rtol: checked.tol.rtol,
            ttol: checked.tol.terms,
            sound_ttol: checked.tol.sound_terms,
            flagged: report.map(QkvReport::flagged),
            decided_by: report.map(QkvReport::decided_by),
            overflow,
            pass,
            nonfinite: nonfinite.iter().map(|n| n.to_string()).collect(),
            notes: out_dir.notes.clone(),
            written: !outputs.is_empty(),
            outputs,
        }
    }
}
