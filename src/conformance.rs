//! The checks a kernel passes before it is timed (`qkv try`, for a user's kernel): the
//! worked example, exactly; then ragged shapes past its tile, with and without a bias, with
//! grouped K/V heads and in the head layout, in every storage type it reads. Each run fills
//! Q, K and V with NaN first (the projector always does), and every element is checked
//! against the f64 reference of the inputs as the GPU read them, to the kernel's tolerance.
//! A failing case says where its wrong elements lie: the first few, and how many fall in
//! each output tile of the fused [tokens, q_width + 2·kv_width] result.

use crate::context::GpuContext;
use crate::element::ElementType;
use crate::error::{Error, Result};
use crate::host::ElementVec;
use crate::kernels::KernelSpec;
use crate::layout::{HeadSplit, OutputLayout};
use crate::measure::{tolerance, weights_read};
use crate::plan::{ChunkOptions, ChunkPlan};
use crate::projector::{GuardDamage, Projector};
use crate::reference::reference;
use crate::shape::QkvShape;
use crate::validate::{QkvReport, ToleranceOverrides};
use crate::weights::{random_weights, random_x_rows, FusedWeights, Projection};

/// One check: a shape, its layout and storage type.
#[derive(Debug, Clone)]
pub struct Case {
    /// What it checks, in words.
    pub name: String,
    /// The projection.
    pub shape: QkvShape,
    /// The head split, for the head layout.
    pub heads: Option<HeadSplit>,
    /// The storage type.
    pub element: ElementType,
    /// The worked example: x = (2, 3), W = [[1, 10], [0, -1]] for Q, K and V, each exactly
    /// (2, 17).
    pub worked: bool,
    /// W split into column blocks, each its own dispatch with `col0` > 0 but for the first
    /// (the binding limit lowered for this case so that the plan splits it, as a device too
    /// small for W would).
    pub split_w: bool,
}

/// 32-bit words after each of Q, K and V that every case checks were left as they were
/// (the runtime's bounds checks keep a kernel's writes within its binding, which holds
/// them; see [`Projector::from_plan_guarded`]).
pub const GUARD_WORDS: u32 = 1024;

/// An element outside its bound.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Mismatch {
    /// "Q", "K" or "V".
    pub part: &'static str,
    /// Token row.
    pub row: u32,
    /// Column within the part.
    pub col: u32,
    /// What the GPU wrote (NaN where it wrote nothing).
    pub got: f32,
    /// The reference.
    pub want: f64,
    /// The largest error the tolerance allows there.
    pub bound: f64,
}

/// Where one of Q, K, V's wrong elements lie in a case: which token rows and which columns
/// (of the part, in token order) hold at least one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartWrong {
    /// "Q", "K" or "V".
    pub part: &'static str,
    /// Wrong elements, of `tokens` x `width`.
    pub wrong: u64,
    /// Its rows (the case's tokens) and columns.
    pub tokens: u32,
    /// Its columns.
    pub width: u32,
    /// Rows holding a wrong element, ascending.
    pub rows: Vec<u32>,
    /// Columns holding a wrong element, ascending.
    pub cols: Vec<u32>,
}

/// Wrong elements counted by output tile, over the fused result [tokens, n_out] split into
/// the kernel's tiles (`TILE_COLS` x `TILE_ROWS`).
#[derive(Debug, Clone, PartialEq)]
pub struct TileMap {
    /// Columns x rows of one tile.
    pub tile: (u32, u32),
    /// Tiles across the fused columns, and down the tokens.
    pub grid: (u32, u32),
    /// Wrong elements in each tile, row-major over the grid.
    pub wrong: Vec<u32>,
    /// Elements in each tile (the last row and column of tiles may be partial).
    pub size: Vec<u32>,
    /// Where K's and V's columns start in the fused result.
    pub k_start: u32,
    /// V's first fused column.
    pub v_start: u32,
}

/// A case's outcome.
#[derive(Debug, Clone)]
pub struct CaseResult {
    /// The case.
    pub case: Case,
    /// The check of every element.
    pub report: QkvReport,
    /// Whether it passed (the worked example: every element exact) and wrote nothing past
    /// the end of Q, K or V.
    pub pass: bool,
    /// The first wrong elements of each of Q, K and V (row by row), at most 3 of each.
    pub first: Vec<Mismatch>,
    /// Where each of Q, K and V's wrong elements lie (the parts with any).
    pub wrong: Vec<PartWrong>,
    /// The outputs written past their end (their guard words changed).
    pub past_end: Vec<GuardDamage>,
    /// Where the wrong elements lie; None when it passed.
    pub map: Option<TileMap>,
}

