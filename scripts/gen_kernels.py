#!/usr/bin/env python3
"""Writes the generated kernels: shaders/qkv_subgroup.wgsl, shaders/qkv_texture.wgsl,
shaders/qkv_subgroup_texture.wgsl, shaders/qkv_blocktile.wgsl, shaders/qkv_splitk.wgsl and
the cooperative-matrix kernels shaders/qkv_coopmat{8,16}_{f32,f16}_{4x2,4x4}.wgsl, and
`qkv peak`'s cooperative-matrix rate shaders/peak_coopmat{8,16}_{f32,f16}.wgsl.

Each keeps a block of outputs per invocation in registers, written out in full because WGSL
loops over register arrays are not reliably unrolled (an array indexed at run time lives in
memory) and subgroupBroadcast needs a constant lane. The shared blocks (Params, out_index,
store) are copied from shaders/qkv_direct.wgsl so that every kernel carries the same ones
(tests/shaders.rs checks).

Run from the repository root after changing this script: python3 scripts/gen_kernels.py
(`--check` only compares; CI runs that).
"""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_direct = (ROOT / "shaders" / "qkv_direct.wgsl").read_text()
SHARED = _direct[_direct.index("struct Params {"):_direct.index("// The outputs one workgroup covers")]
_WG = re.compile(r"// Invocations per workgroup.*?\noverride WG: u32 = 64u;\n", re.S)


def shared_blocks(replacements, wg):
    """qkv_direct.wgsl's Params, bindings, out_index and store, with `replacements` applied to
    the bindings and its WG override replaced by `wg`."""
    text = SHARED
    for old, new in replacements:
        assert old in text, old
        text = text.replace(old, new)
    text, n = _WG.subn(wg, text)
    assert n == 1
    return text


X_BINDING = "@group(0) @binding(1) var<storage, read> x: array<f32>;"
W_BINDING = "@group(0) @binding(2) var<storage, read> w: array<f32>;"

# The kernels that run in every storage type (ELEM) read X and W as 32-bit words and widen
# them to f32 with the functions below (the same text as in shaders/qkv_naive.wgsl; tests/
# shaders.rs checks).
_naive = (ROOT / "shaders" / "qkv_naive.wgsl").read_text()
WIDEN = _naive[_naive.index("// The half-typed element of"):_naive.index("// Element i of X, of W.")]
X_WORDS = ("// X and W as 32-bit words of the storage type (see `widen`).\n"
           "@group(0) @binding(1) var<storage, read> x: array<u32>;")
W_WORDS = "@group(0) @binding(2) var<storage, read> w: array<vec4<u32>>;"

# Loads of X and of W as vec4s, in any storage type.
TYPED_LOADS = WIDEN + """// Element i of X.
fn x_at(i: u32) -> f32 {
    if ELEM == 0u {
        return bitcast<f32>(x[i]);
    }
    return widen(x[i >> 1u], (i & 1u) == 1u);
}

// Elements 4j .. 4j + 3 of W: one vec4 of words for f32, half of one for the 16-bit types.
fn w4_at(j: u32) -> vec4<f32> {
    if ELEM == 0u {
        return bitcast<vec4<f32>>(w[j]);
    }
    let words = w[j >> 1u];
    return widen4(select(words.xy, words.zw, (j & 1u) == 1u));
}

"""

# Texels of the texture kernels: 4 consecutive elements, as rgba32uint (f32 bits) or rg32uint
# (four 16-bit elements).
TEXEL = WIDEN + """// One texel of X or W widened to f32: rgba32uint holds 4 f32, rg32uint 4 half-typed elements.
fn texel(t: vec4<u32>) -> vec4<f32> {
    if ELEM == 0u {
        return bitcast<vec4<f32>>(t);
    }
    return widen4(t.xy);
}

"""

TYPED_CONTRACT_NOTE = """// Runs in every storage type (ELEM): f32, and f16 or bf16 packed two to a 32-bit word,
// widened to f32 on load; it accumulates in f32 and rounds once, at the store.
"""

# The contract of the kernels that read X and W (as vec4s) from storage buffers.
VEC4_CONTRACT = """// Shape contract (all row-major, in the storage type; bias always f32):
//   x    [tokens, d_model]
//   w    [d_model, w_stride] as vec4s, w_stride = n_out rounded up to a multiple of 4, the
//        padding zero; n_out = q_width + 2 * kv_width; columns [0, q_width) are Wq,
//        [q_width, q_width + kv_width) are Wk, the rest are Wv (one GEMM for all three)
//   bias [n_out], read only when HAS_BIAS (a 1-element placeholder is bound otherwise)
//   q    [tokens, q_width], k [tokens, kv_width], v [tokens, kv_width]; with HEAD_LAYOUT,
//        q [batch, q_width / q_head_dim, seq_len, q_head_dim] and k, v [batch,
//        kv_width / kv_head_dim, seq_len, kv_head_dim], where token = batch_index * seq_len + s
"""

# ---- Variant 4: X shared through subgroup broadcasts, from storage buffers ---------------

SUBGROUP_HEADER = """// Variant 4, `subgroup`: 32 x 4 outputs per invocation in registers (32 vec4 accumulators),
// no workgroup memory, no barriers, with X shared through subgroup operations. All
// invocations of a workgroup need the same 32 X rows; instead of every invocation loading
// every X element, lanes 0..7 of each subgroup load 8 consecutive elements of each row, and
// subgroupBroadcast hands each one to every lane. Each invocation's 4 columns are adjacent
// and read as one vec4 (W rows are padded to a multiple of 4 columns). Per 8 steps of d_model
// an invocation then does 32 scalar X loads + 8 vec4 W loads for 1024 FMAs. On Mesa's
// lavapipe, where every per-invocation load is a loop over SIMD lanes but a broadcast from a
// constant lane is one register shuffle, loads are most of the cost. 32 rows measured best
// there: 8 rows gave 3.0 GFLOP/s, 16 gave 4.5, 32 gave 5.5, and 64 fell back to 4.5 (register
// spills). The block is written out in full because broadcast lanes must be constants, and so
// is the store of the results: indexing an array of the accumulators by a loop counter put
// them in memory (32 rows: 5.5 GFLOP/s that way, 7.0 written out).
// Generated by scripts/gen_kernels.py; edit that, not this file.
//
// Needs the SUBGROUP feature, a subgroup size of at least 8, and WG a multiple of 8 (the
// host never selects it otherwise).
//
""" + VEC4_CONTRACT + """// Dispatch: (ceil(n_out / (4 * WG)), ceil(tokens / 32), 1) workgroups of WG invocations;
// invocation i of workgroup (gx, gy) computes rows 32gy..32gy+31 of columns 4(WG·gx + i) + j,
// j = 0..3.
"""

