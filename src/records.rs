//! The records a measurement is reported as, shared by every front end: the adapter, the
//! shape, the plan, the check and the share of the peak, each serializing to the keys the
//! CLI's JSON has always had (flattened into a command's object with `#[serde(flatten)]`)
//! and each saying itself in one line of text.

use crate::adapter::AdapterSummary;
use crate::conformance::{CaseResult, PartWrong};
use crate::measure::Measurement;
use crate::peak::Share;
use crate::plan::ChunkPlan;
use crate::shape::QkvShape;
use serde::Serialize;

/// The adapter a measurement ran on.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AdapterRecord {
    /// Its name.
    pub adapter: String,
    /// Vulkan, Metal, DX12, GL or WebGPU.
    pub backend: String,
    /// Discrete, integrated, CPU...
    pub device_type: String,
}

impl AdapterRecord {
    /// The record of `summary`'s adapter.
    pub fn of(summary: &AdapterSummary) -> Self {
        Self {
            adapter: summary.name.clone(),
            backend: summary.backend.clone(),
            device_type: summary.device_type.clone(),
        }
    }

    /// "name (backend, device type)".
    pub fn line(&self) -> String {
        format!("{} ({}, {})", self.adapter, self.backend, self.device_type)
    }
}

/// The projection's shape.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ShapeRecord {
    /// Rows of X.
    pub tokens: u32,
    /// Columns of X.
    pub d_model: u32,
    /// Columns of Q.
    pub q_width: u32,
    /// Columns of K and of V.
    pub kv_width: u32,
    /// Whether each projection adds a bias.
    pub bias: bool,
}

impl ShapeRecord {
    /// The record of `shape`.
    pub fn of(shape: &QkvShape) -> Self {
        Self {
            tokens: shape.tokens,
            d_model: shape.d_model,
            q_width: shape.q_width,
            kv_width: shape.kv_width,
            bias: shape.bias,
        }
    }
}

/// How the batch was cut up.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlanRecord {
    /// Token chunks.
    pub chunks: u32,
    /// Tokens per chunk (the last may have fewer).
    pub chunk_tokens: u32,
    /// What set the chunk size.
    pub chunk_reason: String,
    /// W's column blocks.
    pub col_blocks: u32,
    /// Whether chunks were streamed (stages overlapping).
    pub streamed: bool,
}

impl PlanRecord {
    /// The record of `plan`, run streamed or not.
    pub fn of(plan: &ChunkPlan, streamed: bool) -> Self {
        Self {
            chunks: plan.chunks(),
            chunk_tokens: plan.chunk_tokens,
            chunk_reason: plan.chunk_reason.clone(),
            col_blocks: plan.col_blocks.len() as u32,
            streamed,
        }
    }
}

/// The check of a measurement: its errors against the f64 reference, the precision cost
/// of a half type, the tolerance, and the verdict.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckRecord {
    /// Largest |gpu - ref|.
    pub max_abs_err: f64,
    /// Largest |gpu - ref| / |ref|.
    pub max_rel_err: f64,
    /// ||gpu - ref|| / ||ref||.
    pub rel_l2_err: f64,
    /// Where X and W are read in a half type: the errors against the reference of the
    /// unrounded f32 inputs (the cost of storing in that type); null otherwise.
    pub precision_max_abs_err: Option<f64>,
    /// As above, relative.
    pub precision_max_rel_err: Option<f64>,
    /// As above, relative L2.
    pub precision_rel_l2_err: Option<f64>,
    /// Where W was quantized (`--weight-type`): the errors against the reference of X as
    /// given and the weights before quantization (the cost of the format); null otherwise.
    pub quantization_max_abs_err: Option<f64>,
    /// As above, relative.
    pub quantization_max_rel_err: Option<f64>,
    /// As above, relative L2.
    pub quantization_rel_l2_err: Option<f64>,
    /// The tolerance's absolute part.
    pub atol: f64,
    /// Its part relative to |ref|.
    pub rtol: f64,
    /// Its part relative to each element's Σ|x·w| + |b|: the probabilistic bound.
    pub ttol: f64,
    /// The deterministic bound's part relative to Σ|x·w| + |b| (no summation order errs
    /// past it): elements between the two pass flagged.
    pub sound_ttol: f64,
    /// Elements past the probabilistic bound but within the deterministic one: correct, but
    /// their rounding errors did not cancel.
    pub flagged: usize,
    /// The worst |gpu - ref| / Σ|x·w| among them (0 for none).
    pub worst_flagged: f64,
    /// Which bound decided: "probabilistic" (every element within it), "deterministic" (an
    /// element flagged or failed), or "non-finite" (only NaN or infinite outputs failed).
    pub decided_by: &'static str,
    /// Whether every checked element of every run passed.
    pub pass: bool,
}

