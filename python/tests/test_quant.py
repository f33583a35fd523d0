"""ggml's block formats against the `gguf` package (llama.cpp's own Python reader and
quantizer): our quantizers write its bytes, our dequantization gives its values, exactly."""

import gguf
import numpy as np
import pytest
from gguf import GGMLQuantizationType as T

import qkv_wgpu

FORMATS = {
    "q8_0": T.Q8_0,
    "q4_0": T.Q4_0,
    "q4_1": T.Q4_1,
    "q5_0": T.Q5_0,
    "q5_1": T.Q5_1,
    "q4_k": T.Q4_K,
    "q5_k": T.Q5_K,
    "q6_k": T.Q6_K,
}
# gguf's numpy quantizers exist for these (the K-quants it only dequantizes).
QUANTIZED_BY_GGUF = ["q8_0", "q4_0", "q4_1", "q5_0", "q5_1"]
# Where each block's f16 scales lie (byte offsets).
SCALES = {
    "q8_0": [0],
    "q4_0": [0],
    "q4_1": [0, 2],
    "q5_0": [0],
    "q5_1": [0, 2],
    "q4_k": [0, 2],
    "q5_k": [0, 2],
    "q6_k": [208],
}


def block(fmt):
    elems, size = gguf.GGML_QUANT_SIZES[FORMATS[fmt]]
    return elems, size


def random_blocks(rng, fmt, n):
    """`n` blocks of random bytes with finite f16 scales (any finite value, subnormals and
    negatives included: every bit pattern of the integers is a valid block)."""
    _, size = block(fmt)
    raw = rng.integers(0, 256, size=(n, size), dtype=np.uint8)
    for at in SCALES[fmt]:
        finite = rng.uniform(-4.0, 4.0, size=n).astype(np.float16)
        finite[::7] = np.float16(6e-6)  # subnormal
        raw[:, at : at + 2] = finite.view(np.uint8).reshape(n, 2)
    return raw


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_dequantize_matches_gguf_bit_for_bit_on_random_blocks(fmt):
    rng = np.random.default_rng(len(fmt) * 1009 + sum(map(ord, fmt)))
    raw = random_blocks(rng, fmt, 64)
    ours = qkv_wgpu.dequantize(raw.tobytes(), fmt)
    theirs = gguf.quants.dequantize(raw, FORMATS[fmt]).reshape(-1).astype(np.float32)
    assert ours.dtype == np.float32 and ours.shape == theirs.shape
    assert np.all(np.isfinite(ours))
    np.testing.assert_array_equal(ours.view(np.uint32), theirs.view(np.uint32))


@pytest.mark.parametrize("fmt", QUANTIZED_BY_GGUF)
def test_quantize_writes_ggufs_bytes(fmt):
    rng = np.random.default_rng(sum(map(ord, fmt)))
    elems, _ = block(fmt)
    x = rng.normal(0.0, 0.7, size=(8, 4 * elems)).astype(np.float32)
    x[0, :elems] = 0.0  # an all-zero block
    x[1, 3] = 40.0  # an outlier
    ours = qkv_wgpu.quantize(x.reshape(-1), fmt)
    theirs = gguf.quants.quantize(x, FORMATS[fmt]).tobytes()
    assert ours == theirs


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_quantized_then_dequantized_by_gguf_is_close(fmt):
    # The K-quants' quantizers have no gguf counterpart: their blocks are checked by gguf's
    # reader, and their values against the input (a few steps of the format at most).
    rng = np.random.default_rng(3)
    elems, _ = block(fmt)
    x = rng.uniform(-1.0, 1.0, size=(4, 2 * elems)).astype(np.float32)
    data = qkv_wgpu.quantize(x.reshape(-1), fmt)
    raw = np.frombuffer(data, dtype=np.uint8).reshape(4, -1)
    back = gguf.quants.dequantize(raw, FORMATS[fmt]).reshape(x.shape)
    np.testing.assert_array_equal(back.reshape(-1), qkv_wgpu.dequantize(data, fmt))
    bits = {"q8_0": 8, "q4_0": 4, "q4_1": 4, "q5_0": 5, "q5_1": 5, "q4_k": 4, "q5_k": 5, "q6_k": 6}
    step = 2.0 / (2 ** bits[fmt] - 1)
    assert np.max(np.abs(back - x)) <= 1.05 * step


def test_bad_arguments_are_refused_by_name():
    with pytest.raises(ValueError, match="q6_k"):
        qkv_wgpu.quantize(np.zeros(32, np.float32), "q3_k")
    with pytest.raises(ValueError, match="not a block format"):
        qkv_wgpu.quantize(np.zeros(32, np.float32), "f16")
    with pytest.raises(ValueError, match="whole blocks of 256"):
        qkv_wgpu.quantize(np.zeros(32, np.float32), "q4_k")
    with pytest.raises(ValueError, match="only finite"):
        qkv_wgpu.quantize(np.full(32, np.nan, np.float32), "q8_0")
    with pytest.raises(ValueError, match="not whole blocks"):
        qkv_wgpu.dequantize(b"\x00" * 35, "q8_0")