SUBGROUPS_NOTE = """// Subgroup builtins need the device's SUBGROUP feature. WGSL's `enable subgroups;` directive
// belongs here, but naga (wgpu 30) rejects it as not yet implemented and accepts the
// builtins without it.

"""


def subgroup_kernel():
    rows = 32
    o = [SUBGROUP_HEADER, "\n", SUBGROUPS_NOTE]
    o.append(shared_blocks(
        [(W_BINDING, "@group(0) @binding(2) var<storage, read> w: array<vec4<f32>>;")],
        "// Invocations per workgroup, all along the output columns (tuned per adapter); a multiple\n"
        "// of 8, so that every subgroup holds lanes 0..7.\noverride WG: u32 = 64u;\n",
    ))
    o.append(entry(rows, True))
    o.append("    let w_row = params.w_stride / 4u;\n")
    o.append("    let wc = min(group, w_row - 1u);\n")
    o.append("    let last = params.tokens - 1u;\n")
    for r in range(rows):
        o.append(f"    let x{r} = min(row0 + {r}u, last) * d;\n")
    o.append("    let my_k = min(lane, 7u);\n")
    for r in range(rows):
        o.append(f"    var a{r} = vec4<f32>();\n")
    o.append("    for (var k0 = 0u; k0 < d; k0 += 8u) {\n")
    o.append("        let kx = k0 + my_k;\n")
    o.append("        let kx_ok = kx < d;\n")
    o.append("        let kxc = min(kx, d - 1u);\n")
    for r in range(rows):
        o.append(f"        let s{r} = select(0.0, x[x{r} + kxc], kx_ok);\n")
    for l in range(8):
        o.append("        {\n")
        o.append(f"            let kw = k0 + {l}u;\n")
        o.append("            let wv = select(vec4<f32>(), w[min(kw, d - 1u) * w_row + wc], kw < d);\n")
        for r in range(rows):
            o.append(f"            a{r} = fma(vec4<f32>(subgroupBroadcast(s{r}, {l}u)), wv, a{r});\n")
        o.append("        }\n")
    o.append("    }\n")
    o.append(epilogue(rows))
    return "".join(o)


# ---- Variants 5 and 6: X and W through textures ------------------------------------------

# The storage bindings of x and w become textures; the rest stays as it is.
TEXTURE_COMMON = shared_blocks(
    [(X_BINDING, "@group(0) @binding(1) var x: texture_2d<u32>;"),
     (W_BINDING, "@group(0) @binding(2) var w: texture_2d<u32>;")],
    "@@WG@@",
)

TEXTURE_CONTRACT = """//
// Shape contract (X, W as textures of 4 consecutive elements of a row per texel: rgba32uint
// holding f32 bits, or rg32uint holding four f16 or bf16; the rest as storage):
//   x    texture [ceil(d_model / 32) * 8 texels wide, tokens high]: texel (t, row) holds
//        X[row, 4t .. 4t+3], zero past d_model
//   w    texture [w_stride / 4 texels wide, ceil(d_model / 32) * 32 high]: texel (c, i)
//        holds W[i, 4c .. 4c+3] of the fused W [d_model, n_out], n_out = q_width +
//        2 * kv_width (columns [0, q_width) are Wq, then Wk, then Wv); zero past n_out and
//        past d_model. The zero padding lets the d_model loop run without bounds checks.
//   bias [n_out], read only when HAS_BIAS (a 1-element placeholder is bound otherwise)
//   q    [tokens, q_width], k [tokens, kv_width], v [tokens, kv_width]; with HEAD_LAYOUT,
//        q [batch, q_width / q_head_dim, seq_len, q_head_dim] and k, v [batch,
//        kv_width / kv_head_dim, seq_len, kv_head_dim], where token = batch_index * seq_len + s
// Dispatch: (ceil(n_out / (4 * WG)), ceil(tokens / ROWS), 1) workgroups of WG invocations;
// invocation i of workgroup (gx, gy) computes rows ROWS*gy .. ROWS*gy + ROWS-1 of columns
// 4(WG*gx + i) + j, j = 0..3.
"""

TEXTURE_HEADER = {
    "texture": """// Variant 5, `texture`: 16 x 4 outputs per invocation in registers, X and W read through
// textures (textureLoad), no workgroup memory, no barriers, no subgroups. On Mesa's lavapipe
// a storage-buffer load whose address differs per invocation becomes a loop over the SIMD
// lanes with a bounds check and a branch per lane and component, while a texel fetch is a
// branch-free gather of whole 16-byte texels; the same register block runs 5x faster this
// way than from storage buffers (direct). On GPUs texture reads go through the texture cache.
// Per 4 steps of d_model an invocation fetches 16 X texels (the same for the whole workgroup)
// and 4 W texels for 256 FMAs.
""" + TYPED_CONTRACT_NOTE + """// Generated by scripts/gen_kernels.py; edit that, not this file.
""",
    "subgroup_texture": """// Variant 6, `subgroup-texture`: 32 x 4 outputs per invocation in registers, X and W read
// through textures (textureLoad) as in `texture`, and X shared through subgroups as in
// `subgroup`: lanes 0..7 of each subgroup fetch 8 consecutive X texels (32 elements of d_model)
// of each of the 32 rows, and subgroupBroadcast from a constant lane hands every element to
// every lane. Per 32 steps of d_model an invocation fetches 32 X texels and 32 W texels for
// 4096 FMAs. Fastest on lavapipe (about 30 GFLOP/s at 1024 x 768 x 2304 on 2 AVX2 cores,
// against 5.5 for `subgroup`, which reads storage buffers); 16 and 24 rows were close
// behind (28, 29.7), 8 rows gave 24.6.
// Needs the SUBGROUP feature, a subgroup size of at least 8, and WG a multiple of 8 (the host
// never selects it otherwise).
""" + TYPED_CONTRACT_NOTE + """// Generated by scripts/gen_kernels.py; edit that, not this file.
""",
}


