// Variant 10, `decode`: a matrix-vector kernel for few tokens (decoding one token at a time,
// or a few in a batch), where the cost is reading W once. W lies transposed, a row per fused
// column along d_model, so the invocations of a column read consecutive elements; each W
// element read is used for all ROWS tokens of the workgroup, and each X element read for all
// EACH columns of the invocation, from registers. A workgroup owns COLS columns; SPLIT
// invocations share each column's d_model (lane j takes unit j, j + SPLIT, ...: a vec4 of
// words, 4 f32 elements or 8 of a half type, each word read once), and their partial sums are
// added through workgroup memory. On a CPU driver every load is a loop over the SIMD lanes, whatever its
// bytes, so the loads per product, not the bytes, bound the kernel there: EACH divides X's.
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
// Dispatch: (ceil(n_cols / COLS), ceil(tokens / ROWS), 1) workgroups of COLS / EACH x SPLIT
// invocations; invocation i serves columns COLS gx + EACH (i / SPLIT) .. + EACH - 1, tokens
// ROWS gy .. + ROWS - 1.

// Columns per workgroup, invocations per column, tokens per workgroup (1, 4 or 8), columns
// per invocation (EACH: 1, 2, 4 or 8, dividing COLS) and the workgroup's size, COLS / EACH x
// SPLIT: the host sets them all.
override COLS: u32 = 8u;
override SPLIT: u32 = 8u;
override ROWS: u32 = 8u;
override EACH: u32 = 1u;
override WG: u32 = 64u;

// The outputs one workgroup covers: the host's grid divides by these
// (src/kernels/variants/decode.rs says the same; tests/shaders.rs checks the two agree).
override TILE_COLS: u32 = COLS;
override TILE_ROWS: u32 = ROWS;

// Each invocation's partial sums of 8 tokens for each of its columns, two vec4s a column
// (COLS x SPLIT <= 256).
var<workgroup> partial: array<vec4<f32>, 512>;

// One column's sums of up to 8 tokens: tokens 0..3 in a, 4..7 in b.
struct Sums {
    a: vec4<f32>,
    b: vec4<f32>,
}

// Elements 4j .. 4j + 3 of the workgroup's up to 8 tokens (named, not an array, so that
// they stay in registers).
struct Xs {
    x0: vec4<f32>,
    x1: vec4<f32>,
    x2: vec4<f32>,
    x3: vec4<f32>,
    x4: vec4<f32>,
    x5: vec4<f32>,
    x6: vec4<f32>,
    x7: vec4<f32>,
}

// Tokens ROWS gy .. + 7 as indexes of their first vec4: past the last token, the last one's
// (clamped, so the loop has no branches; those rows are never stored).
fn token_rows(row0: u32, steps: u32) -> array<u32, 8> {
    let last = params.tokens - 1u;
    var r: array<u32, 8>;
    for (var t = 0u; t < 8u; t++) {
        r[t] = min(row0 + t, last) * steps;
    }
    return r;
}

// The vec4 of words holding elements 4j .. 4j + 3 of every token (and, in a half type,
// their neighbours 4 (j ^ 1) ..); only the first ROWS are read (the others are never used,
// and the compiler drops their loads).
struct XWords {
    x0: vec4<u32>,
    x1: vec4<u32>,
    x2: vec4<u32>,
    x3: vec4<u32>,
    x4: vec4<u32>,
    x5: vec4<u32>,
    x6: vec4<u32>,
    x7: vec4<u32>,
}

fn x_words(r: array<u32, 8>, j: u32) -> XWords {
    return XWords(
        x_quad_words(r[0] + j), x_quad_words(r[1] + j), x_quad_words(r[2] + j),
        x_quad_words(r[3] + j), x_quad_words(r[4] + j), x_quad_words(r[5] + j),
        x_quad_words(r[6] + j), x_quad_words(r[7] + j),
    );
}

// Elements 4j .. 4j + 3 of every token, from their words.
fn xs_of(v: XWords, j: u32) -> Xs {
    return Xs(
        quad(v.x0, j), quad(v.x1, j), quad(v.x2, j), quad(v.x3, j),
        quad(v.x4, j), quad(v.x5, j), quad(v.x6, j), quad(v.x7, j),
    );
}

// A column's sums plus the products of W's vec4 `wj` with each token's. Override
// constants: the branches are compiled away.
fn add_dots(s: Sums, x: Xs, wj: vec4<f32>) -> Sums {
    var r = s;
    if ROWS == 1u {
        r.a.x += dot(x.x0, wj);
    } else {
        r.a += vec4<f32>(dot(x.x0, wj), dot(x.x1, wj), dot(x.x2, wj), dot(x.x3, wj));
    }
    if ROWS == 8u {
        r.b += vec4<f32>(dot(x.x4, wj), dot(x.x5, wj), dot(x.x6, wj), dot(x.x7, wj));
    }
    return r;
}

// The sums of an invocation's EACH columns, and their units of W (named, not arrays, so
// that they stay in registers; those of columns EACH and up are never used).
struct Acc {
    s0: Sums,
    s1: Sums,
    s2: Sums,
    s3: Sums,
    s4: Sums,
    s5: Sums,
    s6: Sums,
    s7: Sums,
}

struct Cols {
    c0: WCol,
    c1: WCol,
    c2: WCol,
    c3: WCol,
    c4: WCol,
    c5: WCol,
    c6: WCol,
    c7: WCol,
}

struct Units {
    u0: WUnit,
    u1: WUnit,
    u2: WUnit,
    u3: WUnit,
    u4: WUnit,
    u5: WUnit,
    u6: WUnit,
    u7: WUnit,
}

