// Part: the end of the 128 x 128 tile (tile128.wgsl) with QK-norm and RoPE fused into the
// store: `blocktile` applying the epilogue itself, no scratch and no second pass. After the
// main loop the workgroup stages its tile, bias added, 32 rows at a time in xs and ws (4,096
// f32: exactly the two arrays, free once every invocation is past a barrier); then each
// invocation takes one (row, head) of the strip through rope_norm.wgsl's `rope_norm_span`
// (V's heads are stored as they are). A tile of V alone is stored as plain `blocktile`
// stores it. Provides `finish_tile` and `epi_load`. Expects params.wgsl, store.wgsl,
// tile128.wgsl, rope_norm.wgsl and the body's `tile_bias`.
//
// Only where no head straddles a tile, which the host checks (crate::projector): 128 is a
// multiple of HEAD_DIM, the bound column block starts and ends on a head (col0 and n_cols
// multiples of HEAD_DIM; Q's and K's widths are), and the norm is per head (NORM != 2).

// Tile rows staged at once: 32 rows of TILE_COLS f32 fill xs and ws.
const STRIP: u32 = 32u;

// Element i of the staged strip (row i / TILE_COLS, column i % TILE_COLS): rows 0 .. 15 in
// xs, 16 .. 31 in ws. Q and K alike (`is_k` is the span's, not where it is read from).
fn epi_load(is_k: bool, i: u32) -> f32 {
    let v = i >> 2u;
    if v < 512u {
        return xs[v][i & 3u];
    }
    return ws[v - 512u][i & 3u];
}

// Stages columns 4 c4 .. 4 c4 + 3 of row r of the strip.
fn stage(r: u32, c4: u32, value: vec4<f32>) {
    let v = r * (TILE_COLS / 4u) + c4;
    if v < 512u {
        xs[v] = value;
    } else {
        ws[v - 512u] = value;
    }
}

fn finish_tile(z: u32, tile_row: u32, tile_col: u32, lid: vec3<u32>, acc: array<vec4<f32>, 16>) {
    let tx = lid.x;
    let ty = lid.y;
    let qk = params.q_width + params.kv_width;
    if params.col0 + tile_col >= qk {
        emit_block(z, tile_row + 4u * ty, tile_col + 4u * tx, acc);
        return;
    }
    let b0 = tile_bias(tile_col + 4u * tx);
    let b1 = tile_bias(tile_col + 64u + 4u * tx);
    let heads = TILE_COLS / HEAD_DIM;
    // Strip s holds tile rows 32 s .. 32 s + 31: those of invocations ty = 8 (s % 2) .. + 7,
    // their first four rows (acc[0 .. 7]) for s < 2, their last four (acc[8 .. 15]) after.
    for (var s = 0u; s < 4u; s++) {
        // Strips past the last token (the same for the whole workgroup) have nothing to store.
        if tile_row + STRIP * s >= params.tokens {
            return;
        }
        // Everyone is done reading xs and ws (the main loop's last step, or the last strip).
        workgroupBarrier();
        if (ty >> 3u) == (s & 1u) {
            let r = 4u * (ty & 7u);
            let upper = s >= 2u;
            stage(r + 0u, tx, select(acc[0], acc[8], upper) + b0);
            stage(r + 0u, tx + 16u, select(acc[1], acc[9], upper) + b1);
            stage(r + 1u, tx, select(acc[2], acc[10], upper) + b0);
            stage(r + 1u, tx + 16u, select(acc[3], acc[11], upper) + b1);
            stage(r + 2u, tx, select(acc[4], acc[12], upper) + b0);
            stage(r + 2u, tx + 16u, select(acc[5], acc[13], upper) + b1);
            stage(r + 3u, tx, select(acc[6], acc[14], upper) + b0);
            stage(r + 3u, tx + 16u, select(acc[7], acc[15], upper) + b1);
        }
        workgroupBarrier();
        for (var j = ty * 16u + tx; j < STRIP * heads; j += 256u) {
            let r = j / heads;
            let local = tile_col + (j - r * heads) * HEAD_DIM;
            let row = tile_row + STRIP * s + r;
            if row >= params.tokens || local >= params.n_cols {
                continue;
            }
            let col = params.col0 + local;
            let at = r * TILE_COLS + local - tile_col;
            if col < params.q_width {
                rope_norm_span(false, row, col, at);
            } else if col < qk {
                rope_norm_span(true, row, col - params.q_width, at);
            } else {
                for (var c = 0u; c < HEAD_DIM; c++) {
                    store(row, local + c, epi_load(false, at + c));
                }
            }
        }
    }
}
