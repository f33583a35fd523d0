//! Output helpers shared by the commands: times, progress lines and bars, the check's
//! condition and its report.

use crate::stdout::outln;
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
    outln!("check     {}", qkv_wgpu::records::condition_line(tol));
}

/// Q, K and V reports, then PASS or FAIL.
pub fn print_checks(report: &QkvReport) {
    for line in qkv_wgpu::records::check_lines(report) {
        outln!("  {line}");
    }
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

/// Where a run's time went, stage by stage (see [`qkv_wgpu::RunTimings`]): each stage's busy
/// time and its share of the wall time, and the busiest, which bounds a streamed run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Stages {
    /// Chunk buffer sets in flight (1 without streaming).
    pub buffer_sets: u32,
    /// Whether the stages ran on threads of their own (the native pipeline).
    pub threaded: bool,
    pub stages: Vec<Stage>,
    /// The busiest stage's name.
    pub bound_by: &'static str,
}

/// One stage's busy time.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Stage {
    pub name: &'static str,
    pub busy_ms: f64,
    /// Busy time over the run's wall time.
    pub share_of_wall: f64,
}

/// The run of median wall time among `runs` (non-empty).
pub fn median_run(runs: &[qkv_wgpu::RunTimings]) -> &qkv_wgpu::RunTimings {
    let mut order: Vec<&qkv_wgpu::RunTimings> = runs.iter().collect();
    order.sort_by_key(|t| t.wall);
    order[order.len() / 2]
}

impl Stages {
    pub fn of(t: &qkv_wgpu::RunTimings) -> Self {
        let wall = ms(t.wall).max(1e-9);
        Self {
            buffer_sets: t.buffer_sets,
            threaded: t.threaded,
            stages: t
                .stages()
                .into_iter()
                .map(|(name, busy)| Stage {
                    name,
                    busy_ms: ms(busy),
                    share_of_wall: ms(busy) / wall,
                })
                .collect(),
            bound_by: t.bound().0,
        }
    }

    /// "produce X 210.0 ms (2%) | upload 12.1 ms (0%) | GPU 95874.8 ms (99%) | consume Q, K, V
    /// 355.5 ms (0%); bound by the GPU; 3 buffer sets, a thread per stage".
    pub fn line(&self) -> String {
        let parts: Vec<String> = self
            .stages
            .iter()
            .map(|s| {
                format!(
                    "{} {:.1} ms ({:.0}%)",
                    s.name,
                    s.busy_ms,
                    100.0 * s.share_of_wall
                )
            })
            .collect();
        let how = match (self.buffer_sets, self.threaded) {
            (1, _) => "one after another".to_string(),
            (n, true) => format!("{n} buffer sets, a thread per stage"),
            (n, false) => format!("{n} buffer sets on one thread"),
        };
        format!(
            "{}; bound by {}; {how}",
            parts.join(" | "),
            if self.buffer_sets > 1 {
                self.bound_by
            } else {
                "their sum"
            }
        )
    }
}
