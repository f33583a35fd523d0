#!/usr/bin/env bash
# One command that buys a full measurement on a GPU machine available for a few minutes: the adapter, its
# measured peak (`qkv peak`), the coopmat block sweep (checked, then unchecked), what the
# tuner picks for f16, every kernel in every type, quantized decode (f32, Q8_0, Q4_0, Q4_K at
# one and eight tokens), the 400,000-token batch end to end (streamed
# and not, f32 and bf16, generated and file to file; with RoPE after blocktile, fused and as
# a pass), and cuBLAS on the same shapes where
# PyTorch with CUDA is installed. It uses a binary built beforehand (nothing is compiled
# here) and leaves each step's JSON and log, and a summary table (summary.md), in OUT_DIR.
#
#   cargo build --release                       # on the machine you build on
#   bash scripts/gpu_measure.sh [OUT_DIR]       # on the GPU machine, from the repository root
#
# Environment: QKV (the binary; default target/release/qkv), QKV_MEASURE_QUICK=1 (tiny
# shapes: a dry run of the script on any adapter, lavapipe included). Every step has a time
# limit and the script goes on past a failed step, so ten minutes always leave results. Where
# no Vulkan loader is installed it unpacks a Vulkan loader package brought along as .gl/*.deb
# (Debian's libvulkan1) and points Vulkan at NVIDIA's driver files where they are.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-${OUT:-gpu-measure}}"
qkv="${QKV:-target/release/qkv}"
mkdir -p "$out"
say() { printf 'gpu_measure: %s\n' "$*" | tee -a "$out/steps.log" >&2; }

if [ ! -x "$qkv" ]; then
    say "no binary at $qkv: build it first (cargo build --release) or set QKV"
    exit 2