def write_layer(path, arch="qwen2", fused=False):
    """A layer written by gguf's GGUFWriter: Q in Q4_K (our quantizer; gguf has none for the
    K-quants), K in Q8_0 (gguf's), V in F16, f32 biases; 4 heads, 2 KV heads of 16."""
    rng = np.random.default_rng(11)
    d_model = 256
    wq = rng.uniform(-1, 1, (64, d_model)).astype(np.float32)
    wk = rng.uniform(-1, 1, (32, d_model)).astype(np.float32)
    wv = rng.uniform(-1, 1, (32, d_model)).astype(np.float32)
    w = gguf.GGUFWriter(str(path), arch)
    w.add_head_count(4)
    w.add_head_count_kv(2)
    w.add_embedding_length(d_model)
    if fused:
        qkv = np.concatenate([wq, wk, wv])
        w.add_tensor("blk.0.attn_qkv.weight", gguf.quants.quantize(qkv, T.Q8_0), raw_dtype=T.Q8_0)
    else:
        q4k = np.frombuffer(qkv_wgpu.quantize(wq.reshape(-1), "q4_k"), np.uint8).reshape(64, -1)
        w.add_tensor("blk.0.attn_q.weight", q4k, raw_dtype=T.Q4_K)
        w.add_tensor("blk.0.attn_k.weight", gguf.quants.quantize(wk, T.Q8_0), raw_dtype=T.Q8_0)
        w.add_tensor("blk.0.attn_v.weight", wv.astype(np.float16))
        for name, n in (("attn_q", 64), ("attn_k", 32), ("attn_v", 32)):
            w.add_tensor(f"blk.0.{name}.bias", rng.uniform(-1, 1, n).astype(np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def gguf_values(path):
    """Every tensor of the file as gguf's reader and dequantizer give it, by name."""
    r = gguf.GGUFReader(str(path))
    out = {}
    for t in r.tensors:
        v = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)
        out[t.name] = v.reshape([int(n) for n in reversed(t.shape)])
    return out


def test_a_layer_written_by_ggufwriter_reads_as_ggufs_reader_reads_it(tmp_path):
    path = tmp_path / "layer.gguf"
    write_layer(path)
    layer = qkv_wgpu.gguf_layer(path, "blk.0")
    assert layer["types"] == ["q4_k", "q8_0", "f16"]
    assert (layer["d_model"], layer["heads"], layer["kv_heads"]) == (256, 4, 2)
    assert layer["architecture"] == "qwen2" and not layer["rows_reordered"]
    theirs = gguf_values(path)
    for key, name in (("wq", "attn_q"), ("wk", "attn_k"), ("wv", "attn_v")):
        np.testing.assert_array_equal(layer[key], theirs[f"blk.0.{name}.weight"])
    for ours, name in zip(layer["bias"], ("attn_q", "attn_k", "attn_v")):
        np.testing.assert_array_equal(ours, theirs[f"blk.0.{name}.bias"])


def test_a_fused_llama_layer_is_split_by_heads_and_says_its_rows_are_reordered(tmp_path):
    path = tmp_path / "fused.gguf"
    write_layer(path, arch="llama", fused=True)
    layer = qkv_wgpu.gguf_layer(path, "blk.0")
    assert layer["rows_reordered"] and layer["bias"] is None
    whole = gguf_values(path)["blk.0.attn_qkv.weight"]
    assert [layer[k].shape[0] for k in ("wq", "wk", "wv")] == [64, 32, 32]
    np.testing.assert_array_equal(np.concatenate([layer["wq"], layer["wk"], layer["wv"]]), whole)
    with pytest.raises(ValueError, match="blk.0"):
        qkv_wgpu.gguf_layer(path, "blk.7")


def test_the_original_row_order_undoes_llama_cpps_converter(tmp_path):
    # convert_hf_to_gguf.py's LlamaModel.permute, applied to Hugging Face's q_proj (n_head
    # heads) and k_proj (n_head_kv heads), then quantized row by row as llama.cpp does.
    def permute(w, n_head):
        return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)

    rng = np.random.default_rng(5)
    d_model, heads, kv_heads, head_dim = 64, 4, 2, 8
    hf_q = rng.uniform(-1, 1, (heads * head_dim, d_model)).astype(np.float32)
    hf_k = rng.uniform(-1, 1, (kv_heads * head_dim, d_model)).astype(np.float32)
    hf_v = rng.uniform(-1, 1, (kv_heads * head_dim, d_model)).astype(np.float32)
    path = tmp_path / "llama.gguf"
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_head_count(heads)
    w.add_head_count_kv(kv_heads)
    w.add_embedding_length(d_model)
    for name, m in (("attn_q", permute(hf_q, heads)), ("attn_k", permute(hf_k, kv_heads)), ("attn_v", hf_v)):
        w.add_tensor(f"blk.0.{name}.weight", gguf.quants.quantize(m, T.Q8_0), raw_dtype=T.Q8_0)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    def q8(m):
        return gguf.quants.dequantize(gguf.quants.quantize(m, T.Q8_0), T.Q8_0)

    as_stored = qkv_wgpu.gguf_layer(path, "blk.0")
    assert as_stored["rows_reordered"]
    np.testing.assert_array_equal(as_stored["wq"], q8(permute(hf_q, heads)))
    original = qkv_wgpu.gguf_layer(path, "blk.0", original_order=True)
    assert not original["rows_reordered"]
    # Rows are quantized one by one, so reordering them commutes with Q8_0.
    for key, hf in (("wq", hf_q), ("wk", hf_k), ("wv", hf_v)):
        np.testing.assert_array_equal(original[key], q8(hf))