/// A case's shape in 64 bits, checked against u32 and against what one dispatch over one
/// binding on a device with `limits` holds (every case runs as one chunk, so that nothing
/// a kernel writes past an output's end lies outside its guard words): an error naming the
/// tile, the size and the limit.
fn fitted(
    (tile, limits): ((u32, u32), &wgpu::Limits),
    element: ElementType,
    (t, d, q, kv): (u64, u64, u64, u64),
    bias: bool,
) -> Result<QkvShape> {
    let too_big = |what: String, limit: String| {
        Error::Input(format!(
            "a tile of {} x {} (TILE_COLS x TILE_ROWS) makes the checks' shapes too large: \
             {what}, past {limit}; the checks run shapes past the tile in both directions, \
             so the tile must be smaller",
            tile.0, tile.1
        ))
    };
    let n_out = q + 2 * kv;
    let u32_max = u32::MAX as u64;
    for (name, v) in [
        ("tokens", t),
        ("output columns", n_out),
        ("elements of Q", t * q),
        ("elements of K", t * kv),
        ("elements of X", t * d),
        ("elements of W", d * n_out),
    ] {
        if v > u32_max {
            return Err(too_big(format!("{v} {name}"), format!("{u32_max} (u32)")));
        }
    }
    let binding = limits
        .max_storage_buffer_binding_size
        .min(limits.max_buffer_size);
    let bytes = element.buffer_bytes(t * q.max(kv).max(d)) + GUARD_WORDS as u64 * 4 + 16;
    if bytes > binding {
        return Err(too_big(
            format!("{bytes} bytes of one output or X"),
            format!("{binding} (max_storage_buffer_binding_size)"),
        ));
    }
    let groups = limits.max_compute_workgroups_per_dimension as u64;
    for (n, per, name) in [(n_out, tile.0, "columns"), (t, tile.1, "tokens")] {
        if n.div_ceil(per as u64) > groups {
            return Err(too_big(
                format!(
                    "{} workgroups across its {n} {name}",
                    n.div_ceil(per as u64)
                ),
                format!("{groups} (max_compute_workgroups_per_dimension)"),
            ));
        }
    }
    let (t, d, q, kv) = (t as u32, d as u32, q as u32, kv as u32);
    QkvShape::new(t, d, q, kv, bias)
}

/// The cases for a kernel of `tile` that reads `elements`, on a device with `limits`: the
/// worked example, then each shape in each type. The shapes go past the tile in both
/// directions and are multiples of nothing: a kernel that skips a partial tile, a last row,
/// a bias or a column block's offset fails one of them. A tile whose shapes do not fit u32
/// or the device is refused ([`Error::Input`]).
pub fn cases(
    tile: (u32, u32),
    elements: &[ElementType],
    limits: &wgpu::Limits,
) -> Result<Vec<Case>> {
    let (tc, tr) = (tile.0 as u64, tile.1 as u64);
    // Q in 8-wide heads, an even number covering two column tiles and a half; K/V in 2 heads
    // of 8.
    let q_heads = (2 * tc + tc / 2).div_ceil(16).max(1) * 2;
    let mut out = vec![Case {
        name: "worked example: x = (2, 3), W = [[1, 10], [0, -1]] -> (2, 17)".into(),
        shape: QkvShape::new(1, 2, 2, 2, false)?,
        heads: None,
        element: ElementType::F32,
        worked: true,
        split_w: false,
    }];
    for &element in elements {
        let shape = |dims, bias| fitted((tile, limits), element, dims, bias);
        let mut add = |name: String, shape: QkvShape, heads: Option<(u64, u64, u64)>| {
            let heads = heads
                .map(|(seq, h, kv)| HeadSplit::new(&shape, seq as u32, h as u32, kv as u32))
                .transpose()?;
            out.push(Case {
                name,
                shape,
                heads,
                element,
                worked: false,
                split_w: false,
            });
            Ok::<(), Error>(())
        };
        add(
            "one token, with bias".into(),
            shape((1, 3, 8, 8), true)?,
            None,
        )?;
        let rows = 2 * tr + 3;
        let wide = q_heads * 8;
        add(
            format!("{rows} tokens (2 tiles + 3), no bias"),
            shape((rows, 37, wide, wide), false)?,
            None,
        )?;
        add(
            format!("{rows} tokens, with bias"),
            shape((rows, 37, wide, wide), true)?,
            None,
        )?;
        add(
            format!("grouped K/V ({q_heads} query heads, 2 K/V heads), with bias"),
            shape((rows + 2, 45, wide, 16), true)?,
            None,
        )?;
        let seq = tr + 5;
        add(
            format!("head layout [batch 3, heads, seq {seq}, 8], grouped K/V"),
            shape((3 * seq, 45, wide, 16), true)?,
            Some((seq, q_heads, 2)),
        )?;
        // W wider than a binding that holds X and Q, K, V of all the tokens (n_out past
        // them, d_model past a third of them), and than 4 columns a texel of a texture side
        // that holds the tokens and W's rows of d_model rounded up to 32 (see `case_plan`).
        let t = tr + 3;
        let q = wide.max(4 * (t + 5).div_ceil(32).max(t.div_ceil(32)) * 32 + 8);
        out.push(Case {
            name: format!("{t} tokens, W in column blocks (col0 > 0), grouped K/V, with bias"),
            shape: shape((t, t + 5, q, 16), true)?,
            heads: None,
            element,
            worked: false,
            split_w: true,
        });
    }
    Ok(out)
}