def epilogue(rows):
    # Written out: indexing an array of the accumulators by a loop counter would put them in
    # memory, which measured 2x slower on lavapipe.
    o = ["    var b = vec4<f32>();\n"]
    o.append("    if HAS_BIAS {\n")
    for c, comp in enumerate("xyzw"):
        o.append(f"        b.{comp} = bias[params.col0 + min(col_base + {c}u, n_out - 1u)];\n")
    o.append("    }\n")
    for r in range(rows):
        o.append(f"    if row0 + {r}u < params.tokens {{\n")
        o.append(f"        store4(row0 + {r}u, col_base, a{r} + b, n_out);\n")
        o.append("    }\n")
    o.append("}\n")
    return "".join(o)


TILE_HEADER = (
    "// The outputs one workgroup covers, {cols} columns x {rows} token rows: the host's grid\n"
    "// divides by these (the variant's module under src/kernels/variants/ says the same;\n"
    "// tests/shaders.rs checks the two agree).\n"
)


def entry(rows, subgroup):
    """The entry point of a WG-wide kernel of `rows` rows and 4 columns per invocation, up to
    its first column."""
    o = []
    o.append(TILE_HEADER.format(cols="4 WG", rows=rows))
    o.append("override TILE_COLS: u32 = 4u * WG;\n")
    o.append(f"const TILE_ROWS: u32 = {rows}u;\n\n")
    o.append("@compute @workgroup_size(WG, 1, 1)\nfn main(\n")
    o.append("    @builtin(local_invocation_id) lid: vec3<u32>,\n")
    o.append("    @builtin(workgroup_id) wid: vec3<u32>,\n")
    if subgroup:
        o.append("    @builtin(subgroup_invocation_id) lane: u32,\n")
    o.append(") {\n")
    o.append("    let d = params.d_model;\n")
    o.append("    // Columns of this W block (q_width + 2 * kv_width when the columns are not split).\n")
    o.append("    let n_out = params.n_cols;\n")
    o.append("    let row0 = wid.y * TILE_ROWS;\n")
    o.append("    let group = wid.x * WG + lid.x;\n")
    o.append("    let col_base = wid.x * TILE_COLS + lid.x * 4u;\n")
    return "".join(o)


def prologue(rows, subgroup):
    o = [entry(rows, subgroup)]
    o.append("    // Columns past the edge read the last texel column; they are never stored.\n")
    o.append("    let wc = min(group, params.w_stride / 4u - 1u);\n")
    o.append("    let last = params.tokens - 1u;\n")
    for r in range(rows):
        o.append(f"    let r{r} = min(row0 + {r}u, last);\n")
    for r in range(rows):
        o.append(f"    var a{r} = vec4<f32>();\n")
    return "".join(o)


def texture_kernel():
    rows = 16
    o = [TEXTURE_HEADER["texture"], TEXTURE_CONTRACT.replace("ROWS", "16"), "\n"]
    o.append(TEXTURE_COMMON.replace("@@WG@@", "// Invocations per workgroup, all along the output columns (tuned per adapter).\noverride WG: u32 = 32u;\n"))
    o.append(TEXEL)
    o.append(prologue(rows, False))
    o.append("    // a_r accumulates row r0 + r, columns col_base .. col_base + 3.\n")
    o.append("    for (var t = 0u; t < (d + 3u) / 4u; t++) {\n")
    for r in range(rows):
        o.append(f"        let s{r} = texel(textureLoad(x, vec2<u32>(t, r{r}), 0));\n")
    for c, comp in enumerate("xyzw"):
        o.append("        {\n")
        o.append(f"            let wv = texel(textureLoad(w, vec2<u32>(wc, 4u * t + {c}u), 0));\n")
        for r in range(rows):
            o.append(f"            a{r} = fma(vec4<f32>(s{r}.{comp}), wv, a{r});\n")
        o.append("        }\n")
    o.append("    }\n")
    o.append(epilogue(rows))
    return "".join(o)


def subgroup_texture_kernel():
    rows = 32
    o = [TEXTURE_HEADER["subgroup_texture"], TEXTURE_CONTRACT.replace("ROWS", "32"), "\n"]
    o.append(SUBGROUPS_NOTE)
    o.append(TEXTURE_COMMON.replace("@@WG@@", "// Invocations per workgroup, all along the output columns (tuned per adapter); a multiple\n// of 8, so that every subgroup holds lanes 0..7.\noverride WG: u32 = 32u;\n"))
    o.append(TEXEL)
    o.append(prologue(rows, True))
    o.append("    // Lanes 0..7 fetch X texels; wider subgroups' other lanes repeat lane 7's fetch.\n")
    o.append("    let my_t = min(lane, 7u);\n")
    o.append("    // a_r accumulates row r0 + r, columns col_base .. col_base + 3.\n")
    o.append("    for (var k0 = 0u; k0 < d; k0 += 32u) {\n")
    o.append("        let t = k0 / 4u + my_t;\n")
    for r in range(rows):
        o.append(f"        let s{r} = texel(textureLoad(x, vec2<u32>(t, r{r}), 0));\n")
    for l in range(8):
        for c, comp in enumerate("xyzw"):
            o.append("        {\n")
            o.append(f"            let wv = texel(textureLoad(w, vec2<u32>(wc, k0 + {4 * l + c}u), 0));\n")
            for r in range(rows):
                o.append(f"            a{r} = fma(vec4<f32>(subgroupBroadcast(s{r}.{comp}, {l}u)), wv, a{r});\n")
            o.append("        }\n")
    o.append("    }\n")
    o.append(epilogue(rows))
    return "".join(o)



# ---- Variant 7: workgroup tiles for GPUs -------------------------------------------------

# W is read as vec4s; the workgroup size is fixed, so WG goes.
BLOCKTILE_COMMON = shared_blocks([(X_BINDING, X_WORDS), (W_BINDING, W_WORDS)], "")

