//! Output helpers shared by the commands: times, progress lines and bars, the check's
//! condition and its report.

use crate::out::outln;
use qkv_wgpu::{QkvReport, Tolerance};
use std::io::IsTerminal;
use std::time::Duration;

/// Milliseconds.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Progress on stderr, only when a person is watching it.
pub fn progress(msg: &str) {
    if std::io::stderr().is_terminal() {
        eprintln!("... {msg}");
    }
}

/// The check line that states the condition and its numbers.
pub fn print_condition(tol: &Tolerance) {
    outln!(
        "check     |gpu - ref| <= atol + rtol·|ref| + ttol·Σ|x·w|, atol {:.1e}, rtol {:.1e}, ttol \
         {:.3e} (Σ|x·w|: each element's sum of |terms| and |bias|, in f64)",
        tol.atol,
        tol.rtol,
        tol.terms
    );
}

/// Q, K and V reports, then PASS or FAIL.
pub fn print_checks(report: &QkvReport) {
    for part in report.parts() {
        outln!("  {part}");
    }
    outln!("  {}", if report.pass() { "PASS" } else { "FAIL" });
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