/// The worked example's weights: W = [[1, 10], [0, -1]] for each of Q, K and V.
fn worked_weights() -> FusedWeights {
    let w = [1.0f32, 10.0, 0.0, -1.0];
    let p = Projection {
        w: &w,
        width: 2,
        bias: None,
    };
    FusedWeights::fuse(2, p, p, p).expect("the worked example fuses")
}

/// An output in `layout` back in token order [tokens, width].
fn to_tokens(data: &[f32], layout: OutputLayout, width: u32, heads: u32) -> Vec<f32> {
    let mut out = vec![0.0; data.len()];
    for (i, &v) in data.iter().enumerate() {
        let (row, col) = layout.token_position(i, width, heads);
        out[row * width as usize + col] = v;
    }
    out
}

/// The plan of `case` for `spec`: one chunk of all its tokens; for a case that splits W, on
/// limits whose binding size holds X and each output of that chunk but not W, so that W
/// runs in column blocks.
fn case_plan(ctx: &GpuContext, spec: &KernelSpec, case: &Case) -> Result<ChunkPlan> {
    let s = case.shape;
    let layout = case.heads.map_or(OutputLayout::Tokens, OutputLayout::Heads);
    let mut limits = ctx.limits();
    if case.split_w {
        let widest = s.q_width.max(s.kv_width) as u64;
        let x_row = spec.x_stride(s.d_model) as u64 * spec.types.x.size();
        let out_row = widest * spec.types.out.size();
        let bytes = (s.tokens as u64 * out_row.max(x_row)).div_ceil(16);
        limits.max_storage_buffer_binding_size = bytes * 16;
        // A kernel reading W as a texture has its blocks bounded by the texture's side
        // instead (4 columns a texel): the least that holds X's and W's rows and the tokens.
        let w_rows = s.d_model.div_ceil(32) * 32;
        limits.max_texture_dimension_2d = w_rows.max(s.tokens);
    }
    let opts = ChunkOptions {
        chunk_tokens: Some(s.tokens),
        streaming: false,
        ..ChunkOptions::default()
    };
    let plan = ChunkPlan::new(&limits, &s, spec, layout, &opts)?;
    if case.split_w && plan.col_blocks.len() < 2 {
        return Err(Error::Input(format!(
            "the check '{}' did not split W into column blocks (tile {:?}): a fault of the \
             harness, please report it",
            case.name, spec.tile
        )));
    }
    Ok(plan)
}