BLOCKTILE_HEADER = """// Variant 7, `blocktile`: the GPU kernel. Each workgroup of 16 x 16 invocations computes a
// 128 x 128 tile of the fused output; each invocation keeps an 8 x 8 block of it in 16 vec4
// registers. d_model is walked in steps of BK = 16: the tile's X [128 rows, 16] (transposed,
// as vec4s of 4 rows) and W [16, 128 columns] (as vec4s) are staged in workgroup memory, and
// every step of the inner loop reads 2 vec4s of X and 2 of W for 64 FMAs. While the
// workgroup computes on one step, each invocation already holds the next step's 8 X values
// and 2 W vec4s in registers (software prefetch), so global-memory latency overlaps the
// arithmetic. Global loads are coalesced: 16 neighbouring invocations read 16 consecutive X
// elements of a row, 32 read a 512-byte run of a W row. The X tile is stored with its vec4
// index XOR-swizzled by (k & 7), which spreads the transposing stores over the memory banks
// without padding (the two tiles fill exactly 16 KiB, WebGPU's default workgroup storage).
// Barriers and workgroup memory are cheap on a GPU and costly on a CPU driver; on lavapipe
// the texture kernels win instead, which is what the tuner is for.
""" + TYPED_CONTRACT_NOTE + """// Generated by scripts/gen_kernels.py; edit that, not this file.
//
""" + VEC4_CONTRACT + """// Dispatch: (ceil(n_out / 128), ceil(tokens / 128), 1) workgroups of 16 x 16 invocations.
// Invocation (tx, ty) of workgroup (gx, gy) computes rows 128 gy + 4 ty + i and
// 128 gy + 64 + 4 ty + i (i = 0..3) of columns 128 gx + 4 tx + j and 128 gx + 64 + 4 tx + j
// (j = 0..3): the two halves keep neighbouring invocations on neighbouring vec4s.

"""

SPLITK_HEADER = """// Variant 8, `splitk(splits=S)`: `blocktile` with d_model split into S ranges, for batches
// too small to fill a GPU. A batch of 64 GPT-2 tokens is 18 tiles of 128 x 128 for an H100's
// 132 compute units, each walking all 768 steps of d_model; with S ranges it is 18 S
// workgroups, each walking 768 / S. Each workgroup writes its tile's partial sums to
// `partial`; a second dispatch of the `reduce` entry point adds the S partial sums of every
// element, adds the bias and stores it. Same tile, staging, swizzle and prefetch as
// `blocktile`; the loads stop at the end of the workgroup's range.
""" + TYPED_CONTRACT_NOTE + """// Generated by scripts/gen_kernels.py; edit that, not this file.
//
// Shape contract: as `blocktile`, plus
//   partial [SPLITS, tokens, n_cols] f32 scratch (binding 7), written and read only here
// Dispatch: `main` over (ceil(n_out / 128), ceil(tokens / 128), SPLITS) workgroups of 16 x 16,
// then `reduce` over up to ceil(tokens * n_out / REDUCE_WG) workgroups of REDUCE_WG (any
// number covers every element).

"""

ROWS = ["a0.x", "a0.y", "a0.z", "a0.w", "a1.x", "a1.y", "a1.z", "a1.w"]


def blocktile_kernel(split=False):
    """Variant 7; with `split`, variant 8: the same tile over one of SPLITS ranges of d_model,
    writing partial sums that the `reduce` entry point adds up."""
    out = []
    o = out.append
    o("const BK: u32 = 16u;")
    o("")
    if split:
        o("// Workgroups along z, each summing one range of d_model (tuned per adapter).")
        o("override SPLITS: u32 = 4u;")
        o("")
        o("// Partial sums [SPLITS, tokens, n_cols], one slice per range of d_model.")
        o("@group(0) @binding(7) var<storage, read_write> partial: array<f32>;")
        o("")
    end = "end" if split else "params.d_model"
    o("// xs[k * 32 + (r4 ^ (k & 7))] = X[tile_row + 4 r4 .. + 3, k0 + k]  (r4 = 0..31)")
    o("// ws[k * 32 + c4] = W[k0 + k, tile_col + 4 c4 .. + 3]             (c4 = 0..31)")
    o("var<workgroup> xs: array<vec4<f32>, 512>;")
    o("var<workgroup> ws: array<vec4<f32>, 512>;")
    o("")
    out.append(TYPED_LOADS.rstrip("\n"))
    o("")
    if split:
        o("// X[row, i], zero past the edges of X and past the end of this range of d_model.")
        o("fn load_x(row: u32, i: u32, end: u32) -> f32 {")
    else:
        o("// X[row, i], zero past the edges of X.")
        o("fn load_x(row: u32, i: u32) -> f32 {")
    o(f"    if row < params.tokens && i < {end} {{")
    o("        return x_at(row * params.d_model + i);")
    o("    }")
    o("    return 0.0;")
    o("}")
    o("")
    if split:
        o("// W[i, 4 c4 .. 4 c4 + 3], zero past the edges of W and past the end of this range.")
        o("fn load_w(i: u32, c4: u32, end: u32) -> vec4<f32> {")
    else:
        o("// W[i, 4 c4 .. 4 c4 + 3], zero past the edges of W.")
        o("fn load_w(i: u32, c4: u32) -> vec4<f32> {")
    o("    let stride = params.w_stride / 4u;")
    o(f"    if i < {end} && c4 < stride {{")
    o("        return w4_at(i * stride + c4);")
    o("    }")
    o("    return vec4<f32>();")
    o("}")
    o("")
    if split:
        splitk_functions(o)
    else:
        blocktile_functions(o)
    main_body(o, split)
    return (SPLITK_HEADER if split else BLOCKTILE_HEADER) + BLOCKTILE_COMMON + "\n".join(out) + "\n"


def blocktile_functions(o):
    o("// Stores the four columns col .. col + 3 of `row` that exist, adding the bias.")
    o("fn emit(row: u32, col: u32, value: vec4<f32>, b: vec4<f32>) {")
    o("    if row >= params.tokens {")
    o("        return;")
    o("    }")
    o("    store4(row, col, value + b, params.n_cols);")
    o("}")
    o("")
    o("// The bias of columns col .. col + 3 (zero past n_cols).")
    o("fn bias4(col: u32) -> vec4<f32> {")
    o("    var b = vec4<f32>();")
    o("    let n = params.n_cols;")
    for j, comp in enumerate("xyzw"):
        o(f"    if col + {j}u < n {{")
        o(f"        b.{comp} = bias[params.col0 + col + {j}u];")
        o("    }")
    o("    return b;")
    o("}")
    o("")


