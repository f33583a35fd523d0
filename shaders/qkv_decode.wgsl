// Variant 10, `decode`: a matrix-vector kernel for few tokens (decoding one token at a time,
// or a few in a batch), where the cost is reading W once. W lies transposed, a row per fused
// column along d_model, so the invocations of a column read consecutive elements; each W
// element read is used for all ROWS tokens of the workgroup, from registers. A workgroup owns
// COLS columns; SPLIT invocations share each column's d_model (lane j takes k = j, j + SPLIT,
// ...) four elements at a time (16 bytes of f32, 8 of a half type), and their partial sums
// are added through workgroup memory.
//
// It runs in every storage type (ELEM): X and W read as 32-bit words and widened; it
// accumulates in f32 (four products at a time) and rounds once, at the store. Composed with
// w_blocks.wgsl instead of w4_words.wgsl, it reads W as a checkpoint stores it (a row per
// column along d_model, in its block format) and dequantizes each unit of 32 elements once
// for all the tokens: one scale read per unit, then eight vec4s.
//
// Shape contract (in the storage type; bias always f32):
//   x    [tokens, KS], KS = d_model rounded up to 8, zeros past d_model (params.w_stride)
//   w    [n_cols, KS]: row c is fused column col0 + c of [Wq | Wk | Wv], zeros past d_model;
//        or (w_blocks.wgsl) Wq's, Wk's and Wv's stored rows, KS = d_model a multiple of 32
//   bias [n_out], read only when HAS_BIAS
//   q, k, v as every kernel stores them (store.wgsl), in token rows or the head layout
// Dispatch: (ceil(n_cols / COLS), ceil(tokens / ROWS), 1) workgroups of COLS x SPLIT
// invocations; invocation i serves column COLS gx + i / SPLIT, tokens ROWS gy .. + ROWS - 1.

// Columns per workgroup, invocations per column, tokens per workgroup (1, 4 or 8), and their
// product the workgroup's size: the host sets all four.
override COLS: u32 = 8u;
override SPLIT: u32 = 8u;
override ROWS: u32 = 8u;
override WG: u32 = 64u;

// The outputs one workgroup covers: the host's grid divides by these
// (src/kernels/variants/decode.rs says the same; tests/shaders.rs checks the two agree).
override TILE_COLS: u32 = COLS;
override TILE_ROWS: u32 = ROWS;

// Each invocation's partial sums of 8 tokens, as two vec4s.
var<workgroup> partial: array<vec4<f32>, 512>;

@compute @workgroup_size(WG, 1, 1)
fn main(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
) {
    // Rows are KS long, zeros past d_model: read in units of UNIT_QUADS vec4s (one vec4
    // of elements, or 32 elements of a stored block format).
    let steps = params.w_stride / 4u;
    let units = steps / UNIT_QUADS;
    let lane = lid.x % SPLIT;
    let col = wid.x * TILE_COLS + lid.x / SPLIT;
    let wcol = min(col, params.n_cols - 1u);
    let row0 = wid.y * TILE_ROWS;
    // Rows past the last token read the last one's X (clamped, so the loop has no branches)
    // and are never stored.
    let last = params.tokens - 1u;
    let x0 = min(row0, last) * steps;
    let x1 = min(row0 + 1u, last) * steps;
    let x2 = min(row0 + 2u, last) * steps;
    let x3 = min(row0 + 3u, last) * steps;
    let x4 = min(row0 + 4u, last) * steps;
    let x5 = min(row0 + 5u, last) * steps;
    let x6 = min(row0 + 6u, last) * steps;
    let x7 = min(row0 + 7u, last) * steps;
    var a = vec4<f32>();
    var b = vec4<f32>();
    for (var u = lane; u < units; u += SPLIT) {
        let unit = w_unit(wcol, u);
        for (var i = 0u; i < UNIT_QUADS; i++) {
            let wj = w_quad(unit, i);
            let j = u * UNIT_QUADS + i;
            // Override constants: the branches are compiled away.
            if ROWS == 1u {
                a.x += dot(x4_at(x0 + j), wj);
            } else {
                a += vec4<f32>(
                    dot(x4_at(x0 + j), wj),
                    dot(x4_at(x1 + j), wj),
                    dot(x4_at(x2 + j), wj),
                    dot(x4_at(x3 + j), wj),
                );
            }
            if ROWS == 8u {
                b += vec4<f32>(
                    dot(x4_at(x4 + j), wj),
                    dot(x4_at(x5 + j), wj),
                    dot(x4_at(x6 + j), wj),
                    dot(x4_at(x7 + j), wj),
                );
            }
        }
    }
    if SPLIT > 1u {
        partial[2u * lid.x] = a;
        partial[2u * lid.x + 1u] = b;
        workgroupBarrier();
        if lane != 0u {
            return;
        }
        for (var j = 1u; j < SPLIT; j++) {
            a += partial[2u * (lid.x + j)];
            b += partial[2u * (lid.x + j) + 1u];
        }
    }
    if col >= params.n_cols {
        return;
    }
    var add = 0.0;
    if HAS_BIAS {
        add = bias[params.col0 + col];
    }
    let sums = array<f32, 8>(a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w);
    for (var t = 0u; t < ROWS; t++) {
        if row0 + t < params.tokens {
            store(row0 + t, col, sums[t] + add);
        }
    }
}