impl CheckRecord {
    /// The record of `m`'s check.
    pub fn of(m: &Measurement) -> Self {
        let (r, cost, tol) = (&m.report, m.precision.as_ref(), m.tolerance);
        Self {
            max_abs_err: r.max_abs_err(),
            max_rel_err: r.max_rel_err(),
            rel_l2_err: r.rel_l2_err(),
            precision_max_abs_err: cost.map(|c| c.max_abs_err()),
            precision_max_rel_err: cost.map(|c| c.max_rel_err()),
            precision_rel_l2_err: cost.map(|c| c.rel_l2_err()),
            quantization_max_abs_err: m.quantization.as_ref().map(|c| c.max_abs_err()),
            quantization_max_rel_err: m.quantization.as_ref().map(|c| c.max_rel_err()),
            quantization_rel_l2_err: m.quantization.as_ref().map(|c| c.rel_l2_err()),
            atol: tol.atol,
            rtol: tol.rtol,
            ttol: tol.terms,
            sound_ttol: tol.sound_terms,
            flagged: r.flagged(),
            worst_flagged: r.worst_flagged(),
            decided_by: r.decided_by(),
            pass: r.pass(),
        }
    }
}

/// A kernel's figure against this adapter's measured peak (`qkv peak`): every field null
/// until a peak is cached, or where the kernel's arithmetic was not measured.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct PeakRecord {
    /// The kernel's GFLOP/s over the peak of its arithmetic.
    pub peak_share: Option<f64>,
    /// That peak, GFLOP/s.
    pub peak_gflops: Option<f64>,
    /// What that peak is: "f32 FMA" or a cooperative-matrix configuration.
    pub peak_of: Option<String>,
    /// The kernel's GFLOP/s over the roofline of this shape.
    pub roofline_share: Option<f64>,
    /// That roofline, GFLOP/s: the lower of the peak and bandwidth times flops per byte.
    pub roofline_gflops: Option<f64>,
    /// Whether the roofline is the memory bound.
    pub memory_bound: Option<bool>,
    /// Whether either share is past 100% ([`Share::impossible`]): the timing or the peak is
    /// wrong, and the shares are not figures to read.
    pub impossible: Option<bool>,
}

impl PeakRecord {
    /// The record of `share`, if any.
    pub fn of(share: Option<&Share>) -> Self {
        share.map_or_else(Self::default, |s| Self {
            peak_share: Some(s.peak_share),
            peak_gflops: Some(s.peak_gflops),
            peak_of: Some(s.peak_of.clone()),
            roofline_share: Some(s.roofline_share),
            roofline_gflops: Some(s.roofline_gflops),
            memory_bound: Some(s.memory_bound),
            impossible: Some(s.impossible),
        })
    }
}

/// The check's condition with its numbers: what the CLI and the page print after `check`.
pub fn condition_line(tol: &crate::validate::Tolerance) -> String {
    let sound = if tol.sound_terms > tol.terms {
        format!(
            "; past ttol but within {:.3e} (the deterministic bound, any summation order) \
             passes flagged",
            tol.sound_terms
        )
    } else {
        String::new()
    };
    format!(
        "|gpu - ref| <= atol + rtol·|ref| + ttol·Σ|x·w|, atol {:.1e}, rtol {:.1e}, ttol {:.3e} \
         (Σ|x·w|: each element's sum of |terms| and |bias|, in f64){sound}",
        tol.atol, tol.rtol, tol.terms
    )
}

