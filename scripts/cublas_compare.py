#!/usr/bin/env python3
"""Times cuBLAS on the shapes of a `qkv bench --json` run, in each row's type, side by side.

    qkv bench --shape all --max-tokens 16384 --kernel auto --dtype f32,f16,bf16 --json > qkv.json
    qkv bench --shape all --max-tokens 16384 --kernel coopmat,auto --dtype f16 --json > coop.json
    python3 scripts/cublas_compare.py qkv.json [--repeats 20] [--json out.json]

For every distinct shape and type in the file it times `torch.matmul(X, W)`, X [tokens,
d_model] and W [d_model, n_out] on the GPU, with CUDA events: warm-up first, then the median
of --repeats. Rows of dtype f32 run in float32 with TF32 off
(`torch.backends.cuda.matmul.allow_tf32 = False`, so cuBLAS runs true FP32 SGEMM); rows of
f16 and bf16 run in float16 and bfloat16, as PyTorch does by default: cuBLAS HGEMM / BF16
GEMM on the tensor cores, accumulating in f32. Rows without a dtype (older files) are f32. The GEMM alone: no bias, no split into Q, K, V (qkv's kernel does
both), so the comparison leans toward cuBLAS. GFLOP/s use qkv's own flop count for the
shape, so the percentage is a ratio of times.

Needs PyTorch with CUDA. Not run in CI (no GPU there).
"""

import argparse
import json
import statistics
import sys


def time_gemm(torch, tokens, d_model, n_out, dtype, repeats):
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    tdtype = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}[dtype]
    gen = torch.Generator(device="cuda").manual_seed(42)
    x = (torch.rand(tokens, d_model, device="cuda", generator=gen) * 2 - 1).to(tdtype)
    w = (torch.rand(d_model, n_out, device="cuda", generator=gen) * 2 - 1).to(tdtype)
    out = torch.empty(tokens, n_out, device="cuda", dtype=tdtype)
    for _ in range(3):
        torch.matmul(x, w, out=out)
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        torch.matmul(x, w, out=out)
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    # A spot check of the type: FP32 misses the f64 result by ~1e-5 (TF32 would by ~1e-3);
    # f16 and bf16 by about their rounding of the result.
    ref = x[:64].double() @ w.double()
    err = (out[:64].double() - ref).abs().max().item()
    return statistics.median(times), err


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bench_json", help="output of `qkv bench --json`")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--json", help="also write the joined rows here")
    args = ap.parse_args()

    try:
        import torch
    except ImportError:
        sys.exit("error: PyTorch is not installed (pip install torch)")
    if not torch.cuda.is_available():
        sys.exit("error: PyTorch sees no CUDA device")

    with open(args.bench_json) as f:
        rows = json.load(f)
    if not rows:
        sys.exit(f"error: {args.bench_json} holds no rows")

    print(f"device: {torch.cuda.get_device_name()} (torch {torch.__version__}, "
          f"CUDA {torch.version.cuda}); torch.matmul in each row's type (f32: SGEMM, TF32 "
          f"off; f16/bf16: tensor cores)")
    header = (f"{'shape':<10} {'tokens':>7} {'dtype':<5} {'qkv kernel':<30} {'qkv ms':>9} "
              f"{'qkv GF/s':>9} "
              f"{'cuBLAS ms':>10} {'cuBLAS GF/s':>11} {'qkv/cuBLAS':>10}")
    print(header)
    cache = {}
    joined = []
    for r in rows:
        dtype = r.get("dtype", "f32")
        key = (r["tokens"], r["d_model"], r["q_width"] + 2 * r["kv_width"], dtype)
        if key not in cache:
            cache[key] = time_gemm(torch, *key, args.repeats)
        cublas_ms, err = cache[key]
        flop = r["gpu_gflops"] * r["kernel_ms"] * 1e6  # qkv's flop count for the shape
        cublas_gflops = flop / (cublas_ms * 1e6)
        ratio = cublas_ms / r["kernel_ms"]
        joined.append({**r, "cublas_ms": cublas_ms, "cublas_gflops": cublas_gflops,
                       "vs_cublas": ratio, "cublas_max_abs_err_vs_f64": err})
        print(f"{r['shape']:<10} {r['tokens']:>7} {dtype:<5} {r['kernel']:<30} {r['kernel_ms']:>9.4f} "
              f"{r['gpu_gflops']:>9.0f} {cublas_ms:>10.4f} {cublas_gflops:>11.0f} "
              f"{100 * ratio:>9.1f}%")
    print("qkv/cuBLAS: cuBLAS time / qkv kernel time (qkv also adds the bias and splits Q, K, V)")
    for dtype in sorted({k[3] for k in cache}):
        worst = max(c[1] for k, c in cache.items() if k[3] == dtype)
        note = " (FP32, not TF32, if ~1e-5)" if dtype == "f32" else ""
        print(f"cuBLAS {dtype} max |err| against f64 on 64 rows: {worst:.2e}{note}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(joined, f, indent=2)


if __name__ == "__main__":
    main()