def rel_l2(got, want):
    return float(np.linalg.norm(got.astype(np.float64) - want) / np.linalg.norm(want))


def test_a_gguf_layer_projects_on_the_gpu_as_numpy_f64_of_ggufs_dequantized_weights(tmp_path):
    # The must-show of issue #34: a layer written by GGUFWriter (Q in Q4_K, K in Q8_0, V in
    # F16, f32 biases, 4 heads over 2 KV heads), kept in its blocks on the GPU, against
    # NumPy's f64 product of the weights as gguf's own dequantizer gives them.
    path = tmp_path / "layer.gguf"
    write_layer(path)
    values = gguf_values(path)
    rng = np.random.default_rng(34)
    x = rng.uniform(-1, 1, (5, 256)).astype(np.float32)
    for kernel in ("auto", "decode", "blocktile"):
        p = qkv_wgpu.Projector.from_checkpoint(path, "blk.0", kernel=kernel)
        q, k, v = p(x)
        for got, name in ((q, "attn_q"), (k, "attn_k"), (v, "attn_v")):
            w = values[f"blk.0.{name}.weight"].astype(np.float64)
            want = x.astype(np.float64) @ w.T + values[f"blk.0.{name}.bias"]
            assert rel_l2(got, want) < 1e-5, (kernel, name)
    # The heads come from the metadata: 4 of 16 for Q, 2 for K and V.
    q, k, v = qkv_wgpu.Projector.from_checkpoint(path, "blk.0", head_layout="heads")(x)
    assert q.shape == (1, 4, 5, 16) and k.shape == (1, 2, 5, 16)


def test_weight_type_quantizes_a_checkpoint_on_load_and_original_order_is_offered(tmp_path):
    path = tmp_path / "layer.gguf"
    write_layer(path, arch="llama", fused=True)
    values = gguf_values(path)["blk.0.attn_qkv.weight"].astype(np.float64)
    x = np.random.default_rng(1).uniform(-1, 1, (2, 256)).astype(np.float32)
    p = qkv_wgpu.Projector.from_checkpoint(path, "blk.0", weight_type="q4_0", kernel="decode")
    q, _, _ = p(x)
    # Q8_0 weights stored again as Q4_0: close to the product of the file's weights, not
    # equal (the cost of four bits).
    want = x.astype(np.float64) @ values[:64].T
    assert 1e-3 < rel_l2(q, want) < 0.2
    reordered = qkv_wgpu.Projector.from_checkpoint(path, "blk.0", original_order=True)
    q2, _, _ = reordered(x)
    assert not np.array_equal(q2, p(x)[0])
    with pytest.raises(ValueError, match="GGUF"):
        qkv_wgpu.Projector.from_checkpoint(path, "blk.0", names=["a", "b", "c"])
    with pytest.raises(ValueError, match="q3_k"):
        qkv_wgpu.Projector.from_checkpoint(path, "blk.0", weight_type="q3_k")


def test_bench_with_weight_type_reads_the_blocks_and_says_so():
    rows = qkv_wgpu.bench(d_model=64, q_width=32, kv_width=16, bias=True, tokens=[1, 9],
                          kernel=["decode", "blocktile"], weight_type="q4_0,q8_0,q8_0", repeats=1)
    assert len(rows) == 4
    for r in rows:
        assert r["pass"] is True and r["weight_type"] == "q4_0,q8_0,q8_0"
        # 32 rows of two Q4_0 blocks (18 bytes), 32 rows of two Q8_0 blocks (34 bytes).
        assert r["w_bytes"] == 32 * 2 * 18 + 32 * 2 * 34
    with pytest.raises(ValueError, match="q3_k"):
        qkv_wgpu.bench("gpt2", tokens=[1], weight_type="q3_k")
