#!/usr/bin/env python3
"""Writes the generated kernels: shaders/qkv_subgroup.wgsl, shaders/qkv_texture.wgsl,
shaders/qkv_subgroup_texture.wgsl, shaders/qkv_blocktile.wgsl, shaders/qkv_splitk.wgsl and
the cooperative-matrix kernels shaders/qkv_coopmat{8,16}_{f32,f16}.wgsl.

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
SHARED = _direct[_direct.index("struct Params {"):_direct.index("@compute")]
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


def entry(rows, subgroup):
    """The entry point of a WG-wide kernel of `rows` rows and 4 columns per invocation, up to
    its first column."""
    o = []
    o.append("@compute @workgroup_size(WG, 1, 1)\nfn main(\n")
    o.append("    @builtin(local_invocation_id) lid: vec3<u32>,\n")
    o.append("    @builtin(workgroup_id) wid: vec3<u32>,\n")
    if subgroup:
        o.append("    @builtin(subgroup_invocation_id) lane: u32,\n")
    o.append(") {\n")
    o.append("    let d = params.d_model;\n")
    o.append("    // Columns of this W block (q_width + 2 * kv_width when the columns are not split).\n")
    o.append("    let n_out = params.n_cols;\n")
    o.append(f"    let row0 = wid.y * {rows}u;\n")
    o.append("    let group = wid.x * WG + lid.x;\n")
    o.append("    let col_base = group * 4u;\n")
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
    o("@compute @workgroup_size(16, 16, 1)")
    o("fn main(")
    o("    @builtin(local_invocation_id) lid: vec3<u32>,")
    o("    @builtin(workgroup_id) wid: vec3<u32>,")
    o(") {")
    o("    let tx = lid.x;")
    o("    let ty = lid.y;")
    o("    let t = ty * 16u + tx;")
    o("    let d = params.d_model;")
    o("    let tile_row = wid.y * 128u;")
    o("    let tile_col = wid.x * 128u;")
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


# Variant 9, `coopmat`: cooperative matrices (tensor cores), one source per (tile, accumulator).
COOPMAT_WG = """// Invocations per workgroup: four subgroups (the host sets it to 4 x the subgroup size).
override WG: u32 = 32u;
"""
COOPMAT_COMMON = shared_blocks(
    [
        (X_BINDING, "// X and W as f16 (the bytes of the host's 16-bit patterns, as for ELEM = 1).\n"
                    "@group(0) @binding(1) var<storage, read> x: array<f16>;"),
        (W_BINDING, "@group(0) @binding(2) var<storage, read> w: array<vec2<f16>>;"),
    ],
    COOPMAT_WG,
)


def coopmat_kernel(t, acc):
    """The cooperative-matrix kernel on t x t x t tiles (8 or 16) with an `acc` (f32 or f16)
    accumulator."""
    mat = f"coop_mat{t}x{t}"
    bm, bk = 4 * t, 2 * t
    lines = []
    o = lines.append
    o(f"""// Variant 9, `coopmat`: the fused GEMM on cooperative matrices (tensor cores where the GPU