def splitk_functions(o):
    o("// Writes the four partial sums of columns col .. col + 3 of `row` that exist.")
    o("fn emit_partial(z: u32, row: u32, col: u32, value: vec4<f32>) {")
    o("    let n = params.n_cols;")
    o("    if row >= params.tokens {")
    o("        return;")
    o("    }")
    o("    let at = (z * params.tokens + row) * n + col;")
    for j, comp in enumerate("xyzw"):
        o(f"    if col + {j}u < n {{")
        o(f"        partial[at + {j}u] = value.{comp};")
        o("    }")
    o("}")
    o("")
    o("// Second pass: each element of this W block's output is the sum of its SPLITS partial")
    o("// sums, plus the bias, stored like every kernel's. A grid-stride loop covers any size,")
    o("// with any workgroup size: the host sets REDUCE_WG to min(256, the device's limits).")
    o("override REDUCE_WG: u32 = 128u;")
    o("")
    o("@compute @workgroup_size(REDUCE_WG, 1, 1)")
    o("fn reduce(")
    o("    @builtin(global_invocation_id) gid: vec3<u32>,")
    o("    @builtin(num_workgroups) groups: vec3<u32>,")
    o(") {")
    o("    let n = params.n_cols;")
    o("    let total = params.tokens * n;")
    o("    for (var i = gid.x; i < total; i += groups.x * REDUCE_WG) {")
    o("        let row = i / n;")
    o("        let col = i - row * n;")
    o("        var sum = 0.0;")
    o("        for (var z = 0u; z < SPLITS; z++) {")
    o("            sum += partial[z * total + i];")
    o("        }")
    o("        if HAS_BIAS {")
    o("            sum += bias[params.col0 + col];")
    o("        }")
    o("        store(row, col, sum);")
    o("    }")
    o("}")
    o("")


def main_body(o, split):
    o(TILE_HEADER.format(cols=128, rows=128).rstrip("\n"))
    o("const TILE_COLS: u32 = 128u;")
    o("const TILE_ROWS: u32 = 128u;")
    o("")
    o("@compute @workgroup_size(16, 16, 1)")
    o("fn main(")
    o("    @builtin(local_invocation_id) lid: vec3<u32>,")
    o("    @builtin(workgroup_id) wid: vec3<u32>,")
    o(") {")
    o("    let tx = lid.x;")
    o("    let ty = lid.y;")
    o("    let t = ty * 16u + tx;")
    o("    let d = params.d_model;")
    o("    let tile_row = wid.y * TILE_ROWS;")
    o("    let tile_col = wid.x * TILE_COLS;")
    if split:
        o("    // This workgroup's range of d_model: a multiple of BK, the last one shorter.")
        o("    let per = (d + SPLITS * BK - 1u) / (SPLITS * BK) * BK;")
        o("    let k_begin = min(wid.z * per, d);")
        o("    let end = min(k_begin + per, d);")
    o("    // Staging: invocation t loads X[tile_row + lr + 16 i, k0 + lk] (i = 0..7) and")
    o("    // W[k0 + wk + 8 i, tile_col + 4 wc ..] (i = 0..1).")
    o("    let lr = t >> 4u;")
    o("    let lk = t & 15u;")
    o("    let wk = t >> 5u;")
    o("    let wc = tile_col / 4u + (t & 31u);")
    o("    // Where this invocation's X values go in xs: vec4 (lr / 4 + 4 i) of row lk, swizzled.")
    o("    let xs_base = lk * 32u;")
    o("    let xs_swz = lk & 7u;")
    o("    let xs_lane = lr & 3u;")
    o("    let xs_r4 = lr >> 2u;")
    k0 = "k_begin + " if split else ""
    e = ", end" if split else ""
    for i in range(8):
        o(f"    var p{i} = load_x(tile_row + lr + {16 * i}u, {k0}lk{e});")
    for i in range(2):
        o(f"    var pw{i} = load_w({k0}wk + {8 * i}u, wc{e});")
    for r in range(8):
        for c in range(2):
            o(f"    var acc{r}{c} = vec4<f32>();")
    if split:
        o("    for (var k0 = k_begin; k0 < end; k0 += BK) {")
    else:
        o("    for (var k0 = 0u; k0 < d; k0 += BK) {")
    o("        // Everyone is done reading the previous step's tiles.")
    o("        workgroupBarrier();")
    for i in range(8):
        o(f"        xs[xs_base + ((xs_r4 + {4 * i}u) ^ xs_swz)][xs_lane] = p{i};")
    for i in range(2):
        o(f"        ws[(wk + {8 * i}u) * 32u + (t & 31u)] = pw{i};")
    o("        workgroupBarrier();")
    o("        // Prefetch the next step while this one is computed (zero past d_model).")
    o("        let kn = k0 + BK;")
    for i in range(8):
        o(f"        p{i} = load_x(tile_row + lr + {16 * i}u, kn + lk{e});")
    for i in range(2):
        o(f"        pw{i} = load_w(kn + wk + {8 * i}u, wc{e});")
    o("        for (var kk = 0u; kk < BK; kk++) {")
    o("            let s = kk & 7u;")
    o("            let a0 = xs[kk * 32u + (ty ^ s)];")
    o("            let a1 = xs[kk * 32u + ((ty + 16u) ^ s)];")
    o("            let b0 = ws[kk * 32u + tx];")
    o("            let b1 = ws[kk * 32u + tx + 16u];")
    for r, a in enumerate(ROWS):
        for c in range(2):
            o(f"            acc{r}{c} = fma(vec4<f32>({a}), b{c}, acc{r}{c});")
    o("        }")
    o("    }")
    o("    let cb = tile_col + 4u * tx;")
    if split:
        o("    let rb = tile_row + 4u * ty;")
        for r in range(8):
            row = f"rb + {r}u" if r < 4 else f"rb + {64 + r - 4}u"
            o(f"    emit_partial(wid.z, {row}, cb, acc{r}0);")
            o(f"    emit_partial(wid.z, {row}, cb + 64u, acc{r}1);")
        o("}")
        return
    o("    var b0 = vec4<f32>();")
    o("    var b1 = vec4<f32>();")
    o("    if HAS_BIAS {")
    o("        b0 = bias4(cb);")
    o("        b1 = bias4(cb + 64u);")
    o("    }")
    o("    let rb = tile_row + 4u * ty;")
    for r in range(8):
        row = f"rb + {r}u" if r < 4 else f"rb + {64 + r - 4}u"
        o(f"    emit({row}, cb, acc{r}0, b0);")
        o(f"    emit({row}, cb + 64u, acc{r}1, b1);")
    o("}")


