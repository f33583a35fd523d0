//! The rows of a run kept for checking: which rows are checked ([`CheckRows`]), the rows
//! copied out of each chunk as it streams by with the X they were computed from
//! ([`KeptRows`]), and their check against the f64 reference of the inputs the GPU read.

use crate::element::ElementType;
use crate::epilogue::{Epilogue, Heads};
use crate::host::Elements;
use crate::layout::OutputLayout;
use crate::projector::ChunkOutput;
use crate::reference::reference;
use crate::shape::QkvShape;
use crate::validate::{QkvReport, Tolerance};
use crate::weights::{random_x_rows, FusedWeights};
use std::time::Duration;
// The browser has no std clock: std::time::Instant::now() panics on wasm32.
use web_time::Instant;

/// Which rows of each run are checked against the f64 reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckRows {
    /// Every row.
    All,
    /// About this many, spread over every chunk (each chunk's first and last included).
    Sample(u32),
}

/// `all`, or a number of rows >= 1.
pub fn parse_check_rows(s: &str) -> Result<CheckRows, String> {
    match s.trim() {
        "all" => Ok(CheckRows::All),
        n => match n.parse::<u32>() {
            Ok(0) | Err(_) => Err(format!("'{s}': expected `all` or a number of rows >= 1")),
            Ok(n) => Ok(CheckRows::Sample(n)),
        },
    }
}

impl std::str::FromStr for CheckRows {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        parse_check_rows(s)
    }
}

/// The most memory the rows kept for the default check take: Q, K, V and X of each kept row
/// as f32, and at the check its f64 reference and magnitudes ([`CheckRows::row_bytes`]).
pub const CHECK_KEEP_BYTES: u64 = 256 << 20;

/// The rows the default check samples where it cannot check every row.
pub const CHECK_SAMPLE_ROWS: u32 = 4096;

impl CheckRows {
    /// The default: every row where the f64 reference is cheap (at most 20 GFLOP) and the
    /// rows kept for it fit in [`CHECK_KEEP_BYTES`], else a sample of
    /// [`CHECK_SAMPLE_ROWS`], fewer where those would not fit (at least 16): the check's
    /// memory is bounded however many tokens, unless the user asks for all rows.
    pub fn default_for(shape: &QkvShape) -> Self {
        let fit = CHECK_KEEP_BYTES / Self::row_bytes(shape).max(1);
        if shape.flops() <= 20e9 && shape.tokens as u64 <= fit {
            CheckRows::All
        } else {
            CheckRows::Sample(fit.clamp(16, CHECK_SAMPLE_ROWS as u64) as u32)
        }
    }