/// The check's report: a line for each of Q, K and V, then the verdict: PASS, PASS with
/// the flagged elements counted, or FAIL, and which bound decided.
pub fn check_lines(report: &crate::validate::QkvReport) -> Vec<String> {
    let verdict = match (report.pass(), report.flagged()) {
        (false, _) => match report.decided_by() {
            "deterministic" => "FAIL (past the deterministic bound)".to_string(),
            _ => "FAIL (NaN or infinite outputs)".to_string(),
        },
        (true, 0) => "PASS".to_string(),
        (true, n) => format!(
            "PASS, flagged: {n} element(s) past the probabilistic bound, within the \
             deterministic one (worst {:.3e} of Σ|x·w|): errors did not cancel",
            report.worst_flagged()
        ),
    };
    report
        .parts()
        .iter()
        .map(|p| p.to_string())
        .chain([verdict])
        .collect()
}

impl PlanRecord {
    /// "4 of up to 30 tokens (why), W in 2 column blocks; streamed: stages overlap", or
    /// "...; one after another": what a run's chunks were.
    pub fn line(&self) -> String {
        format!(
            "{} of up to {} tokens ({}){}; {}",
            self.chunks,
            self.chunk_tokens,
            self.chunk_reason,
            if self.col_blocks > 1 {
                format!(", W in {} column blocks", self.col_blocks)
            } else {
                String::new()
            },
            if self.streamed {
                "streamed: stages overlap"
            } else {
                "one after another"
            }
        )
    }
}

/// The line `qkv try` and the page print for one check of a user's kernel as it finishes:
/// PASS or FAIL, the storage type, the shape and what it checks.
pub fn case_line(r: &CaseResult) -> String {
    let s = &r.case.shape;
    format!(
        "  {}  {:<4} {:>4} x {:>3} -> {:>3} + 2 x {:>3}  {}",
        if r.pass { "PASS" } else { "FAIL" },
        r.case.element.name(),
        s.tokens,
        s.d_model,
        s.q_width,
        s.kv_width,
        r.case.name
    )
}

/// A failed check in detail: its line, each of Q, K, V's summary, the outputs written past
/// their end, the first wrong elements and the map of output tiles
/// ([`crate::conformance`]). Nothing for a check that passed.
pub fn case_details(r: &CaseResult) -> Vec<String> {
    if r.pass {
        return Vec::new();
    }
    let mut out = vec![case_line(r)];
    // Each of Q, K, V's summary line (its mismatches follow, per part, below).
    for part in r.report.parts() {
        let text = part.to_string();
        out.push(format!(
            "        {}",
            text.lines().next().unwrap_or("").trim_start()
        ));
    }
    for g in &r.past_end {
        out.push(format!(
            "        {}: wrote past the end: {} of the words after it changed (the first {} \
             past the end)",
            g.part, g.words, g.first
        ));
    }
    for m in &r.first {
        out.push(format!(
            "        {}[{}, {}] = {}, want {:.6} (allowed error {:.3e})",
            m.part, m.row, m.col, m.got, m.want, m.bound
        ));
    }
    if let Some(map) = &r.map {
        let (bad, all) = map.wrong_tiles();
        out.push(format!(
            "        wrong elements in {bad} of {all} output tiles of {} x {} (tokens down, \
             fused Q|K|V columns across; '#' all wrong, 'x' some, '.' none):",
            map.tile.0, map.tile.1
        ));
        out.extend(map.render().lines().map(|l| format!("    {l}")));
    }
    out
}

/// "column 5", "columns 5, 9": a few numbers.
fn numbered(one: &str, many: &str, n: &[u32]) -> String {
    let list: Vec<String> = n.iter().map(|c| c.to_string()).collect();
    let word = if n.len() == 1 { one } else { many };
    format!("{word} {}", list.join(", "))
}