# Variant 9, `coopmat`: cooperative matrices (tensor cores), one source per (tile,
# accumulator, fragments per subgroup); the block shape, d_model step and stages are override
# constants the host sets (KernelSpec), so one file serves every block the tuner tries.
COOPMAT_WG = """// Invocations per workgroup: SM x SN subgroups (the host sets it to that many times the
// device's subgroup size).
override WG: u32 = 256u;
"""
COOPMAT_COMMON = shared_blocks(
    [
        (X_BINDING, "// X [tokens, KS] and W transposed, [n_cols, KS], as f16 (the bytes of the host's 16-bit\n"
                    "// patterns), read 16 bytes (two vec4<f16>) at a time.\n"
                    "@group(0) @binding(1) var<storage, read> x: array<vec4<f16>>;"),
        (W_BINDING, "@group(0) @binding(2) var<storage, read> w: array<vec4<f16>>;"),
    ],
    COOPMAT_WG,
)
# Fragment grids per subgroup (rows x columns of T x T accumulators) with a source each.
COOPMAT_FRAGMENTS = [(4, 2), (4, 4)]
# Most 16-byte pieces of X (or of W) one invocation stages per step; the host refuses a block
# that needs more (KernelSpec::unsupported_on).
COOPMAT_MAX_PIECES = 8