/// Every element of Q, K, V (in token order) against the reference: the first wrong ones,
/// where the wrong ones lie, and the tile map.
fn find_wrong(
    case: &Case,
    tile: (u32, u32),
    (q, k, v): (&[f32], &[f32], &[f32]),
    r: &crate::reference::Reference,
    tol: crate::validate::Tolerance,
) -> (Vec<Mismatch>, Vec<PartWrong>, TileMap) {
    let s = case.shape;
    let parts = [
        ("Q", q, &r.q, &r.q_mag, s.q_width, 0),
        ("K", k, &r.k, &r.k_mag, s.kv_width, s.q_width),
        ("V", v, &r.v, &r.v_mag, s.kv_width, s.q_width + s.kv_width),
    ];
    let exact = |got: f32, want: f64| !case.worked || got as f64 == want;
    let (tc, tr) = tile;
    let grid = (s.n_out().div_ceil(tc), s.tokens.div_ceil(tr));
    let mut map = TileMap {
        tile,
        grid,
        wrong: vec![0; (grid.0 * grid.1) as usize],
        size: vec![0; (grid.0 * grid.1) as usize],
        k_start: s.q_width,
        v_start: s.q_width + s.kv_width,
    };
    let (mut first, mut wrong) = (Vec::new(), Vec::new());
    for (part, got, want, mag, width, col0) in parts {
        let mut shown = 0;
        let mut pw = PartWrong {
            part,
            wrong: 0,
            tokens: s.tokens,
            width,
            rows: Vec::new(),
            cols: Vec::new(),
        };
        let mut cols = vec![false; width as usize];
        for (i, (&g, (&w, &m))) in got.iter().zip(want.iter().zip(mag.iter())).enumerate() {
            let (row, col) = ((i / width as usize) as u32, (i % width as usize) as u32);
            let t = ((row / tr) * grid.0 + (col0 + col) / tc) as usize;
            map.size[t] += 1;
            if tol.accepts(g, w, m) && exact(g, w) {
                continue;
            }
            pw.wrong += 1;
            cols[col as usize] = true;
            if pw.rows.last() != Some(&row) {
                pw.rows.push(row);
            }
            map.wrong[t] += 1;
            if shown < 3 {
                shown += 1;
                let bound = tol.bound(w, m);
                first.push(Mismatch {
                    part,
                    row,
                    col,
                    got: g,
                    want: w,
                    bound,
                });
            }
        }
        if pw.wrong > 0 {
            pw.cols = (0..width).filter(|&c| cols[c as usize]).collect();
            wrong.push(pw);
        }
    }
    (first, wrong, map)
}

/// Runs `case` with `spec` (made for the case's element type) on `seed`'s inputs, as one
/// chunk, Q, K and V each followed by [`GUARD_WORDS`] that must come back untouched.
pub async fn run_case(
    ctx: &GpuContext,
    spec: &KernelSpec,
    case: &Case,
    seed: u64,
) -> Result<CaseResult> {
    let s = case.shape;
    let weights = if case.worked {
        worked_weights()
    } else {
        random_weights(&s, seed)
    };
    let mut x = vec![0f32; s.x_len()];
    if case.worked {
        x.copy_from_slice(&[2.0, 3.0]);
    } else {
        random_x_rows(s.d_model, seed.wrapping_add(1), 0..s.tokens, &mut x);
    }
    let plan = case_plan(ctx, spec, case)?;
    let layout = plan.layout;
    let mut projector = Projector::from_plan_guarded(ctx, spec.clone(), plan, GUARD_WORDS)?;
    projector.set_weights(&weights)?;
    let out = projector.run_async(&x).await?;
    let past_end = projector.guard_damage_async().await?;
    let (mut q, mut k, mut v) = (out.q, out.k, out.v);
    if let Some(h) = &case.heads {
        q = to_tokens(&q, layout, s.q_width, h.heads);
        k = to_tokens(&k, layout, s.kv_width, h.kv_heads);
        v = to_tokens(&v, layout, s.kv_width, h.kv_heads);
    }
    let (dtype, types) = (spec.dtype(), spec.types);
    let x_read = ElementVec::from_f32(types.x, &ElementVec::from_f32(dtype, &x).as_ref().to_f32());
    let w_read = weights_read(&weights, dtype, types.w);
    let r = reference(&s, &x_read.as_ref().to_f32(), &w_read);
    let tol = tolerance(s.d_model, spec, &ToleranceOverrides::default());
    let report = QkvReport::new((&q, &k, &v), &r, s.q_width, s.kv_width, tol);
    let (first, wrong, map) = find_wrong(case, spec.tile, (&q, &k, &v), &r, tol);
    let pass = report.pass() && wrong.is_empty() && past_end.is_empty();
    Ok(CaseResult {
        case: case.clone(),
        report,
        pass,
        first,
        wrong,
        past_end,
        map: (!pass).then_some(map),
    })
}

