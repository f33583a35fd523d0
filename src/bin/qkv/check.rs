//! Checking streamed results against the f64 reference: which rows `--check-rows` picks in
//! each chunk, the rows kept as chunks stream by, checked once the run is over, and the run
//! of seeded random X that `run` and `bench` check this way. Shared by `run`, `project` and
//! `bench`.

use qkv_wgpu::{
    random_x_rows, random_x_rows_in, reference, ElementType, Elements, Error, OutputLayout,
    Projector, QkvReport, QkvShape, RunTimings,
};
use std::time::{Duration, Instant};

/// Which rows `--check-rows` validates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckRows {
    All,
    Sample(u32),
}

pub fn parse_check_rows(s: &str) -> Result<CheckRows, String> {
    match s.trim() {
        "all" => Ok(CheckRows::All),
        n => match n.parse::<u32>() {
            Ok(0) | Err(_) => Err(format!("'{s}': expected `all` or a number of rows >= 1")),
            Ok(n) => Ok(CheckRows::Sample(n)),
        },
    }
}

impl CheckRows {
    /// The default: every row where the f64 reference is cheap, else a sample.
    pub fn default_for(shape: &QkvShape) -> Self {
        if shape.flops() <= 20e9 {
            CheckRows::All
        } else {
            CheckRows::Sample(4096)
        }
    }

    /// The rows of a chunk to check, as offsets within it: all, or `n x len / tokens`
    /// (at least 2) spread evenly from the first to the last.
    pub fn rows_in(&self, len: usize, tokens: usize) -> Vec<usize> {
        let m = match *self {
            CheckRows::All => len,
            // At least both ends; a chunk of one token has only one row.
            CheckRows::Sample(n) => (n as usize * len).div_ceil(tokens.max(1)).max(2),
        }
        .min(len);
        if m == len {
            return (0..len).collect();
        }
        let mut rows: Vec<usize> = (0..m).map(|j| j * (len - 1) / (m - 1)).collect();
        rows.dedup();
        rows
    }
}

/// The rows of a run kept for checking: copied out of each chunk as it streams by (cheap,
/// part of reading back; widened to f32), checked against the f64 reference after the timed
/// run.
#[derive(Default)]
pub struct Collected {
    rows: Vec<usize>,
    /// X of the kept rows as the user gave it (f32, before rounding to the run's type): the
    /// X the GPU read is that rounded, and the precision cost compares the two. Kept by the
    /// source as it produces X ([`keep_source_rows`]), or regenerated from the seed.
    source_x: Vec<f32>,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    /// NaN or infinite elements of every row of Q, K and V (checked or not), with the
    /// (batch row, column) of the first of each.
    non_finite: [(usize, Option<(usize, usize)>); 3],
}

/// The (token row within the chunk, column) of element `i` of an output `width` columns
/// wide laid out as `layout` (`heads` of `head_dim` for a head layout).
fn position(i: usize, width: u32, layout: OutputLayout, heads: u32) -> (usize, usize) {
    let width = width as usize;
    match layout {
        OutputLayout::Tokens => (i / width.max(1), i % width.max(1)),
        OutputLayout::Heads(h) => {
            let (seq, heads) = (h.seq_len as usize, heads as usize);
            let dim = width / heads.max(1);
            // [sequences, heads, seq, head_dim].
            let (d, s) = (i % dim, i / dim % seq);
            let (head, b) = (i / dim / seq % heads, i / dim / seq / heads);
            (b * seq + s, head * dim + d)
        }
    }
}

impl Collected {
    /// Copies the rows `check` picks from one chunk whose Q, K, V are in `layout`; they are
    /// kept token-major, as the reference computes them.
    pub fn take(
        &mut self,
        c: &qkv_wgpu::ChunkOutput<'_>,
        shape: &QkvShape,
        layout: OutputLayout,
        check: CheckRows,
    ) {
        self.scan(c, shape, layout);
        for r in check.rows_in(c.rows.len(), shape.tokens as usize) {
            self.keep_row(c, shape, layout, r);
        }
    }