def coopmat_kernel(t, acc, fm, fn_):
    """The cooperative-matrix kernel on t x t x t matrices (8 or 16) with an `acc` (f32 or f16)
    accumulator, each subgroup owning fm x fn_ accumulator matrices."""
    mat = f"coop_mat{t}x{t}"
    lines = []
    o = lines.append
    o(f"""// Variant 9, `coopmat`: the fused GEMM on cooperative matrices (tensor cores where the GPU
// has them), {t} x {t} x {t} matrices, f16 inputs, {acc} accumulator, each subgroup owning
// {fm} x {fn_} accumulator matrices ({fm * t} x {fn_ * t} outputs) of a BM x BN block of SM x SN subgroups.
// The layout follows CUTLASS's multistage GEMMs and llama.cpp's Vulkan cooperative-matrix
// matmul:
// - X [tokens, KS] and W^T [n_cols, KS] (W transposed once at upload, so both operands are
//   rows along d_model) are read 16 bytes per invocation per piece, coalesced; KS is d_model
//   rounded up to 8, zero-padded by the host, so no piece straddles a row.
// - Each step of BK along d_model is staged in workgroup memory as rows of BK f16 padded to
//   XS = BK + 8 (16 bytes), so the 8 rows of a matrix load start in different banks.
// - With STAGES = 2 the next step's pieces are loaded into registers before this step's
//   matrices are multiplied and stored into the other buffer after: one barrier per step.
//   STAGES = 1 uses one buffer and two barriers per step (less workgroup memory).
// - A matrices load row-major from X's rows (coopLoadT), B matrices column-major from W^T's
//   rows (coopLoad): neither is transposed on the way.
// - No division or modulo in any loop: power-of-two sizes with their log2 from the host.
// - The epilogue stores one accumulator matrix per subgroup at a time to workgroup memory;
//   each invocation then adds the bias in f32 to 8 consecutive columns of one row, rounds
//   them to the storage type and writes them (16 bytes in a half type) through the shared
//   `store4` (Q/K/V routing, the head layout).
// Rows past the chunk's tokens, columns past the block's and d_model past KS are staged as
// zeros, so no shape needs to be a multiple of any tile.""")
    if acc == "f16":
        o("""// The accumulator is f16: offered alone by some adapters, it is used only when asked for by
// name, with a tolerance for f16 accumulation (the results are rounded at every step).""")
    o(f"""// Generated by scripts/gen_kernels.py; edit that, not this file.
//
// Shape contract: X is [tokens, KS] and W^T [n_cols, KS], f16, with KS = params.w_stride (a
// multiple of 8, >= d_model, zeros past d_model); Q, K, V are in the storage type ELEM as for
// `direct`. Dispatch: (ceil(n_cols / BN), ceil(tokens / BM), 1) workgroups of WG = SM x SN
// subgroups. Needs SHADER_F16, subgroups, one subgroup size, and
// EXPERIMENTAL_COOPERATIVE_MATRIX with {t}x{t}x{t} f16 -> {acc}.

enable f16;
enable wgpu_cooperative_matrix;

""")
    o(COOPMAT_COMMON)
    o(f"""const T: u32 = {t}u;
const T_LOG2: u32 = {t.bit_length() - 1}u;
// Accumulator matrices per subgroup: FM along rows, FN along columns.
const FM: u32 = {fm}u;
const FN: u32 = {fn_}u;

// The block, set by the host (KernelSpec::constants): SM x SN subgroups, a step of BK
// (16, 32 or 64, a multiple of T) along d_model, STAGES (1 or 2) staged steps.
override SM: u32 = 2u;
override SN: u32 = 4u;
override BK: u32 = 32u;
override BK_LOG2: u32 = 5u;
override STAGES: u32 = 2u;
// What follows from them.
override BM: u32 = SM * FM * T;
override BN: u32 = SN * FN * T;
// Row stride of a staged row, in f16: BK and 16 bytes of padding.
override XS: u32 = BK + 8u;
// One staged step: BM rows of X, then BN rows of W^T.
override SLAB: u32 = (BM + BN) * XS;
override TILES_LEN: u32 = STAGES * SLAB;
// 16-byte pieces per staged row (BK / 8), and per step of X and of W^T.
override KC_LOG2: u32 = BK_LOG2 - 3u;
override KC_MASK: u32 = (1u << KC_LOG2) - 1u;
override X_PIECES: u32 = BM << KC_LOG2;
override W_PIECES: u32 = BN << KC_LOG2;
// Pieces per invocation (at most {COOPMAT_MAX_PIECES}, which the host checks).
override XP: u32 = (X_PIECES + WG - 1u) / WG;
override WP: u32 = (W_PIECES + WG - 1u) / WG;
// One accumulator matrix per subgroup, for the epilogue.
override CS_LEN: u32 = SM * SN * T * T;

var<workgroup> tiles: array<f16, TILES_LEN>;
var<workgroup> cs: array<{acc}, CS_LEN>;
""")
    P = COOPMAT_MAX_PIECES

    def fetch(indent):
        out = []
        for op, pieces, per, bound, first in (
            ("x", "X_PIECES", "XP", "params.tokens", "row0"),
            ("w", "W_PIECES", "WP", "params.n_cols", "col0"),
        ):
            for j in range(P):
                out.append(f"""if {j}u < {per} {{
    let p = lid + {j}u * WG;
    let gr = {first} + (p >> KC_LOG2);
    let gk = k + ((p & KC_MASK) << 3u);
    {op}a{j} = vec4<f16>();
    {op}b{j} = vec4<f16>();
    if p < {pieces} && gr < {bound} && gk < ks {{
        let i = (gr * ks + gk) >> 2u;
        {op}a{j} = {op}[i];
        {op}b{j} = {op}[i + 1u];
    }}
}}""")
        return "\n".join(indent + l if l else l for block in out for l in block.split("\n"))

    def put(indent):
        out = []
        for op, pieces, per, offset in (
            ("x", "X_PIECES", "XP", "0u"),
            ("w", "W_PIECES", "WP", "BM"),
        ):
            for j in range(P):
                stores = "\n".join(
                    f"        tiles[o + {e}u] = {op}{'a' if e < 4 else 'b'}{j}.{'xyzw'[e % 4]};"
                    for e in range(8)
                )
                out.append(f"""if {j}u < {per} {{
    let p = lid + {j}u * WG;
    if p < {pieces} {{
        let o = base + ({offset} + (p >> KC_LOG2)) * XS + ((p & KC_MASK) << 3u);
{stores}
    }}
}}""")
        return "\n".join(indent + l if l else l for block in out for l in block.split("\n"))

    o(TILE_HEADER.format(cols="BN", rows="BM") + """override TILE_COLS: u32 = BN;
override TILE_ROWS: u32 = BM;
""")
    o(f"""@compute @workgroup_size(WG, 1, 1)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(subgroup_id) sg: u32,
    @builtin(num_subgroups) nsg: u32,
    @builtin(subgroup_invocation_id) lane: u32,
    @builtin(subgroup_size) sgs: u32,
) {{
    let ks = params.w_stride;
    let row0 = wid.y * TILE_ROWS;
    let col0 = wid.x * TILE_COLS;
    // This subgroup's FM x FN matrices: rows ar.., columns bc.. of the block. A driver that
    // ran more subgroups than SM x SN would have sg past them: clamped, every index stays in
    // bounds (the outputs are NaN then, below).
    let sgc = min(sg, SM * SN - 1u);
    let ar = (sgc / SN) * FM * T;
    let bc = (sgc % SN) * FN * T;""")
    for r in range(fm):
        for c in range(fn_):
            o(f"    var c{r}{c} = {mat}<{acc}, C>();")
    o("""    // Step 0 into buffer 0.
    var base = 0u;
    fetch_step(lid, row0, col0, 0u, ks);
    stage_step(lid, base);
    workgroupBarrier();
    for (var k0 = 0u; k0 < ks; k0 += BK) {
        let more = k0 + BK < ks;
        // The next step's loads, issued before this step's multiplies.
        if STAGES == 2u && more {
            fetch_step(lid, row0, col0, k0 + BK, ks);
        }
        let cur = base;
        for (var kk = 0u; kk < BK; kk += T) {""")
    for r in range(fm):
        o(f"            let a{r} = coopLoadT<{mat}<f16, A>>(&tiles[cur + (ar + {r}u * T) * XS + kk], XS);")
    for c in range(fn_):
        o(f"            let b{c} = coopLoad<{mat}<f16, B>>(&tiles[cur + (BM + bc + {c}u * T) * XS + kk], XS);")
    for r in range(fm):
        for c in range(fn_):
            o(f"            c{r}{c} = coopMultiplyAdd(a{r}, b{c}, c{r}{c});")
    o("""        }
        if STAGES == 2u {
            // Into the other buffer, which everyone finished reading before the last barrier.
            base = SLAB - base;
            if more {
                stage_step(lid, base);
            }
            workgroupBarrier();
        } else {
            // Everyone is done with this step's tiles before the next are staged.
            workgroupBarrier();
            if more {
                fetch_step(lid, row0, col0, k0 + BK, ks);
                stage_step(lid, base);
            }
            workgroupBarrier();
        }
    }
    // Unless the workgroup ran as SM x SN subgroups, every element is NaN: a driver that chose
    // other subgroups leaves matrices uncomputed, and that must fail the check, not pass.
    let whole = nsg == SM * SN;""")
    for r in range(fm):
        for c in range(fn_):
            o(f"""    coopStoreT(c{r}{c}, &cs[sgc * T * T], T);
    workgroupBarrier();
    emit(sgc, lane, sgs, row0 + ar + {r}u * T, col0 + bc + {c}u * T, whole);
    workgroupBarrier();""")
    o("}")
    o("""
// This invocation's pieces of the next step, in registers while the current step multiplies:
// piece j is 16 bytes, (a, b), of X (x..) or W^T (w..).""")
    for op in "xw":
        for j in range(P):
            o(f"var<private> {op}a{j}: vec4<f16>;")
            o(f"var<private> {op}b{j}: vec4<f16>;")
    o("""
// Loads this invocation's pieces of the step at `k` along d_model: piece p of X is row
// row0 + p / (BK / 8), columns k + 8 (p % (BK / 8)) .. + 8; of W^T likewise from column col0
// of the block. Zeros past the chunk's tokens, the block's columns and KS.
fn fetch_step(lid: u32, row0: u32, col0: u32, k: u32, ks: u32) {""")
    o(fetch("    "))
    o("""}

// Stores this invocation's pieces into the staging buffer at `base` (X's rows, then W^T's).
fn stage_step(lid: u32, base: u32) {""")
    o(put("    "))
    o("""}""")
    o("""
// Writes out the accumulator matrix subgroup `sg` stored in cs[sg T^2 ..], whose element
// (r, c) is output (row + r, col + c) of the bound columns: each invocation 8 consecutive
// columns of one row at a time, the bias added in f32, rows past the chunk and columns past
// the block skipped (store4), NaN unless `whole`. Every index is in bounds for sg < SM x SN
// and any subgroup size (tests/unchecked.rs).
fn emit(sg: u32, lane: u32, sgs: u32, row: u32, col: u32, whole: bool) {
    for (var e = lane * 8u; e < T * T; e += sgs * 8u) {
        let gr = row + (e >> T_LOG2);
        let gc = col + (e & (T - 1u));
        let i = sg * T * T + e;
        if gr < params.tokens {
            var lo = vec4<f32>(f32(cs[i]), f32(cs[i + 1u]), f32(cs[i + 2u]), f32(cs[i + 3u]));
            var hi = vec4<f32>(f32(cs[i + 4u]), f32(cs[i + 5u]), f32(cs[i + 6u]), f32(cs[i + 7u]));
            if HAS_BIAS {
                let b = params.col0 + gc;
                lo += vec4<f32>(bias_at(b), bias_at(b + 1u), bias_at(b + 2u), bias_at(b + 3u));
                hi += vec4<f32>(bias_at(b + 4u), bias_at(b + 5u), bias_at(b + 6u), bias_at(b + 7u));
            }
            if !whole {
                lo = vec4<f32>(bitcast<f32>(0x7fc00000u));
                hi = lo;
            }
            store4(gr, gc, lo, params.n_cols);
            store4(gr, gc + 4u, hi, params.n_cols);
        }
    }
}

// The bias of fused column `c`, 0 past the last (a block's last columns may be past n_out).
fn bias_at(c: u32) -> f32 {
    if c < params.q_width + 2u * params.kv_width {
        return bias[c];
    }
    return 0.0;
}
""")
    return "\n".join(lines)