#[cfg(not(target_arch = "wasm32"))]
/// [`run_case`], blocking.
pub fn run_case_blocking(
    ctx: &GpuContext,
    spec: &KernelSpec,
    case: &Case,
    seed: u64,
) -> Result<CaseResult> {
    pollster::block_on(run_case(ctx, spec, case, seed))
}

impl TileMap {
    /// The map as text, one character per tile: `.` every element right, `#` every one
    /// wrong, `x` some; a `|` where K's and V's columns start (within the tile holding that
    /// column); one line per row of tiles.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let starts = [self.k_start / self.tile.0, self.v_start / self.tile.0];
        for r in 0..self.grid.1 {
            out.push_str("    ");
            for c in 0..self.grid.0 {
                if starts.contains(&c) && c > 0 {
                    out.push('|');
                }
                let t = (r * self.grid.0 + c) as usize;
                out.push(match (self.wrong[t], self.size[t]) {
                    (0, _) => '.',
                    (w, n) if w == n => '#',
                    _ => 'x',
                });
            }
            out.push('\n');
        }
        out
    }

    /// Tiles with a wrong element, of all.
    pub fn wrong_tiles(&self) -> (usize, usize) {
        (
            self.wrong.iter().filter(|&&w| w > 0).count(),
            self.wrong.len(),
        )
    }
}

/// The comment every map [`maps_svg`] draws carries near its start, by which `qkv try
/// --map` knows a file it may replace as its own earlier map.
pub const MAP_MARKER: &str = "<!-- qkv try: map of wrong elements by output tile -->";

/// The maps of failing cases as one SVG picture, each under its title: a cell per output
/// tile, green where every element is right, orange where some are wrong, red where all
/// are, with lines where K's and V's columns begin; tokens down, fused columns across.
pub fn maps_svg(maps: &[(String, &TileMap)]) -> String {
    use std::fmt::Write;
    const WIDTH: u32 = 960;
    let cell = |m: &TileMap| (WIDTH / m.grid.0.max(1)).clamp(2, 24);
    let height: u32 = maps
        .iter()
        .map(|(_, m)| 40 + m.grid.1 * cell(m))
        .sum::<u32>()
        + 30;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{height}\" \
         font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" \
         fill=\"white\"/>\n{MAP_MARKER}\n",
        WIDTH + 20
    );
    let mut y = 10;
    for (title, m) in maps {
        let c = cell(m);
        let (bad, all) = m.wrong_tiles();
        let _ = writeln!(
            svg,
            "<text x=\"10\" y=\"{}\">{}: wrong elements in {bad} of {all} tiles of {} x {}</text>",
            y + 14,
            escape(title),
            m.tile.0,
            m.tile.1
        );
        y += 24;
        for r in 0..m.grid.1 {
            for col in 0..m.grid.0 {
                let t = (r * m.grid.0 + col) as usize;
                let fill = match (m.wrong[t], m.size[t]) {
                    (0, _) => "#4caf50",
                    (w, n) if w == n => "#d32f2f",
                    _ => "#ff9800",
                };
                let _ = writeln!(
                    svg,
                    "<rect x=\"{}\" y=\"{}\" width=\"{c}\" height=\"{c}\" fill=\"{fill}\" \
                     stroke=\"white\" stroke-width=\"{}\"><title>tile ({col}, {r}): {} of {} \
                     wrong</title></rect>",
                    10 + col * c,
                    y + r * c,
                    if c > 4 { 1 } else { 0 },
                    m.wrong[t],
                    m.size[t]
                );
            }
        }
        for (start, name) in [(m.k_start, "K"), (m.v_start, "V")] {
            let x = 10.0 + start as f64 / m.tile.0 as f64 * c as f64;
            let _ = writeln!(
                svg,
                "<line x1=\"{x:.1}\" y1=\"{}\" x2=\"{x:.1}\" y2=\"{}\" stroke=\"black\" \
                 stroke-width=\"2\"/><text x=\"{:.1}\" y=\"{}\">{name}</text>",
                y - 2,
                y + m.grid.1 * c + 2,
                x + 3.0,
                y - 4
            );
        }
        y += m.grid.1 * c + 16;
    }
    let _ = writeln!(
        svg,
        "<text x=\"10\" y=\"{}\">green: every element right; orange: some wrong; red: all \
         wrong (tokens down, fused Q | K | V columns across)</text>\n</svg>",
        y + 10
    );
    svg
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