/// The pattern of one output's wrong elements over the checks where it has any, in words:
/// "Q column 5 wrong", "K: the last token row wrong", ...
fn pattern(part: &str, wrong: &[&PartWrong]) -> String {
    let mut cols: Vec<u32> = wrong.iter().flat_map(|w| w.cols.iter().copied()).collect();
    cols.sort_unstable();
    cols.dedup();
    if wrong
        .iter()
        .all(|w| w.wrong == w.tokens as u64 * w.width as u64)
    {
        format!("{part}: every element wrong")
    } else if cols.len() <= 3 {
        let every_row = wrong.iter().all(|w| w.rows.len() == w.tokens as usize);
        format!(
            "{part} {} wrong{}",
            numbered("column", "columns", &cols),
            if every_row {
                " (in every token row)"
            } else {
                ""
            }
        )
    } else if wrong.iter().all(|w| w.rows == [w.tokens - 1]) {
        format!("{part}: the last token row wrong")
    } else {
        let most = wrong
            .iter()
            .map(|w| (w.wrong, w.tokens as u64 * w.width as u64))
            .max_by(|a, b| (a.0 * b.1).cmp(&(b.0 * a.1)))
            .unwrap_or((0, 0));
        format!(
            "{part}: some elements wrong (at worst {} of {}, in {} of {} columns)",
            most.0,
            most.1,
            wrong.iter().map(|w| w.cols.len()).max().unwrap_or(0),
            wrong.iter().map(|w| w.width).max().unwrap_or(0)
        )
    }
}

/// What the failed checks of a user's kernel have in common, before their details: for each
/// of Q, K and V, in how many checks it is wrong and the pattern ("Q column 5 wrong in 16 of
/// 16 checks"), and in how many it was written past its end. Nothing when every check
/// passed.
pub fn failure_summary(results: &[CaseResult]) -> Vec<String> {
    let failed = results.iter().filter(|r| !r.pass).count();
    if failed == 0 {
        return Vec::new();
    }
    let n = results.len();
    let mut out = vec![format!("{failed} of {n} checks failed:")];
    let mut right = Vec::new();
    for part in ["Q", "K", "V"] {
        let wrong: Vec<&PartWrong> = results
            .iter()
            .flat_map(|r| r.wrong.iter().filter(|w| w.part == part))
            .collect();
        let past = results
            .iter()
            .filter(|r| r.past_end.iter().any(|g| g.part == part))
            .count();
        if !wrong.is_empty() {
            out.push(format!(
                "  {} in {} of {n} checks",
                pattern(part, &wrong),
                wrong.len()
            ));
        }
        if past > 0 {
            out.push(format!(
                "  {part}: wrote past the end (its guard words changed) in {past} of {n} checks"
            ));
        }
        if wrong.is_empty() && past == 0 {
            right.push(part);
        }
    }
    if !right.is_empty() {
        out.push(format!("  {}: right in every check", right.join(", ")));
    }
    out
}

/// Everything printed after the checks when some failed: [`failure_summary`], then each
/// failed check's [`case_details`].
pub fn failure_report(results: &[CaseResult]) -> Vec<String> {
    let mut out = failure_summary(results);
    if out.is_empty() {
        return out;
    }
    out.push("details of each failed check:".into());
    for r in results {
        out.extend(case_details(r));
    }
    out
}

/// The line that introduces a user's kernel: its tile, workgroup, types and W padding.
pub fn custom_kernel_line(k: &crate::kernels::CustomKernel) -> String {
    let types: Vec<&str> = k.elements.iter().map(|e| e.name()).collect();
    format!(
        "kernel {}: tile {} x {} (columns x tokens), {} invocations per workgroup, reads {}, \
         W rows padded to {}{}",
        k.label,
        k.tile.0,
        k.tile.1,
        k.invocations,
        types.join(", "),
        k.w_align,
        if k.binding == crate::binding::BindingKind::Textured {
            ", X and W as textures"
        } else {
            ""
        }
    )
}

/// What the checks of a user's kernel hold it to, in a line.
pub const CASES_LINE: &str = "check: Q, K, V filled with NaN first; every element against the \
                              f64 reference of the inputs as the GPU read them";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_says_its_chunks_blocks_and_streaming() {
        let mut p = PlanRecord {
            chunks: 4,
            chunk_tokens: 30,
            chunk_reason: "asked".into(),
            col_blocks: 1,
            streamed: true,
        };
        assert_eq!(
            p.line(),
            "4 of up to 30 tokens (asked); streamed: stages overlap"
        );
        (p.col_blocks, p.streamed) = (2, false);
        assert_eq!(
            p.line(),
            "4 of up to 30 tokens (asked), W in 2 column blocks; one after another"
        );
    }
}
