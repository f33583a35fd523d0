"""Checkpoints written with safetensors.numpy, and bench's rows against the CLI's keys."""

import math

import numpy as np
import pytest
from safetensors.numpy import save_file

import qkv_wgpu
from helpers import assert_close, cli_bench_keys, rand, reference


def test_a_bert_layer_in_linear_layout_is_found_by_its_prefix(tmp_path):
    # BERT stores nn.Linear [out, in] under P.attention.self.{query,key,value}.
    rng = np.random.default_rng(1)
    ws = [rand(rng, 48, 48) for _ in range(3)]
    bs = [rand(rng, 48) for _ in range(3)]
    tensors = {}
    for part, w, b in zip(("query", "key", "value"), ws, bs):
        tensors[f"encoder.layer.0.attention.self.{part}.weight"] = w.T.copy()
        tensors[f"encoder.layer.0.attention.self.{part}.bias"] = b
    path = tmp_path / "bert.safetensors"
    save_file(tensors, str(path))
    p = qkv_wgpu.Projector.from_checkpoint(path, "encoder.layer.0", kernel="tiled")
    assert (p.d_model, p.q_width, p.kv_width) == (48, 48, 48)
    x = rand(rng, 19, 48)
    for got, want in zip(p(x), reference(x, ws, bs)):
        assert_close(got, want, 48)


def test_a_gpt2_conv1d_fused_matrix_in_f16_stays_f16(tmp_path):
    # GPT-2 stores Conv1D [in, out]: one c_attn matrix [d, 3d] and one bias [3d].
    rng = np.random.default_rng(2)
    d = 32
    w = rand(rng, d, 3 * d).astype(np.float16)
    b = rand(rng, 3 * d).astype(np.float16)
    path = tmp_path / "gpt2.safetensors"
    save_file({"h.0.attn.c_attn.weight": w, "h.0.attn.c_attn.bias": b}, str(path))
    p = qkv_wgpu.Projector.from_checkpoint(path, "h.0", dtype="f16", kernel="naive")
    x = rand(rng, 13, d)
    ws = [w[:, i * d:(i + 1) * d] for i in range(3)]
    bs = [b[i * d:(i + 1) * d].astype(np.float32) for i in range(3)]
    for got, want in zip(p(x), reference(x, ws, bs, "f16")):
        assert got.dtype == np.float16
        assert_close(got, want, d, "f16")


def test_named_tensors_and_the_errors_of_a_checkpoint(tmp_path):
    rng = np.random.default_rng(3)
    ws = [rand(rng, 24, 16), rand(rng, 24, 8), rand(rng, 24, 8)]  # in-out, GQA widths
    path = tmp_path / "named.safetensors"
    save_file({"wq": ws[0], "wk": ws[1], "wv": ws[2]}, str(path))
    p = qkv_wgpu.Projector.from_checkpoint(path, names=["wq", "wk", "wv"],
                                           weight_layout="in-out", kernel="naive")
    x = rand(rng, 7, 24)
    for got, want in zip(p(x), reference(x, ws)):
        assert_close(got, want, 24)
    with pytest.raises(ValueError, match="weight_layout"):
        qkv_wgpu.Projector.from_checkpoint(path, names=["wq", "wk", "wv"])
    with pytest.raises(ValueError, match="nearest names: wq"):
        qkv_wgpu.Projector.from_checkpoint(path, names=["wq_", "wk", "wv"],
                                           weight_layout="in-out")
    with pytest.raises(ValueError, match="prefix"):
        qkv_wgpu.Projector.from_checkpoint(path)
    with pytest.raises(OSError):
        qkv_wgpu.Projector.from_checkpoint(tmp_path / "missing.safetensors", "h.0")
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ValueError):
        qkv_wgpu.Projector.from_checkpoint(truncated, names=["wq", "wk", "wv"])
    bad = dict(wq=ws[0].copy(), wk=ws[1], wv=ws[2])
    bad["wq"][3, 4] = np.inf
    save_file(bad, str(tmp_path / "inf.safetensors"))
    with pytest.raises(ValueError, match="NaN or Inf"):
        qkv_wgpu.Projector.from_checkpoint(tmp_path / "inf.safetensors",
                                           names=["wq", "wk", "wv"], weight_layout="in-out")


def test_bench_returns_the_rows_of_qkv_bench_json():
    rows = qkv_wgpu.bench(d_model=40, q_width=24, kv_width=8, bias=True, tokens=[33, 70],
                          kernel=["naive", "blocktile"], dtype=["f32", "f16"], repeats=1)
    assert len(rows) == 2 * 2 * 2
    keys = cli_bench_keys()
    assert len(keys) > 20
    for r in rows:
        assert sorted(r) == keys
        assert r["pass"] is True and r["shape"] == "custom" and r["kv_width"] == 8
        assert r["kernel_ms"] > 0 and math.isfinite(r["gpu_gflops"]) and r["cpu_ms"] > 0
    assert {(r["tokens"], r["dtype"], r["kernel"]) for r in rows} == {
        (t, d, k) for t in (33, 70) for d in ("f32", "f16") for k in ("naive", "blocktile")}
    with pytest.raises(ValueError, match="unknown shape"):
        qkv_wgpu.bench("gpt-9")
    with pytest.raises(ValueError, match="not both"):
        qkv_wgpu.bench("gpt2", d_model=8, q_width=8)
    with pytest.raises(ValueError, match="^invalid input: chunk_tokens must be at least 1$"):
        qkv_wgpu.bench("gpt2", tokens=[64], chunk_tokens=0)
