"""RoPE and QK-norm from a checkpoint's own config (`rope=True`, `qk_norm=True`): Q and K
against a NumPy float64 implementation written here from the models' definitions, within the
library's tolerance carried through the norm and the rotation; positions from an offset, given
per token, and changed between calls. (python/tests_torch/ checks against transformers
itself.)"""

import json

import numpy as np
import pytest
from safetensors.numpy import save_file

import qkv_wgpu
from helpers import rand

HEADS, KV_HEADS, HEAD_DIM, D_MODEL = 4, 2, 8, 32
PRE = "model.layers.0.self_attn"


def layer_tensors(rng):
    """A Qwen3-like layer's random weights, norm weights too, by their Hugging Face names."""
    return {
        f"{PRE}.q_proj.weight": rand(rng, HEADS * HEAD_DIM, D_MODEL),
        f"{PRE}.k_proj.weight": rand(rng, KV_HEADS * HEAD_DIM, D_MODEL),
        f"{PRE}.v_proj.weight": rand(rng, KV_HEADS * HEAD_DIM, D_MODEL),
        f"{PRE}.q_norm.weight": rand(rng, HEAD_DIM) + 1.0,
        f"{PRE}.k_norm.weight": rand(rng, HEAD_DIM) + 1.0,
    }


def qwen3_layer(tmp_path, rng, model_type="qwen3"):
    """A Qwen3-like layer (and its config.json) with random weights, norm weights too."""
    t = layer_tensors(rng)
    save_file(t, str(tmp_path / "model.safetensors"))
    config = {
        "model_type": model_type, "hidden_size": D_MODEL, "num_attention_heads": HEADS,
        "num_key_value_heads": KV_HEADS, "head_dim": HEAD_DIM, "rms_norm_eps": 1e-6,
        "rope_theta": 1_000_000.0,
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    return t


def norm_rope(y, m, w, positions, theta=1_000_000.0, eps=1e-6):
    """Qwen3's RMSNorm of each head then rotate-half RoPE, in float64, on y [tokens, heads,
    dim], with each element's error scale m carried through to first order (the norm: |w| r
    (m + |y| r^2 sum|y| m / n); a rotated pair: the sum of the two)."""
    n = y.shape[-1]
    r = 1.0 / np.sqrt((y * y).mean(-1, keepdims=True) + eps)
    spread = (np.abs(y) * m).sum(-1, keepdims=True) / n
    m = np.abs(w) * r * (m + np.abs(y) * r * r * spread)
    y = y * r * w
    half = n // 2
    inv_freq = 1.0 / theta ** (np.arange(half) * 2.0 / n)
    ang = np.asarray(positions, np.float64)[:, None, None] * inv_freq
    cos, sin = np.cos(ang), np.sin(ang)
    a, b = y[..., :half], y[..., half:]
    out = np.concatenate([a * cos - b * sin, b * cos + a * sin], -1)
    ms = m[..., :half] + m[..., half:]
    return out, np.concatenate([ms, ms], -1)


def expected(t, x, positions):
    x64 = x.astype(np.float64)
    out = []
    for which, heads in (("q", HEADS), ("k", KV_HEADS)):
        w = t[f"{PRE}.{which}_proj.weight"].astype(np.float64).T
        y = (x64 @ w).reshape(len(x), heads, HEAD_DIM)
        m = (np.abs(x64) @ np.abs(w)).reshape(len(x), heads, HEAD_DIM)
        nw = t[f"{PRE}.{which}_norm.weight"].astype(np.float64)
        out.append(norm_rope(y, m, nw, positions))
    return out


def assert_within(got, want, ttol):
    y, m = want
    got = np.asarray(got, np.float64).reshape(y.shape)
    err = np.abs(got - y)
    assert np.all(err <= ttol * m), (err.max(), (err / m).max(), ttol)


@pytest.mark.parametrize("kernel, where", [
    ("tiled", "a pass after the kernel"),
    ("blocktile", "fused into blocktile's store"),
])
def test_rope_and_qk_norm_follow_the_config_at_each_call_s_positions(tmp_path, kernel, where):
    rng = np.random.default_rng(36)
    t = qwen3_layer(tmp_path, rng)
    p = qkv_wgpu.Projector.from_checkpoint(
        tmp_path / "model.safetensors", "model.layers.0", rope=True, qk_norm=True,
        kernel=kernel,
    )
    assert p.epilogue.startswith("RMSNorm per head"), p.epilogue
    assert p.epilogue_plan is None
    x = rand(rng, 12, D_MODEL)
    r = p.check(x)
    assert p.epilogue_plan.startswith(where), p.epilogue_plan
    assert r["pass"] and r["qk_ttol"] > r["ttol"], r
    ttol = r["qk_ttol"]
    given = [5, 0, 9, 70_000, 3, 3, 1, 2, 8, 13, 21, 34]
    # From 0, a decode step's offset, positions given, and back to 0 with no argument.
    for kwargs, positions in [
        ({}, range(12)),
        ({"position_offset": 100}, range(100, 112)),
        ({"positions": np.array(given)}, given),
        ({}, range(12)),
    ]:
        q, k, v = p(x, **kwargs)
        want_q, want_k = expected(t, x, list(positions))
        assert_within(q, want_q, ttol)
        assert_within(k, want_k, ttol)
    # Another position fails the bound: the check can tell.
    q, _, _ = p(x, position_offset=1)
    with pytest.raises(AssertionError):
        assert_within(q, expected(t, x, range(12))[0], ttol)


def test_positions_and_steps_the_model_does_not_have_are_refused(tmp_path):
    rng = np.random.default_rng(1)
    qwen3_layer(tmp_path, rng, model_type="llama")
    path = tmp_path / "model.safetensors"
    with pytest.raises(ValueError, match="has no QK-norm"):
        qkv_wgpu.Projector.from_checkpoint(path, "model.layers.0", qk_norm=True)
    p = qkv_wgpu.Projector.from_checkpoint(path, "model.layers.0", kernel="tiled")
    assert p.epilogue is None
    x = rand(rng, 3, D_MODEL)
    with pytest.raises(ValueError, match="make the projector with rope=True"):
        p(x, position_offset=3)
    p = qkv_wgpu.Projector.from_checkpoint(path, "model.layers.0", rope=True, kernel="tiled")
    with pytest.raises(ValueError, match="2 positions given for 3 tokens"):
        p(x, positions=[1, 2])
    with pytest.raises(ValueError, match="not a position"):
        p(x, positions=[1, 2, -1])
    with pytest.raises(ValueError, match="not a position"):
        p(x, position_offset=-1)
    with pytest.raises(ValueError, match="not both"):
        p(x, positions=[1, 2, 3], position_offset=1)
    with pytest.raises(ValueError, match="model's files say 4"):
        qkv_wgpu.Projector.from_checkpoint(path, "model.layers.0", rope=True, heads=8)


def test_a_gguf_layer_s_rope_and_qk_norm_come_from_its_metadata(tmp_path):
    """A Qwen3 layer written by gguf's GGUFWriter (F32 weights, its norm tensors, the base
    and ε in the metadata): the same Q and K as the reference of the same numbers."""
    import gguf
    rng = np.random.default_rng(7)
    t = layer_tensors(rng)
    path = tmp_path / "qwen3.gguf"
    w = gguf.GGUFWriter(str(path), "qwen3")
    w.add_head_count(HEADS)
    w.add_head_count_kv(KV_HEADS)
    w.add_embedding_length(D_MODEL)
    w.add_rope_freq_base(1_000_000.0)
    w.add_layer_norm_rms_eps(1e-6)
    for ours, theirs in (("q_proj", "attn_q"), ("k_proj", "attn_k"), ("v_proj", "attn_v"),
                         ("q_norm", "attn_q_norm"), ("k_norm", "attn_k_norm")):
        w.add_tensor(f"blk.0.{theirs}.weight", t[f"{PRE}.{ours}.weight"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    p = qkv_wgpu.Projector.from_checkpoint(path, "blk.0", rope=True, qk_norm=True,
                                           kernel="tiled")
    x = rand(rng, 6, D_MODEL)
    ttol = p.check(x)["qk_ttol"]
    q, k, _ = p(x, position_offset=40)
    want_q, want_k = expected(t, x, range(40, 46))
    assert_within(q, want_q, ttol)
    assert_within(k, want_k, ttol)


def test_shards_written_with_rope_are_skipped_only_by_a_projector_that_rotates(tmp_path):
    rng = np.random.default_rng(3)
    qwen3_layer(tmp_path, rng)
    path = tmp_path / "model.safetensors"
    shard = tmp_path / "part-0.npy"
    np.save(shard, rand(rng, 5, D_MODEL))
    out = tmp_path / "out"

    def make(**kw):
        return qkv_wgpu.Projector.from_checkpoint(path, "model.layers.0", kernel="tiled", **kw)

    rotating = make(rope=True, qk_norm=True)
    assert rotating.project_shard(shard, out)["state"] == "projected"
    assert rotating.project_shard(shard, out)["state"] == "skipped"
    # A projector without the epilogue is another job: the outputs are left as they are.
    r = make().project_shard(shard, out)
    assert r["state"] == "failed" and "other weights or settings" in r["error"], r
