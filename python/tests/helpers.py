"""Helpers shared by the tests: inputs, the NumPy float64 reference and its tolerance."""

import re
from pathlib import Path

import numpy as np

import ml_dtypes

# The storage types, as NumPy dtypes, and the unit roundoff of each (half an ulp at 1).
NP_TYPE = {"f32": np.float32, "f16": np.float16, "bf16": ml_dtypes.bfloat16}
UNIT = {"f32": 2.0 ** -24, "f16": 2.0 ** -11, "bf16": 2.0 ** -8}


def rand(rng, *shape):
    return rng.uniform(-1.0, 1.0, size=shape).astype(np.float32)


def rounded(a, dtype):
    """`a` as the GPU reads it in `dtype`, widened exactly to float64."""
    return np.asarray(a).astype(NP_TYPE[dtype]).astype(np.float64)


def reference(x, ws, bs=None, dtype="f32"):
    """Q, K, V in float64 from the inputs (biases too) rounded to `dtype`, as the GPU reads
    them, and each element's sum of |terms|."""
    x64 = rounded(x, dtype)
    out = []
    for i, w in enumerate(ws):
        w64 = rounded(w, dtype)
        y = x64 @ w64
        s = np.abs(x64) @ np.abs(w64)
        if bs is not None:
            b64 = rounded(bs[i], dtype)
            y += b64
            s += np.abs(b64)
        out.append((y, s))
    return out


def assert_close(got, want, d_model, dtype="f32"):
    """`got` against the reference (y, sum of |terms|): products of f32 or half inputs are
    exact in f32, so the f32 sum of d_model + 1 terms (the bias) in any order is within
    gamma = n * 2^-24 / (1 - n * 2^-24) of sum |terms|; a half-typed result is then rounded
    once more, within its unit roundoff of the f32 value."""
    y, s = want
    got = np.asarray(got).astype(np.float64)
    assert got.shape == y.shape, (got.shape, y.shape)
    n = d_model + 1
    gamma = n * 2.0 ** -24 / (1 - n * 2.0 ** -24)
    f32_bound = gamma * s
    bound = f32_bound + UNIT[dtype] * (np.abs(y) + f32_bound) if dtype != "f32" else f32_bound
    err = np.abs(got - y)
    worst = np.unravel_index(np.argmax(err - bound), err.shape) if err.size else None
    assert np.all(err <= bound), (worst, err[worst], bound[worst])


def cli_bench_keys():
    """The keys `qkv bench --json` prints, as the Rust tests pin them."""
    common = Path(__file__).resolve().parents[2] / "tests" / "common" / "mod.rs"
    body = common.read_text().split("BENCH_JSON_KEYS")[1].split("];")[0]
    return sorted(re.findall(r'"([a-z_]+)"', body))