// The sums of column c (< 8) of the invocation's.
fn column(a: Acc, c: u32) -> Sums {
    switch c {
        case 0u: { return a.s0; }
        case 1u: { return a.s1; }
        case 2u: { return a.s2; }
        case 3u: { return a.s3; }
        case 4u: { return a.s4; }
        case 5u: { return a.s5; }
        case 6u: { return a.s6; }
        default: { return a.s7; }
    }
}

// The products of quad i of each column's unit with X's elements 4j .. 4j + 3.
fn quad_step(a: Acc, w: Units, x: Xs, i: u32) -> Acc {
    var r = a;
    r.s0 = add_dots(r.s0, x, w_quad(w.u0, i));
    if EACH >= 2u {
        r.s1 = add_dots(r.s1, x, w_quad(w.u1, i));
    }
    if EACH >= 4u {
        r.s2 = add_dots(r.s2, x, w_quad(w.u2, i));
        r.s3 = add_dots(r.s3, x, w_quad(w.u3, i));
    }
    if EACH == 8u {
        r.s4 = add_dots(r.s4, x, w_quad(w.u4, i));
        r.s5 = add_dots(r.s5, x, w_quad(w.u5, i));
        r.s6 = add_dots(r.s6, x, w_quad(w.u6, i));
        r.s7 = add_dots(r.s7, x, w_quad(w.u7, i));
    }
    return r;
}

// Quads i and i + 1 (i even; i alone where UNIT_QUADS is 1) of unit u: each vec4 of X's
// words read once for the invocation's columns, one per quad in f32, one per two in a half
// type (token rows are a multiple of 8 elements long, units 2 or 8 quads, so quads j and
// j + 1 share a vec4 there, and i has j's parity).
fn pair_step(a: Acc, w: Units, rows: array<u32, 8>, u: u32, i: u32) -> Acc {
    let j = u * UNIT_QUADS + i;
    let words = x_words(rows, j);
    var r = quad_step(a, w, xs_of(words, i), i);
    if UNIT_QUADS > 1u {
        var next = words;
        if ELEM == 0u {
            next = x_words(rows, j + 1u);
        }
        r = quad_step(r, w, xs_of(next, i + 1u), i + 1u);
    }
    return r;
}

// Adds the other SPLIT - 1 invocations' sums of column `c` (of EACH) to `s`.
fn gather(s: Sums, i: u32, c: u32) -> Sums {
    var r = s;
    for (var j = 1u; j < SPLIT; j++) {
        let at = 2u * (EACH * (i + j) + c);
        r.a += partial[at];
        r.b += partial[at + 1u];
    }
    return r;
}

// Column `col`'s outputs for tokens row0 .. (those that exist).
fn finish(col: u32, row0: u32, s: Sums) {
    if col >= params.n_cols {
        return;
    }
    var add = 0.0;
    if HAS_BIAS {
        add = bias[params.col0 + col];
    }
    let sums = array<f32, 8>(s.a.x, s.a.y, s.a.z, s.a.w, s.b.x, s.b.y, s.b.z, s.b.w);
    for (var t = 0u; t < ROWS; t++) {
        if row0 + t < params.tokens {
            store(row0 + t, col, sums[t] + add);
        }
    }
}

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
    // Invocation i computes columns EACH (i / SPLIT) .. + EACH - 1 of the workgroup's; past
    // the last column it reads the last one's W, and stores nothing.
    let first = wid.x * TILE_COLS + lid.x / SPLIT * EACH;
    let lastc = params.n_cols - 1u;
    let row0 = wid.y * TILE_ROWS;
    let rows = token_rows(row0, steps);
    var acc = Acc(Sums(), Sums(), Sums(), Sums(), Sums(), Sums(), Sums(), Sums());
    let wc = Cols(
        w_col(min(first, lastc)), w_col(min(first + 1u, lastc)),
        w_col(min(first + 2u, lastc)), w_col(min(first + 3u, lastc)),
        w_col(min(first + 4u, lastc)), w_col(min(first + 5u, lastc)),
        w_col(min(first + 6u, lastc)), w_col(min(first + 7u, lastc)),
    );
    for (var u = lane; u < units; u += SPLIT) {
        // The units of columns EACH and up are never used, and their loads dropped.
        let units8 = Units(
            w_unit(wc.c0, u), w_unit(wc.c1, u), w_unit(wc.c2, u), w_unit(wc.c3, u),
            w_unit(wc.c4, u), w_unit(wc.c5, u), w_unit(wc.c6, u), w_unit(wc.c7, u),
        );
        // Quads 0 .. UNIT_QUADS - 1 of the units, two at a time, unrolled: each quad's
        // index a constant, so that its fields are cut from the unit's words with constant
        // shifts and selects (a loop over them ran a quarter slower on lavapipe).
        acc = pair_step(acc, units8, rows, u, 0u);
        if UNIT_QUADS == 8u {
            acc = pair_step(acc, units8, rows, u, 2u);
            acc = pair_step(acc, units8, rows, u, 4u);
            acc = pair_step(acc, units8, rows, u, 6u);
        }
    }
    if SPLIT > 1u {
        for (var c = 0u; c < EACH; c++) {
            let s = column(acc, c);
            let at = 2u * (EACH * lid.x + c);
            partial[at] = s.a;
            partial[at + 1u] = s.b;
        }
        workgroupBarrier();
        if lane != 0u {
            return;
        }
    }
    for (var c = 0u; c < EACH; c++) {
        var s = column(acc, c);
        if SPLIT > 1u {
            s = gather(s, lid.x, c);
        }
        finish(first + c, row0, s);
    }
}
