"""Project one attention layer of a real checkpoint with qkv-wgpu, in f32 and bf16; compare
with NumPy in float64; plot GFLOP/s against tokens.

It needs the module and two packages besides NumPy (checked before any work):

    pip install ./python safetensors matplotlib
    # GPT-2 small from the Hugging Face hub (548 MB):
    curl -LO https://huggingface.co/openai-community/gpt2/resolve/main/model.safetensors
    python examples/python/project_checkpoint.py model.safetensors --prefix h.0

Without a download, `--demo PATH` writes a GPT-2-shaped checkpoint of random weights to PATH
(a .safetensors file of 7 MB) and uses it:

    python examples/python/project_checkpoint.py --demo demo.safetensors

The layer is found as `qkv project` finds it (GPT-2's c_attn, BERT's query/key/value,
Llama's q/k/v_proj under the prefix); X is drawn like a LayerNorm's output (mean 0, std 1).
The plot goes to gflops.png (--plot PATH).
"""

import argparse
import importlib
import sys

import numpy as np

# What the example imports besides NumPy, and what pip installs it from.
NEEDS = [("safetensors", "safetensors"), ("matplotlib", "matplotlib"), ("qkv_wgpu", "./python")]


def require():
    """Exits with a message (and code 2) unless every package the example needs imports."""
    missing = []
    for module, package in NEEDS:
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(package)
    if missing:
        names = ", ".join(m for m, p in NEEDS if p in missing)
        print(f"{sys.argv[0]}: cannot import {names}, which it needs: "
              f"pip install {' '.join(missing)}", file=sys.stderr)
        sys.exit(2)


def layer_weights(path, prefix):
    """Wq, Wk, Wv in-out [d_model, width] and the biases (or None), read with safetensors,
    widened to float64: what the NumPy reference multiplies."""
    from safetensors import safe_open

    p = prefix.rstrip(".") + "." if prefix else ""
    with safe_open(path, framework="numpy") as f:
        names = set(f.keys())
        get = lambda n: f.get_tensor(n).astype(np.float64)  # noqa: E731
        if p + "attn.c_attn.weight" in names:  # GPT-2 Conv1D: [d, 3d], in-out
            w = get(p + "attn.c_attn.weight")
            b = get(p + "attn.c_attn.bias")
            d = w.shape[0]
            return [w[:, i * d:(i + 1) * d] for i in range(3)], [b[i * d:(i + 1) * d]
                                                               for i in range(3)]
        for stems in (["attention.self." + s for s in ("query", "key", "value")],
                      ["self_attn." + s for s in ("q_proj", "k_proj", "v_proj")]):
            if p + stems[0] + ".weight" in names:  # nn.Linear [out, in]
                ws = [get(p + s + ".weight").T for s in stems]
                has_bias = all(p + s + ".bias" in names for s in stems)
                return ws, [get(p + s + ".bias") for s in stems] if has_bias else None
    sys.exit(f"{path}: no GPT-2, BERT or Llama attention layer under '{prefix}'")


def write_demo(path, d=768):
    from safetensors.numpy import save_file

    rng = np.random.default_rng(0)
    save_file({"h.0.attn.c_attn.weight": (rng.standard_normal((d, 3 * d)) * 0.02)
               .astype(np.float32),
               "h.0.attn.c_attn.bias": (rng.standard_normal(3 * d) * 0.02).astype(np.float32)},
              path)
    print(f"wrote {path}: a GPT-2-shaped layer h.0 of random weights")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint", nargs="?", help="a .safetensors file")
    ap.add_argument("--prefix", default="h.0", help="the layer (default: h.0)")
    ap.add_argument("--tokens", default="128,256,512,1024,2048",
                    help="token counts to time, comma-separated")
    ap.add_argument("--kernel", default="auto", help='"auto" or a configuration')
    ap.add_argument("--plot", default="gflops.png", help="where the plot goes")
    ap.add_argument("--demo", metavar="PATH", help="write a GPT-2-shaped checkpoint and use it")
    args = ap.parse_args()
    require()
    import qkv_wgpu

    if args.demo:
        write_demo(args.demo)
        args.checkpoint = args.demo
    if not args.checkpoint:
        ap.error("give a checkpoint, or --demo PATH")
    tokens = [int(t) for t in args.tokens.split(",")]

    ws, bs = layer_weights(args.checkpoint, args.prefix)
    d_model = ws[0].shape[0]
    x = np.random.default_rng(1).standard_normal((max(tokens), d_model)).astype(np.float32)
    print(f"adapter: {qkv_wgpu.adapters()[0]['name']}; d_model {d_model}, "
          f"Q {ws[0].shape[1]}, K/V {ws[1].shape[1]} wide")

    rows = []
    for dtype in ("f32", "bf16"):
        p = qkv_wgpu.Projector.from_checkpoint(args.checkpoint, args.prefix, dtype=dtype,
                                               kernel=args.kernel, out_dtype="float32")
        q, k, v = p(x)
        for name, got, w, b in zip("QKV", (q, k, v), ws, bs or [None] * 3):
            want = x.astype(np.float64) @ w + (b if b is not None else 0.0)
            err = np.abs(got - want)
            rel = np.linalg.norm(got - want) / np.linalg.norm(want)
            print(f"{dtype:>4} {name}: max |err| {err.max():.3g}, relative L2 {rel:.3g} "
                  f"(against NumPy float64 of the unrounded inputs)")
        for t in tokens:
            r = p.time(x[:t], repeats=3)
            rows.append(r)
            print(f"{dtype:>4} {t:>6} tokens: kernel {r['kernel_ms']:.3f} ms, "
                  f"{r['gpu_gflops']:.1f} GFLOP/s, end to end {r['end_to_end_ms']:.3f} ms "
                  f"({r['kernel']}, {'PASS' if r['pass'] else 'FAIL'})")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for dtype in ("f32", "bf16"):
        pts = [(r["tokens"], r["gpu_gflops"]) for r in rows if r["dtype"] == dtype]
        ax.plot(*zip(*pts), marker="o", label=dtype)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("tokens")
    ax.set_ylabel("GFLOP/s (kernel)")
    ax.set_title(f"{args.checkpoint}: {args.prefix} on {qkv_wgpu.adapters()[0]['name']}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.plot)
    print(f"plot: {args.plot}")
    return 0 if all(r["pass"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