    /// Counts the NaN and infinite elements of every row of one chunk's Q, K and V (checked
    /// or not: with finite inputs, an overflow anywhere fails the run), keeping where the
    /// first of each is.
    pub fn scan(&mut self, c: &qkv_wgpu::ChunkOutput<'_>, shape: &QkvShape, layout: OutputLayout) {
        let (qh, kvh) = match layout {
            OutputLayout::Tokens => (1, 1),
            OutputLayout::Heads(h) => (h.heads, h.kv_heads),
        };
        for (seen, (data, width, heads)) in self.non_finite.iter_mut().zip([
            (c.q, shape.q_width, qh),
            (c.k, shape.kv_width, kvh),
            (c.v, shape.kv_width, kvh),
        ]) {
            let (count, first) = data.non_finite();
            seen.0 += count;
            if seen.1.is_none() {
                seen.1 = first.map(|i| {
                    let (r, col) = position(i, width, layout, heads);
                    (c.rows.start as usize + r, col)
                });
            }
        }
    }

    /// Keeps row `r` of one chunk.
    fn keep_row(
        &mut self,
        c: &qkv_wgpu::ChunkOutput<'_>,
        shape: &QkvShape,
        layout: OutputLayout,
        r: usize,
    ) {
        self.rows.push(c.rows.start as usize + r);
        match layout {
            OutputLayout::Tokens => {
                let (qw, kvw) = (shape.q_width as usize, shape.kv_width as usize);
                c.q.slice(r * qw..(r + 1) * qw).extend_f32(&mut self.q);
                c.k.slice(r * kvw..(r + 1) * kvw).extend_f32(&mut self.k);
                c.v.slice(r * kvw..(r + 1) * kvw).extend_f32(&mut self.v);
            }
            OutputLayout::Heads(h) => {
                // The chunk holds whole sequences: [sequences, heads, seq, head_dim].
                let seq = h.seq_len as usize;
                let (b, s) = (r / seq, r % seq);
                let gather = |out: &mut Vec<f32>, data: Elements<'_>, heads: u32, dim: u32| {
                    let (heads, dim) = (heads as usize, dim as usize);
                    for head in 0..heads {
                        let at = ((b * heads + head) * seq + s) * dim;
                        data.slice(at..at + dim).extend_f32(out);
                    }
                };
                gather(&mut self.q, c.q, h.heads, h.q_head_dim(shape));
                gather(&mut self.k, c.k, h.kv_heads, h.kv_head_dim(shape));
                gather(&mut self.v, c.v, h.kv_heads, h.kv_head_dim(shape));
            }
        }
    }

    /// Sets X as the user gave it for the kept rows, before the rounding to the run's type
    /// ([`keep_source_rows`] collects it as X is produced).
    pub fn set_source_x(&mut self, x: Vec<f32>) {
        self.source_x = x;
    }

    /// Regenerates X as drawn in f32 for the kept rows of seeded random X.
    fn regenerate_source_x(&mut self, d_model: u32, seed: u64) {
        let d = d_model as usize;
        self.source_x = vec![0.0; self.rows.len() * d];
        for (i, &r) in self.rows.iter().enumerate() {
            let row = r as u32;
            random_x_rows(
                d_model,
                seed,
                row..row + 1,
                &mut self.source_x[i * d..(i + 1) * d],
            );
        }
    }

    /// How many rows are kept.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Forgets the scan of the outputs: for inputs that hold NaN or Inf (allowed by the
    /// user), which the outputs carry, so they are no overflow.
    pub fn inputs_not_finite(&mut self) {
        self.non_finite = Default::default();
    }

    /// What the scan of every output element found, if anything was NaN or infinite:
    /// "Q: 192 elements are NaN or infinite, the first at row 5, column 0; ...".
    pub fn non_finite_outputs(&self) -> Option<String> {
        let parts: Vec<String> = ["Q", "K", "V"]
            .iter()
            .zip(&self.non_finite)
            .filter(|(_, (count, _))| *count > 0)
            .map(|(name, (count, first))| match first {
                Some((r, c)) => format!(
                    "{name}: {count} element(s) are NaN or infinite, the first at row {r}, \
                     column {c}"
                ),
                None => format!("{name}: {count} element(s) are NaN or infinite"),
            })
            .collect();
        (!parts.is_empty()).then(|| parts.join("; "))
    }

    /// Checks the kept rows of a run stored as `element` against the f64 reference computed
    /// from the inputs rounded to that type, as the GPU read them (`weights` are as given;
    /// `tol` covers the final rounding, [`qkv_wgpu::Tolerance::for_output`]); the report
    /// names batch rows. Returns the time the reference took, and for a half type the
    /// precision cost: the same results against the reference of the unrounded inputs
    /// (checked with `f32_tol`, for the figures; it decides nothing).
    pub fn check(
        &self,
        shape: &QkvShape,
        weights: &qkv_wgpu::FusedWeights,
        (element, input): (ElementType, ElementType),
        (tol, f32_tol): (qkv_wgpu::Tolerance, qkv_wgpu::Tolerance),
    ) -> (QkvReport, Option<QkvReport>, Duration) {
        let sub = QkvShape {
            tokens: self.rows.len() as u32,
            ..*shape
        };
        let against = |x: &[f32], w: &qkv_wgpu::FusedWeights, tol| {
            let expected = reference(&sub, x, w);
            let mut report = QkvReport::new(
                (&self.q, &self.k, &self.v),
                &expected,
                shape.q_width,
                shape.kv_width,
                tol,
            );
            // The report counts rows of the kept set; name the batch rows instead.
            for part in [&mut report.q, &mut report.k, &mut report.v] {
                for m in &mut part.first_mismatches {
                    m.row = self.rows[m.row];
                }
            }
            report
        };
        let start = Instant::now();
        // X as the GPU read it: as given, rounded to the run's type, and for a kernel that
        // reads another type (`coopmat`, f16) rounded once more.
        assert_eq!(
            self.source_x.len(),
            self.rows.len() * shape.d_model as usize
        );
        let x: Vec<f32> = self
            .source_x
            .iter()
            .map(|&v| input.round(element.round(v)))
            .collect();
        let x = &x;
        let run = element;
        let element = input;
        let exact = run == input
            && weights.w.element() == element
            && weights
                .bias
                .iter()
                .flatten()
                .all(|&b| element.round(b) == b);
        let mut report = if exact {
            against(x, weights, tol)
        } else {
            against(x, &weights.rounded_for(run, input), tol)
        };
        for (part, &(count, first)) in [&mut report.q, &mut report.k, &mut report.v]
            .into_iter()
            .zip(&self.non_finite)
        {
            part.add_non_finite(count, first);
        }
        let took = start.elapsed();
        let cost = element
            .is_half()
            .then(|| against(&self.source_x, weights, f32_tol));
        (report, cost, took)
    }
}