COOPMAT_SOURCES = [
    (f"qkv_coopmat{t}_{acc}_{fm}x{fn_}.wgsl", t, acc, fm, fn_)
    for t in (8, 16)
    for acc in ("f32", "f16")
    for fm, fn_ in COOPMAT_FRAGMENTS
]


# `qkv peak`'s cooperative-matrix rate, one source per (tile, accumulator).
PEAK_ACCUMULATORS = 16


def peak_coopmat(t, acc):
    """The multiply-add rate of t x t x t cooperative matrices with an `acc` accumulator."""
    mat = f"coop_mat{t}x{t}"
    n = PEAK_ACCUMULATORS
    # Elements per 16 bytes.
    step = 4 if acc == "f32" else 8
    lines = []
    o = lines.append
    o(f"""// `qkv peak`: the multiply-add rate of {t} x {t} x {t} cooperative matrices, f16 inputs, {acc}
// accumulator, through WGSL. Each subgroup keeps A, B and {n} accumulators in registers and runs
// {n} independent chains of coopMultiplyAdd, ITERS long: no memory traffic in the loop, and
// enough independent multiply-adds to hide their latency (a 2026 probe on an H200 measured 4
// accumulators 7% slower than 8, and 16 a little faster still).
// Generated by scripts/gen_kernels.py; edit that, not this file.
//
// Contract: data[0] is never 1 (the host leaves it 0): the stores below never run, but the
// compiler cannot know that, so it cannot drop the chains.
// Dispatch: any number of workgroups of WG invocations (whole subgroups);
// flops = 2 x {t}^3 x {n} x ITERS per subgroup.

enable f16;
enable wgpu_cooperative_matrix;

override WG: u32 = 128u;
override ITERS: u32 = 256u;
const T: u32 = {t}u;

@group(0) @binding(0) var<storage, read_write> data: array<u32>;
@group(0) @binding(1) var<storage, read_write> sink: array<{acc}>;

var<workgroup> ab: array<f16, {t * t}>;
// The accumulators start at offsets 16 bytes apart (a cooperative load's pointer must be
// 16-byte aligned), so no two chains are the same expression.
var<workgroup> init: array<{acc}, {t * t + step * n}>;

@compute @workgroup_size(WG, 1, 1)
fn main(@builtin(local_invocation_index) lid: u32) {{
    // Small values (multiples of 2^-10 up to 15/1024): the f16 accumulator grows slowly.
    for (var i = lid; i < T * T; i += WG) {{
        ab[i] = f16(f32(i & 15u) * 0.0009765625);
    }}
    for (var i = lid; i < T * T + {step * n}u; i += WG) {{
        init[i] = {acc}(f32(i & 7u) * 0.0009765625);
    }}
    workgroupBarrier();
    let a = coopLoadT<{mat}<f16, A>>(&ab[0], T);
    let b = coopLoadT<{mat}<f16, B>>(&ab[0], T);""")
    for i in range(n):
        o(f"    var c{i} = coopLoadT<{mat}<{acc}, C>>(&init[{step * i}u], T);")
    o("    for (var i = 0u; i < ITERS; i++) {")
    for i in range(n):
        o(f"        c{i} = coopMultiplyAdd(a, b, c{i});")
    o("    }")
    o("    if data[0] == 1u {")
    for i in range(n):
        o(f"        coopStoreT(c{i}, &sink[{i}u * T * T], T);")
    o("    }")
    o("}")
    return "\n".join(lines) + "\n"


PEAK_SOURCES = [(f"peak_coopmat{t}_{acc}.wgsl", t, acc) for t in (8, 16) for acc in ("f32", "f16")]


if __name__ == "__main__":
    import sys

    check = sys.argv[1:] == ["--check"]
    stale = []
    for name, text in [
        ("qkv_subgroup.wgsl", subgroup_kernel()),
        ("qkv_texture.wgsl", texture_kernel()),
        ("qkv_subgroup_texture.wgsl", subgroup_texture_kernel()),
        ("qkv_blocktile.wgsl", blocktile_kernel()),
        ("qkv_splitk.wgsl", blocktile_kernel(split=True)),
    ] + [(name, coopmat_kernel(t, acc, fm, fn_)) for name, t, acc, fm, fn_ in COOPMAT_SOURCES] + [
        (name, peak_coopmat(t, acc)) for name, t, acc in PEAK_SOURCES
    ]:
        path = ROOT / "shaders" / name
        if check:
            if path.read_text() != text:
                stale.append(f"shaders/{name}")
        else:
            path.write_text(text)
            print(f"wrote shaders/{name}")
    if stale:
        sys.exit(f"{', '.join(stale)}: not what scripts/gen_kernels.py generates; run it")