// has them), {t} x {t} x {t} tiles, f16 inputs, {acc} accumulator. Four subgroups per workgroup
// share a {bm} x {bm} block of the fused output, each owning a {2 * t} x {2 * t} quarter as 2 x 2
// accumulator matrices. d_model is walked in steps of BK = {bk}: every invocation helps stage
// the block's X [{bm} rows, {bk}] and W [{bk}, {bm} columns] as f16 in workgroup memory, zero past
// the last token, column and d_model (so no shape needs to be a multiple of a tile), and each
// subgroup multiplies its matrices from there (coopLoadT: row-major). The epilogue stores each
// accumulator matrix to workgroup memory and the whole workgroup writes it out through the
// shared `store` (bias, Q/K/V routing, the head layout, the final rounding to ELEM).""")
    if acc == "f16":
        o("""// The accumulator is f16: offered alone by some adapters, it is used only when asked for by
// name, with a tolerance for f16 accumulation (the results are rounded at every step).""")
    o(f"""// Generated by scripts/gen_kernels.py; edit that, not this file.
//
// X and W are f16 on the GPU (the host converts other types on upload, refusing values past
// f16's range); Q, K, V are in the storage type ELEM. Shape contract as for `direct`, with W's
// row stride (w_stride) even, so that a pair of columns is one word.
// Dispatch: (ceil(n_cols / {bm}), ceil(tokens / {bm}), 1) workgroups of WG = 4 subgroups.
// Needs SHADER_F16, subgroups and EXPERIMENTAL_COOPERATIVE_MATRIX with {t}x{t}x{t} f16 -> {acc}.

enable f16;
enable wgpu_cooperative_matrix;

""")
    o(COOPMAT_COMMON)
    o(f"""const T: u32 = {t}u;
const BM: u32 = {bm}u;
const BK: u32 = {bk}u;

var<workgroup> xs: array<f16, {bm * bk}>;
var<workgroup> ws: array<f16, {bk * bm}>;
// One accumulator matrix per subgroup at a time, for the epilogue.
var<workgroup> cs: array<{acc}, {4 * t * t}>;

@compute @workgroup_size(WG, 1, 1)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(subgroup_id) sg: u32,
    @builtin(num_subgroups) nsg: u32,
) {{
    let d = params.d_model;
    let row0 = wid.y * BM;
    let col0 = wid.x * BM;
    // This subgroup's quarter of the block.
    let sr = (sg >> 1u) * 2u * T;
    let sc = (sg & 1u) * 2u * T;""")
    for r in range(2):
        for c in range(2):
            o(f"    var c{r}{c} = {mat}<{acc}, C>();")
    o(f"""    for (var k0 = 0u; k0 < d; k0 += BK) {{
        for (var i = lid; i < BM * BK; i += WG) {{
            let r = i / BK;
            let gr = row0 + r;
            let gk = k0 + i - r * BK;
            var value = f16(0.0);
            if gr < params.tokens && gk < d {{
                value = x[gr * d + gk];
            }}
            xs[i] = value;
        }}
        // W a word (two columns) at a time; the padding columns up to w_stride are zeros.
        for (var i = lid; i < BK * BM / 2u; i += WG) {{
            let kk = i / (BM / 2u);
            let c = (i - kk * (BM / 2u)) * 2u;
            let gk = k0 + kk;
            let gc = col0 + c;
            var pair = vec2<f16>(f16(0.0), f16(0.0));
            if gk < d && gc < params.w_stride {{
                pair = w[(gk * params.w_stride + gc) >> 1u];
            }}
            ws[kk * BM + c] = pair.x;
            ws[kk * BM + c + 1u] = pair.y;
        }}
        workgroupBarrier();""")
    for s_ in range(2):
        o(f"        let a{s_}0 = coopLoadT<{mat}<f16, A>>(&xs[sr * BK + {s_ * t}u], BK);")
        o(f"        let a{s_}1 = coopLoadT<{mat}<f16, A>>(&xs[(sr + T) * BK + {s_ * t}u], BK);")
        o(f"        let b{s_}0 = coopLoadT<{mat}<f16, B>>(&ws[{s_ * t}u * BM + sc], BM);")
        o(f"        let b{s_}1 = coopLoadT<{mat}<f16, B>>(&ws[{s_ * t}u * BM + sc + T], BM);")
        for r in range(2):
            for c in range(2):
                o(f"        c{r}{c} = coopMultiplyAdd(a{s_}{r}, b{s_}{c}, c{r}{c});")
    o("""        // Everyone is done with this step's tiles before the next are staged.
        workgroupBarrier();
    }""")
    for r in range(2):
        for c in range(2):
            o(f"""    // Accumulator ({r}, {c}) of every subgroup: rows sr + {r}T.., columns sc + {c}T.. of the block.
    coopStoreT(c{r}{c}, &cs[sg * T * T], T);
    workgroupBarrier();
    emit(lid, row0 + {r}u * T, col0 + {c}u * T, nsg == 4u);
    workgroupBarrier();""")
    o("}")
    o("""
// Writes out the accumulator matrix each subgroup s stored in cs[s T^2 ..]: its element (r, c)
// is output (row + sr(s) + r, col + sc(s) + c), written where inside the bound columns. Unless
// the workgroup ran as four subgroups (`whole`), every element is NaN: a driver that chose
// other subgroups leaves quarters uncomputed, and that must fail the check, not pass as zeros.
fn emit(lid: u32, row: u32, col: u32, whole: bool) {
    for (var i = lid; i < 4u * T * T; i += WG) {
        let s = i / (T * T);
        let e = i - s * T * T;
        let r = e / T;
        let gr = row + (s >> 1u) * 2u * T + r;
        let gc = col + (s & 1u) * 2u * T + e - r * T;
        if gr < params.tokens && gc < params.n_cols {
            var value = f32(cs[i]);
            if HAS_BIAS {
                value += bias[params.col0 + gc];
            }
            if !whole {
                value = bitcast<f32>(0x7fc00000u);
            }
            store(gr, gc, value);
        }
    }
}
""")
    return "\n".join(lines)


COOPMAT_SOURCES = [(f"qkv_coopmat{t}_{acc}.wgsl", t, acc) for t in (8, 16) for acc in ("f32", "f16")]


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
    ] + [(name, coopmat_kernel(t, acc)) for name, t, acc in COOPMAT_SOURCES]:
        path = ROOT / "shaders" / name
        if check:
            if path.read_text() != text:
                stale.append(f"shaders/{name}")
        else:
            path.write_text(text)
            print(f"wrote shaders/{name}")
    if stale:
        sys.exit(f"{', '.join(stale)}: not what scripts/gen_kernels.py generates; run it")