fi
if ! ldconfig -p 2>/dev/null | grep 'libvulkan\.so\.1' >/dev/null; then
    if compgen -G ".gl/*.deb" >/dev/null; then
        say "no Vulkan loader: unpacking .gl/*.deb"
        for f in .gl/*.deb; do dpkg -x "$f" /; done
        ldconfig
    else
        say "no Vulkan loader and no .gl/*.deb to unpack: Vulkan adapters will be missing"
    fi
fi
nv=/usr/local/nvidia/share
if [ -z "${VK_DRIVER_FILES:-}" ] && [ -e "$nv/vulkan/icd.d/nvidia_icd.json" ]; then
    export VK_DRIVER_FILES="$nv/vulkan/icd.d/nvidia_icd.json"
    export __EGL_VENDOR_LIBRARY_FILENAMES="$nv/glvnd/egl_vendor.d/10_nvidia.json"
fi
# A cache of this run's own: the peak and the tuner's choices measured here, nowhere else.
export QKV_CACHE_DIR="$out/cache"
export NODEVICE_SELECT="${NODEVICE_SELECT:-1}"

if [ -n "${QKV_MEASURE_QUICK:-}" ]; then
    shapes=(--d-model 256 --q-width 256 --kv-width 128 --bias)
    tokens=64,200
    big=200
    repeats=2
else
    shapes=(--shape gpt2,llama3-8b)
    tokens=1024,4096,16384
    big=4096
    repeats=5
fi
blocks="coopmat(tile=16);coopmat(tile=16,wn=64);coopmat(tile=16,wn=64,bn=256);\
coopmat(tile=16,wn=64,bm=256);coopmat(tile=16,wn=64,bn=256,stages=1);coopmat(tile=16,bk=64,stages=1)"
# Where the adapter offers 8x8 matrices only (lavapipe, Apple), the same blocks at 8x8.
if [ -n "${QKV_MEASURE_QUICK:-}" ]; then
    blocks="coopmat;coopmat(tile=8,wn=16);coopmat(tile=8,stages=2)"
fi

# step NAME SECONDS COMMAND...: stdout to NAME.json, stderr to NAME.log.
step() {
    local name=$1 limit=$2
    shift 2
    say "$name: $* (at most ${limit}s)"
    local start=$SECONDS
    timeout --kill-after=10 "$limit" "$@" >"$out/$name.json" 2>"$out/$name.log"
    local rc=$?
    say "$name: exit $rc after $((SECONDS - start))s"
}
bench=(bench "${shapes[@]}" --no-cpu --check-rows 256 --json)

step adapters 60 "$qkv" adapters --json
step peak 180 "$qkv" peak --refresh --json
step coopmat_sweep 300 "$qkv" "${bench[@]}" --tokens "$tokens" --dtype f16 --kernel "$blocks" \
    --repeats "$repeats"
step coopmat_unchecked 180 "$qkv" --unchecked "${bench[@]}" --tokens "$big" --dtype f16 \
    --kernel "$blocks" --repeats "$repeats"
step tuned_f16 240 "$qkv" "${bench[@]}" --tokens "$big" --dtype f16 --kernel auto --tune \
    --repeats "$repeats"
step all_kernels 300 "$qkv" "${bench[@]}" --tokens "$big" --dtype f32,f16,bf16 --kernel all \
    --repeats 3
# Issue #34: the decode kernel at one and eight tokens on Llama-3-8B's Q/K/V, W in f32 and in
# the block formats users hold, read from a storage buffer and as texels, against the peak's
# bandwidth by bytes actually read (the rows carry W's bytes).
decode_kernels="decode(cols=64,split=1,rows=1,each=8,texels=0);decode(cols=64,split=1,rows=1,each=8,texels=1);\
decode(cols=16,split=8,rows=1,each=4,texels=0);decode(cols=16,split=8,rows=1,each=4,texels=1);\
decode(cols=32,split=4,rows=8,each=8,texels=0);decode(cols=32,split=4,rows=8,each=8,texels=1)"
if [ -n "${QKV_MEASURE_QUICK:-}" ]; then decode_shape=(--d-model 256 --q-width 256 --kv-width 128)
else decode_shape=(--d-model 4096 --q-width 4096 --kv-width 1024); fi
for wt in f32 q8_0 q4_0 q4_k; do
    step "decode_$wt" 60 "$qkv" bench "${decode_shape[@]}" --tokens 1,8 --weight-type "$wt" \
        --kernel "$decode_kernels" --no-cpu --check-rows 8 --repeats "$repeats" --json
done
# Issue #23: the large batch end to end, streamed through the pipeline and one after another,
# in f32 and bf16; then file to file (scripts/make_batch.py writes X and a checkpoint).
if [ -n "${QKV_MEASURE_QUICK:-}" ]; then batch=2000; else batch=400000; fi
large=(run --tokens "$batch" --d-model 512 --q-width 512 --kv-width 512 --kernel blocktile
    --repeats 3 --json)
for dt in f32 bf16; do
    step "batch_$dt" 90 "$qkv" "${large[@]}" --dtype "$dt"
    step "batch_${dt}_no_stream" 90 "$qkv" "${large[@]}" --dtype "$dt" --no-stream
done
if python3 scripts/make_batch.py "$out/batch" --tokens "$batch" >"$out/make_batch.log" 2>&1; then
    for dt in f32 bf16; do
        step "project_$dt" 90 "$qkv" project --input "$out/batch/x.npy" \
            --weights "$out/batch/m.safetensors" --prefix model.layers.0 --dtype "$dt" \
            --kernel blocktile --out "$out/batch/o-$dt" --force --json
        rm -rf "$out/batch/o-$dt"
    done
    # Issue #36: RoPE after blocktile on the same batch (heads of 64 from a Llama config
    # beside the checkpoint), fused into its store, then as a pass of its own.
    printf '{"model_type": "llama", "hidden_size": 512, "num_attention_heads": 8, %s}\n' \
        '"num_key_value_heads": 8, "rope_theta": 500000.0' >"$out/batch/config.json"
    for mode in fused pass; do
        extra=()
        if [ "$mode" = pass ]; then extra=(--epilogue-pass); fi
        step "project_rope_$mode" 90 "$qkv" project --input "$out/batch/x.npy" \
            --weights "$out/batch/m.safetensors" --prefix model.layers.0 --kernel blocktile \
            --rope "${extra[@]}" --out "$out/batch/o-rope" --force --json
        rm -rf "$out/batch/o-rope"
    done
    rm -rf "$out/batch"
fi
if python3 -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    for f in coopmat_sweep all_kernels; do
        step "cublas_$f" 180 python3 scripts/cublas_compare.py "$out/$f.json" --json "$out/cublas_$f.out.json"
    done
else
    say "no PyTorch with CUDA here: cuBLAS not compared (scripts/cublas_compare.py)"
fi

# The summary: every bench row with its share of the peak and, where measured, of cuBLAS.
python3 - "$out" <<'EOF' | tee "$out/summary.md"
import json, os, sys
out = sys.argv[1]
def load(name):
    try:
        with open(os.path.join(out, name)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None
peak = load("peak.json")
if peak:
    coop = ", ".join("%dx%dx%d f16 -> %s: %.1f GFLOP/s" % (
        c["tile"], c["tile"], c["tile"], "f32" if c["f32_accumulator"] else "f16", c["gflops"])
        for c in peak.get("coop", []))
    print("**%s** (%s, %s): f32 FMA %.1f GFLOP/s; %s; copy %.1f GB/s\n" % (
        peak["adapter"], peak["backend"], peak["driver"], peak["f32_fma_gflops"],
        coop or "no cooperative matrices", peak["copy_gbs"]))
cublas = {}
for f in ("cublas_coopmat_sweep.out.json", "cublas_all_kernels.out.json"):
    for r in load(f) or []:
        key = (r.get("tokens"), r.get("d_model"), r.get("q_width"), r.get("kv_width"), r.get("dtype", "f32"))
        if r.get("cublas_gflops"):
            cublas[key] = r["cublas_gflops"]
decode = ["decode_" + w for w in ("f32", "q8_0", "q4_0", "q4_k")]
for name in ["coopmat_sweep", "coopmat_unchecked", "tuned_f16", "all_kernels"] + decode:
    rows = load(f"{name}.json")
    if not isinstance(rows, list):
        print("### %s: no results (see %s.log)\n" % (name, name))
        continue
    print("### %s\n" % name)
    print("| shape | tokens | dtype | kernel | GFLOP/s | peak % | roof % | cuBLAS GFLOP/s | of cuBLAS | check |")
    print("|---|---:|---|---|---:|---:|---:|---:|---:|---|")
    for r in rows:
        key = (r["tokens"], r["d_model"], r["q_width"], r["kv_width"], r["dtype"])
        cb = cublas.get(key)
        pct = lambda v: "-" if v is None else "%.1f" % (100 * v)
        kernel = "`%s`%s%s" % (r["kernel"], " unchecked" if r.get("unchecked") else "",
                               " W %s" % r["weight_type"] if name in decode else "")
        cb_tf = "-" if cb is None else "%.0f" % cb
        of_cb = "-" if cb is None else "%.1f%%" % (100 * r["gpu_gflops"] / cb)
        print("| %s | %s | %s | %s | %.1f | %s | %s | %s | %s | %s |" % (
            r["shape"], r["tokens"], r["dtype"], kernel, r["gpu_gflops"],
            pct(r.get("peak_share")), pct(r.get("roofline_share")), cb_tf, of_cb,
            "PASS" if r["pass"] else "FAIL"))
    print()
print("### RoPE after blocktile on the large batch, fused and as a pass (issue #36)\n")
print("| step | kernel ms | of which the pass | tokens/s | where it ran | check |")
print("|---|---:|---:|---:|---|---|")
for name in ("project_rope_fused", "project_rope_pass", "project_f32"):
    r = load(f"{name}.json")
    if not isinstance(r, dict):
        print("| %s | no result (see %s.log) | | | | |" % (name, name))
        continue
    e_ms = r.get("epilogue_ms")
    print("| %s | %.1f | %s | %.0f | %s | %s |" % (
        name, r["gpu_kernel_ms"], "-" if e_ms is None else "%.1f" % e_ms, r["tokens_per_s"],
        r.get("epilogue_plan") or "no epilogue", {True: "PASS", False: "FAIL"}.get(r.get("pass"), "-")))
print()
print("### the large batch, end to end (issue #23)\n")
print("| step | tokens/s | end to end ms | kernel ms | hidden | stages (busy ms) | bound by | check |")
print("|---|---:|---:|---:|---:|---|---|---|")
for dt in ("f32", "bf16"):
    for name in (f"batch_{dt}", f"batch_{dt}_no_stream", f"project_{dt}"):
        r = load(f"{name}.json")
        if not isinstance(r, dict):
            print("| %s | no result (see %s.log) | | | | | | |" % (name, name))
            continue
        st = r.get("stages") or {}
        busy = ", ".join("%s %.0f" % (x["name"], x["busy_ms"]) for x in st.get("stages", []))
        hidden = r.get("hidden_ms"), r.get("transfers_ms")
        hid = "-" if None in hidden else "%.0f%%" % (100 * hidden[0] / max(hidden[1], 1e-9))
        print("| %s | %.0f | %.1f | %.1f | %s | %s | %s | %s |" % (
            name, r["tokens_per_s"], r["gpu_total_ms"], r["gpu_kernel_ms"], hid, busy,
            st.get("bound_by", "-"), {True: "PASS", False: "FAIL"}.get(r.get("pass"), "-")))
print()
EOF
say "done: $out (summary.md, one JSON and log per step)"