    /// Bytes one kept row costs: its Q, K, V (f32) and X (f32), and at the check its f64
    /// reference and f64 magnitudes.
    pub fn row_bytes(shape: &QkvShape) -> u64 {
        shape.n_out() as u64 * (4 + 8 + 8) + shape.d_model as u64 * 4
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
pub struct KeptRows {
    rows: Vec<usize>,
    /// d_model, once X is set.
    d_model: usize,
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
    /// The norm and RoPE the run applied to Q and K, over which heads, in which storage type
    /// ([`set_epilogue`](Self::set_epilogue)).
    epilogue: Option<(Epilogue, Heads, ElementType)>,
}

impl KeptRows {
    /// Copies the rows `check` picks from one chunk whose Q, K, V are in `layout`; they are
    /// kept token-major, as the reference computes them.
    pub fn take(
        &mut self,
        c: &ChunkOutput<'_>,
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
    pub fn scan(&mut self, c: &ChunkOutput<'_>, shape: &QkvShape, layout: OutputLayout) {
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
                    let (r, col) = layout.token_position(i, width, heads);
                    (c.rows.start as usize + r, col)
                });
            }
        }
    }

    /// Keeps row `r` of one chunk.
    fn keep_row(&mut self, c: &ChunkOutput<'_>, shape: &QkvShape, layout: OutputLayout, r: usize) {
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
    pub fn set_source_x(&mut self, x: Vec<f32>, d_model: u32) {
        self.source_x = x;
        self.d_model = d_model as usize;
    }

    /// Regenerates X as drawn in f32 for the kept rows of seeded random X.
    pub fn regenerate_source_x(&mut self, d_model: u32, seed: u64) {
        let d = d_model as usize;
        self.d_model = d;
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

    /// The batch rows kept, in order.
    pub fn rows(&self) -> &[usize] {
        &self.rows
    }

    /// How many rows are kept.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether no row is kept.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
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

    /// Checks the kept rows of a run in `dtype` whose kernel read X as `x`, against the f64
    /// reference computed from the inputs as the GPU read them: X rounded here (to `dtype`,
    /// then to `x`), the weights as [`weights_read`] gives them (rounded once per run by
    /// the caller); `tol` covers the final rounding ([`Tolerance::for_output`]). The report
    /// names batch rows, and counts the NaN and infinite elements of every row scanned.
    /// Returns the report and the time the reference took.
    pub fn check(
        &self,
        shape: &QkvShape,
        weights_read: &FusedWeights,
        (dtype, x): (ElementType, ElementType),
        tol: Tolerance,
    ) -> (QkvReport, Duration) {
        let start = Instant::now();
        let x: Vec<f32> = self
            .source_x()
            .iter()
            .map(|&v| x.round(dtype.round(v)))
            .collect();
        let expected = reference(&self.kept_shape(shape), &x, weights_read);
        let report = self.report_against(shape, &expected, tol);
        (report, start.elapsed())
    }

    /// [`check`](Self::check) against a reference of these rows computed before (the
    /// tuner's, once for every candidate on the same inputs).
    pub fn check_expected(
        &self,
        shape: &QkvShape,
        expected: &crate::reference::Reference,
        tol: Tolerance,
    ) -> QkvReport {
        self.report_against(shape, expected, tol)
    }

    /// For a half type, the precision cost: the results against the reference of the
    /// inputs as the user gave them (unrounded), with `f32_tol`. It decides nothing.
    pub fn precision_cost(
        &self,
        shape: &QkvShape,
        weights: &FusedWeights,
        f32_tol: Tolerance,
    ) -> QkvReport {
        let expected = reference(&self.kept_shape(shape), self.source_x(), weights);
        self.report_against(shape, &expected, f32_tol)
    }

    /// Checks Q and K as the run's epilogue left them: the reference with `ep` applied at
    /// each kept row's own position, Q's and K's tolerance with its part
    /// ([`Tolerance::with_epilogue`], outputs in `out`).
    pub fn set_epilogue(&mut self, ep: &Epilogue, heads: &Heads, out: ElementType) {
        self.epilogue = Some((ep.clone(), *heads, out));
    }

    /// The shape of the kept rows.
    fn kept_shape(&self, shape: &QkvShape) -> QkvShape {
        QkvShape {
            tokens: self.rows.len() as u32,
            ..*shape
        }
    }

    /// X of the kept rows as given.
    fn source_x(&self) -> &[f32] {
        assert_eq!(
            self.source_x.len(),
            self.rows.len() * self.d_model,
            "X of every kept row is set before the check"
        );
        &self.source_x
    }

    fn report_against(
        &self,
        shape: &QkvShape,
        expected: &crate::reference::Reference,
        tol: Tolerance,
    ) -> QkvReport {
        let widths = (shape.q_width, shape.kv_width);
        let gpu = (&self.q[..], &self.k[..], &self.v[..]);
        let mut report = match &self.epilogue {
            None => QkvReport::split(gpu, expected, widths, (tol, tol)),
            Some((ep, heads, out)) => {
                let expected = expected.clone().with_epilogue(ep, heads, Some(&self.rows));
                let qk = tol.with_epilogue(ep, heads, *out);
                QkvReport::split(gpu, &expected, widths, (qk, tol))
            }
        };
        // The report counts rows of the kept set; name the batch rows instead.
        for part in [&mut report.q, &mut report.k, &mut report.v] {
            for m in &mut part.first_mismatches {
                m.row = self.rows[m.row];
            }
        }
        for (part, &(count, first)) in [&mut report.q, &mut report.k, &mut report.v]
            .into_iter()
            .zip(&self.non_finite)
        {
            part.add_non_finite(count, first);
        }
        report
    }
}

/// The weights as a kernel of a run in `dtype` that reads W as `w` reads them: rounded to
/// `dtype` then `w` (bias to `dtype`); borrowed as they are where that changes nothing. W kept
/// in its blocks comes back dequantized (exactly, as the kernels read it), once.
pub fn weights_read(
    weights: &FusedWeights,
    dtype: ElementType,
    w: ElementType,
) -> std::borrow::Cow<'_, FusedWeights> {
    if weights.stored.is_some() {
        // W kept in its blocks is read as its exact values in f32, whatever the run's type:
        // dequantized once here for every run's reference; the bias rounded to the run's type.
        let mut read = weights.dequantized();
        if let Some(b) = &mut read.bias {
            dtype.round_slice(b);
        }
        return std::borrow::Cow::Owned(read);
    }
    let exact = dtype == w
        && weights.w.element() == w
        && weights.bias.iter().flatten().all(|&b| dtype.round(b) == b);
    if exact {
        std::borrow::Cow::Borrowed(weights)
    } else {
        std::borrow::Cow::Owned(weights.rounded_for(dtype, w))
    }
}

/// Appends to `out` X as the user gave it (f32, before the rounding to the run's type) for
/// the rows `check` picks of a chunk of `chunk_len` of `tokens` tokens, from `piece`: the
/// chunk's rows `[first, first + piece.len() / d)`. Called for every piece of every chunk, in
/// order, it keeps the rows [`KeptRows::take`] keeps.
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::HeadSplit;

    #[test]
    fn the_default_check_keeps_bounded_memory_however_many_tokens() {
        // Issue #32: 1M tokens at d_model 16 kept every row (2.0 GB peak for 188 MB of
        // outputs). Now every row only while they fit in CHECK_KEEP_BYTES.
        let small = QkvShape::new(4096, 16, 16, 16, false).unwrap();
        assert_eq!(CheckRows::default_for(&small), CheckRows::All);
        let long = QkvShape::new(1 << 20, 16, 16, 16, false).unwrap();
        let CheckRows::Sample(n) = CheckRows::default_for(&long) else {
            panic!("1M tokens: every row kept");
        };
        assert!(
            n as u64 * CheckRows::row_bytes(&long) <= CHECK_KEEP_BYTES,
            "{n}"
        );
        // Wide rows: fewer than 4096, still bounded.
        let wide = QkvShape::new(1 << 16, 8192, 8192, 8192, false).unwrap();
        let CheckRows::Sample(n) = CheckRows::default_for(&wide) else {
            panic!("wide: every row kept");
        };
        assert!(
            n < CHECK_SAMPLE_ROWS && n as u64 * CheckRows::row_bytes(&wide) <= CHECK_KEEP_BYTES
        );
    }

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
        let mut by_heads = KeptRows::default();
        by_heads.take(&chunk(&hq, &hk), &shape, heads, CheckRows::All);
        let mut by_tokens = KeptRows::default();
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
            let mut kept = KeptRows::default();
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
