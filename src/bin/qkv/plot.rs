//! The SVG plot of `qkv bench`: GFLOP/s against tokens, one line per kernel configuration
//! and one for the CPU baseline of each shape.

use plotters::prelude::*;
use qkv_wgpu::Error;
use std::collections::BTreeMap;
use std::path::Path;

/// One measured point.
pub struct Point {
    /// The line it belongs to, e.g. "gpt2 subgroup(wg=64)".
    pub series: String,
    /// Tokens (x, log scale).
    pub tokens: u32,
    /// GFLOP/s (y, log scale).
    pub gflops: f64,
}

/// Draws `points` into `path` as SVG, replacing an existing file only with `replace`.
pub fn plot(path: &Path, points: &[Point], adapter: &str, replace: bool) -> Result<(), Error> {
    let mut svg = String::new();
    draw(&mut svg, path, points, adapter)?;
    qkv_wgpu::io::commit::write_file(path, svg.as_bytes(), replace)
}

/// Draws `points` as SVG into `svg`; `path` names it in errors.
fn draw(svg: &mut String, path: &Path, points: &[Point], adapter: &str) -> Result<(), Error> {
    let bad = |e: String| Error::Input(format!("drawing {}: {e}", path.display()));
    let finite: Vec<&Point> = points
        .iter()
        .filter(|p| p.gflops.is_finite() && p.gflops > 0.0)
        .collect();
    if finite.is_empty() {
        return Err(bad("no measured point to draw".into()));
    }
    let (tmin, tmax) = finite.iter().fold((u32::MAX, 0), |(a, b), p| {
        (a.min(p.tokens), b.max(p.tokens))
    });
    let (gmin, gmax) = finite.iter().fold((f64::MAX, 0f64), |(a, b), p| {
        (a.min(p.gflops), b.max(p.gflops))
    });
    let mut series: BTreeMap<&str, Vec<(f64, f64)>> = BTreeMap::new();
    for p in &finite {
        series
            .entry(p.series.as_str())
            .or_default()
            .push((p.tokens as f64, p.gflops));
    }

    let root = SVGBackend::with_string(svg, (960, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| bad(e.to_string()))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("Fused Q/K/V projection on {adapter}"),
            ("sans-serif", 20),
        )
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(
            ((tmin as f64) * 0.8..(tmax as f64) * 1.25).log_scale(),
            (gmin * 0.5..gmax * 2.0).log_scale(),
        )
        .map_err(|e| bad(e.to_string()))?;
    chart
        .configure_mesh()
        .x_desc("tokens")
        .y_desc("GFLOP/s")
        .x_label_formatter(&|t| format!("{t:.0}"))
        .y_label_formatter(&|g| format!("{g}"))
        .draw()
        .map_err(|e| bad(e.to_string()))?;
    for (i, (name, mut pts)) in series.into_iter().enumerate() {
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
            .map_err(|e| bad(e.to_string()))?
            .label(name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart
            .draw_series(pts.into_iter().map(|p| Circle::new(p, 3, color.filled())))
            .map_err(|e| bad(e.to_string()))?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::MiddleRight)
        .draw()
        .map_err(|e| bad(e.to_string()))?;
    root.present().map_err(|e| bad(e.to_string()))?;
    Ok(())
}
