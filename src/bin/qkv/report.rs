//! Output helpers shared by the commands: times, progress lines, the tolerance and the check.

use qkv_wgpu::{FusedWeights, QkvReport, Tolerance};
use std::io::IsTerminal;
use std::time::Duration;

/// Milliseconds.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Median, min and max of `values` (non-empty).
pub fn spread(mut values: Vec<f64>) -> (f64, f64, f64) {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    let median = if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    };
    (median, values[0], values[n - 1])
}

/// Progress on stderr, only when a person is watching it.
pub fn progress(msg: &str) {
    if std::io::stderr().is_terminal() {
        eprintln!("... {msg}");
    }
}

/// Parses --atol / --rtol: a finite number >= 0, refused before any work starts.
pub fn parse_tolerance(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!("must be a finite number >= 0, got {s}")),
    }
}

/// `--atol` and `--rtol`, shared by the commands that check results.
#[derive(clap::Args, Debug, Clone, Copy)]
pub struct ToleranceArgs {
    /// Absolute tolerance [default: 1e-5 · sqrt(d_model) · max|x| · max|w|]
    #[arg(long, allow_negative_numbers = true, value_parser = parse_tolerance)]
    pub atol: Option<f64>,
    /// Relative tolerance [default: 1e-4]
    #[arg(long, allow_negative_numbers = true, value_parser = parse_tolerance)]
    pub rtol: Option<f64>,
}

/// The tolerance for these inputs, with the user's --atol / --rtol taking precedence.
pub fn tolerance(
    d_model: u32,
    x: &[f32],
    weights: &FusedWeights,
    args: ToleranceArgs,
) -> Tolerance {
    // --atol and --rtol were checked when parsed (`parse_tolerance`).
    let default = Tolerance::for_inputs(d_model, x, weights);
    Tolerance {
        atol: args.atol.unwrap_or(default.atol),
        rtol: args.rtol.unwrap_or(default.rtol),
    }
}

/// The check line that states the condition and its numbers.
pub fn print_condition(tol: &Tolerance) {
    println!(
        "check     |gpu - ref| <= atol + rtol·|ref|, atol {:.3e}, rtol {:.1e}",
        tol.atol, tol.rtol
    );
}

/// Q, K and V reports, then PASS or FAIL.
pub fn print_checks(report: &QkvReport) {
    for part in report.parts() {
        println!("  {part}");
    }
    println!("  {}", if report.pass() { "PASS" } else { "FAIL" });
}

/// A progress bar over the tokens of a long run (hidden when stderr is not a terminal).
pub fn token_bar(tokens: u32, chunks: u32, show: bool) -> indicatif::ProgressBar {
    if !show || chunks < 2 {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(tokens as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:30} {pos}/{len} tokens, {per_sec}, {elapsed} elapsed, ~{eta} left",
        )
        .expect("valid template"),
    );
    bar
}