/// Appends to `out` X as the user gave it (f32, before the rounding to the run's type) for
/// the rows `check` picks of a chunk of `chunk_len` of `tokens` tokens, from `piece`: the
/// chunk's rows `[first, first + piece.len() / d)`. Called for every piece of every chunk, in
/// order, it keeps the rows [`Collected::take`] keeps.
pub fn keep_source_rows(
    out: &mut Vec<f32>,
    (chunk_len, tokens): (usize, usize),
    check: CheckRows,
    first: usize,
    piece: &[f32],
    d: usize,
) {
    let end = first + piece.len() / d.max(1);
    for r in check.rows_in(chunk_len, tokens) {
        if (first..end).contains(&r) {
            let at = (r - first) * d;
            out.extend_from_slice(&piece[at..at + d]);
        }
    }
}

/// One run of seeded random X (uniform in [-1, 1), generated chunk by chunk as the batch
/// streams, directly in the run's type) through `projector`, token-major, keeping the rows `check` picks; `bar` follows
/// the tokens done.
pub fn random_run(
    projector: &mut Projector<'_>,
    seed: u64,
    check: CheckRows,
    bar: &indicatif::ProgressBar,
) -> Result<(RunTimings, Collected), Error> {
    let (shape, layout) = (*projector.shape(), projector.layout());
    let mut kept = Collected::default();
    let timings = projector.stream(
        |rows, dst| {
            random_x_rows_in(shape.d_model, seed, rows, dst);
            Ok(())
        },
        |c| {
            kept.take(&c, &shape, layout, check);
            Ok(())
        },
        |done| bar.set_position(done as u64),
    )?;
    kept.regenerate_source_x(shape.d_model, seed);
    Ok((timings, kept))
}

#[cfg(test)]
mod tests {
    use super::*;
    use qkv_wgpu::{ChunkOutput, HeadSplit};

    #[test]
    fn sampled_rows_include_each_chunks_ends_and_all_means_all() {
        assert_eq!(CheckRows::All.rows_in(5, 100), vec![0, 1, 2, 3, 4]);
        // 10 of 100 rows over a 30-row chunk: 3 rows, first and last included.
        assert_eq!(CheckRows::Sample(10).rows_in(30, 100), vec![0, 14, 29]);
        // Never fewer than 2 (both ends), never more than the chunk.
        assert_eq!(CheckRows::Sample(1).rows_in(30, 1000), vec![0, 29]);
        assert_eq!(CheckRows::Sample(500).rows_in(4, 10), vec![0, 1, 2, 3]);
        assert_eq!(CheckRows::Sample(3).rows_in(1, 10), vec![0]);
        assert_eq!(parse_check_rows("all"), Ok(CheckRows::All));
        assert_eq!(parse_check_rows("12"), Ok(CheckRows::Sample(12)));
        assert!(parse_check_rows("0").is_err() && parse_check_rows("x").is_err());
    }

    #[test]
    fn rows_kept_from_a_head_layout_chunk_are_the_token_rows() {
        // 2 sequences of 3 tokens; Q 4 heads of 2, K/V 2 heads of 2; value = 100 row + col.
        let shape = QkvShape::new(6, 1, 8, 4, false).unwrap();
        let split = HeadSplit::new(&shape, 3, 4, 2).unwrap();
        let rows = |w: u32| -> Vec<f32> {
            (0..6u32)
                .flat_map(|r| (0..w).map(move |c| (100 * r + c) as f32))
                .collect()
        };
        let (q, kv) = (rows(8), rows(4));
        let heads = OutputLayout::Heads(split);
        let (hq, hk) = (heads.arrange(&q, 6, 8, 4), heads.arrange(&kv, 6, 4, 2));
        fn chunk<'a>(q: &'a [f32], k: &'a [f32]) -> ChunkOutput<'a> {
            ChunkOutput {
                index: 0,
                of: 1,
                rows: 0..6,
                q: Elements::F32(q),
                k: Elements::F32(k),
                v: Elements::F32(k),
            }
        }
        let mut by_heads = Collected::default();
        by_heads.take(&chunk(&hq, &hk), &shape, heads, CheckRows::All);
        let mut by_tokens = Collected::default();
        by_tokens.take(
            &chunk(&q, &kv),
            &shape,
            OutputLayout::Tokens,
            CheckRows::All,
        );
        assert_eq!(by_heads.len(), 6);
        assert_eq!(by_heads.q, by_tokens.q);
        assert_eq!(by_heads.k, by_tokens.k);
        assert_eq!(by_heads.v, by_tokens.v);
        assert_eq!(
            by_heads.q[8..16],
            [100., 101., 102., 103., 104., 105., 106., 107.]
        );
        // An infinity in an unchecked row is found, and located in either layout.
        let mut q2 = q.clone();
        q2[4 * 8 + 5] = f32::INFINITY;
        let hq2 = heads.arrange(&q2, 6, 8, 4);
        for (layout, data) in [(OutputLayout::Tokens, &q2), (heads, &hq2)] {
            let mut kept = Collected::default();
            let kv_data = if layout == OutputLayout::Tokens {
                &kv
            } else {
                &hk
            };
            kept.take(&chunk(data, kv_data), &shape, layout, CheckRows::Sample(1));
            assert_eq!(kept.non_finite[0], (1, Some((4, 5))), "{layout:?}");
            assert_eq!(kept.non_finite[1], (0, None));
        }
    }
}
