"""Storage types, input types, head layouts and what the module refuses, against NumPy."""

import sys

import ml_dtypes
import numpy as np
import pytest

import qkv_wgpu
from helpers import NP_TYPE, assert_close, rand, reference


def weights(rng, d_model, q_width, kv_width, bias):
    ws = [rand(rng, d_model, q_width), rand(rng, d_model, kv_width), rand(rng, d_model, kv_width)]
    bs = [rand(rng, q_width), rand(rng, kv_width), rand(rng, kv_width)] if bias else None
    return ws, bs


@pytest.mark.parametrize("dtype", ["f32", "f16", "bf16"])
@pytest.mark.parametrize("x_type", ["f32", "f16", "bf16"])
@pytest.mark.parametrize("kernel", ["naive", "blocktile"])
def test_every_storage_type_from_every_input_type_matches_numpy(dtype, x_type, kernel):
    # Ragged: 37 tokens, d_model 45, Q 24 wide, K/V 8 (grouped), with a bias.
    rng = np.random.default_rng(hash((dtype, x_type, kernel)) % 2**32)
    ws, bs = weights(rng, 45, 24, 8, True)
    x = rand(rng, 37, 45).astype(NP_TYPE[x_type])
    p = qkv_wgpu.Projector(*ws, *bs, dtype=dtype, kernel=kernel)
    got = p(x)
    for out, width in zip(got, (24, 8, 8)):
        assert out.dtype == NP_TYPE[dtype], (out.dtype, dtype)
        assert out.shape == (37, width)
    # X rounded as the GPU reads it: from its own type into the storage type.
    x_read = np.asarray(x).astype(NP_TYPE[dtype])
    for out, want in zip(got, reference(x_read, ws, bs, dtype)):
        assert_close(out, want, 45, dtype)
    assert p.check(x)["pass"] is True


def test_bf16_results_are_widened_to_float32_without_ml_dtypes(monkeypatch):
    rng = np.random.default_rng(3)
    ws, _ = weights(rng, 16, 8, 8, False)
    x = rand(rng, 5, 16)
    with_ml = qkv_wgpu.Projector(*ws, dtype="bf16", kernel="naive")(x)
    monkeypatch.setitem(sys.modules, "ml_dtypes", None)  # import ml_dtypes now fails
    without = qkv_wgpu.Projector(*ws, dtype="bf16", kernel="naive")(x)
    for a, b in zip(with_ml, without):
        assert a.dtype == ml_dtypes.bfloat16 and b.dtype == np.float32
        assert np.array_equal(a.astype(np.float32), b)  # exactly the same values


def test_out_dtype_float32_widens_half_results_exactly():
    rng = np.random.default_rng(4)
    ws, _ = weights(rng, 16, 8, 8, False)
    x = rand(rng, 5, 16)
    half = qkv_wgpu.Projector(*ws, dtype="f16", kernel="naive")(x)
    wide = qkv_wgpu.Projector(*ws, dtype="f16", kernel="naive", out_dtype="float32")(x)
    for a, b in zip(half, wide):
        assert b.dtype == np.float32 and np.array_equal(a.astype(np.float32), b)
    with pytest.raises(ValueError, match="out_dtype"):
        qkv_wgpu.Projector(*ws, out_dtype="float64")


@pytest.mark.parametrize("heads,kv_heads", [(4, 4), (4, 2), (4, 1), (4, None)])
def test_gqa_heads_layout_is_numpys_reshape_and_transpose(heads, kv_heads):
    # 3 sequences of 11 tokens, d_model 40, Q 4 heads of 6, K/V 2 heads of 6 (or as given).
    kv = kv_heads if kv_heads is not None else 2
    rng = np.random.default_rng(heads * 10 + kv)
    ws, bs = weights(rng, 40, 4 * 6, kv * 6, True)
    x = rand(rng, 3, 11, 40)
    p = qkv_wgpu.Projector(*ws, *bs, kernel="tiled", heads=heads, kv_heads=kv_heads,
                           head_layout="heads")
    q, k, v = p(x)
    assert q.shape == (3, heads, 11, 6) and k.shape == v.shape == (3, kv, 11, 6)
    flat = reference(x.reshape(33, 40), ws, bs)
    for out, (y, s), n in zip((q, k, v), flat, (heads, kv, kv)):
        split = lambda a: a.reshape(3, 11, n, 6).transpose(0, 2, 1, 3)  # noqa: E731
        assert_close(out, (split(y), split(s)), 40)
    # Token layout of the same 3-D X: [batch, seq, width].
    tq, tk, _ = qkv_wgpu.Projector(*ws, *bs, kernel="tiled")(x)
    assert tq.shape == (3, 11, 24) and tk.shape == (3, 11, kv * 6)
    assert np.array_equal(tq.reshape(3, 11, heads, 6).transpose(0, 2, 1, 3), q)


def test_heads_that_do_not_divide_are_refused():
    rng = np.random.default_rng(5)
    ws, _ = weights(rng, 8, 12, 4, False)
    with pytest.raises(ValueError, match="heads"):
        qkv_wgpu.Projector(*ws, heads=5, head_layout="heads")(rand(rng, 3, 8))
    with pytest.raises(ValueError, match="head_layout"):
        qkv_wgpu.Projector(*ws, head_layout="heads")
    with pytest.raises(ValueError, match="kv_width 4 is not divisible by 3 kv_heads"):
        qkv_wgpu.Projector(*ws, heads=3, kv_heads=3, head_layout="heads")(rand(rng, 3, 8))


def test_inputs_are_refused_not_copied_and_the_message_says_how_to_convert():
    rng = np.random.default_rng(6)
    ws, _ = weights(rng, 8, 4, 4, False)
    p = qkv_wgpu.Projector(*ws, kernel="naive")
    x = rand(rng, 6, 8)
    with pytest.raises(ValueError, match=r"float64.*astype\(np.float32\)"):
        p(x.astype(np.float64))
    with pytest.raises(ValueError, match="int32"):
        p(np.ones((6, 8), dtype=np.int32))
    with pytest.raises(ValueError, match="ascontiguousarray"):
        p(np.asfortranarray(x))
    with pytest.raises(ValueError, match="ascontiguousarray"):
        p(rand(rng, 8, 6).T)
    with pytest.raises(ValueError, match="float64"):
        p([[1.0] * 8])  # a list: NumPy makes it float64
    with pytest.raises(ValueError, match="shape"):
        p(x.reshape(-1))
    with pytest.raises(ValueError, match="float64"):
        qkv_wgpu.Projector(ws[0].astype(np.float64), ws[1], ws[2])
    # Anything NumPy views without a copy is taken: a memoryview of a float32 array.
    q, _, _ = p(memoryview(x))
    assert_close(q, reference(x, ws)[0], 8)


def test_a_run_stopped_by_ctrl_c_raises_keyboard_interrupt_and_the_projector_goes_on():
    import _thread
    import signal
    import threading
    import time

    # Python's own SIGINT handler, whatever this process inherited: a shell that runs the
    # tests in the background without job control starts them with SIGINT ignored, and then
    # `interrupt_main` does nothing.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        rng = np.random.default_rng(7)
        ws, _ = weights(rng, 64, 64, 64, False)
        # 16384 tokens in chunks of 32: 512 chunks, Ctrl-C looked for after each.
        p = qkv_wgpu.Projector(*ws, kernel="tiled", chunk_tokens=32)
        x = rand(rng, 16384, 64)
        # Timed warm: a first run's pipeline builds and buffers would make the interrupt
        # come after a warm run has already finished.
        p(x)
        start = time.perf_counter()
        p(x)
        whole = time.perf_counter() - start
        timer = threading.Timer(whole / 4, _thread.interrupt_main)
        timer.start()
        start = time.perf_counter()
        with pytest.raises(KeyboardInterrupt):
            p(x)
        stopped = time.perf_counter() - start
        timer.join()
        assert stopped < whole * 0.9, (stopped, whole)
        small = rand(rng, 70, 64)
        for got, want in zip(p(small), reference(small, ws)):
            assert_close(got, want, 64)
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.mark.parametrize("dtype", ["f32", "bf16"])
def test_a_batch_of_many_chunks_streams_into_the_outputs(dtype):
    # 70 tokens in chunks of 16 (the last one short), and 6 sequences of 11 in chunks of
    # two whole sequences, split into heads: every chunk lands where it belongs.
    rng = np.random.default_rng(8)
    ws, bs = weights(rng, 40, 24, 8, True)
    x = rand(rng, 70, 40)
    p = qkv_wgpu.Projector(*ws, *bs, dtype=dtype, kernel="naive", chunk_tokens=16)
    for got, want in zip(p(x), reference(x, ws, bs, dtype)):
        assert_close(got, want, 40, dtype)
    ws, bs = weights(rng, 40, 24, 12, True)
    x3 = rand(rng, 6, 11, 40)
    p = qkv_wgpu.Projector(*ws, *bs, dtype=dtype, kernel="naive", chunk_tokens=22, heads=4,
                           kv_heads=2, head_layout="heads")
    q, k, v = p(x3)
    for out, (y, s), n in zip((q, k, v), reference(x3.reshape(66, 40), ws, bs, dtype),
                              (4, 2, 2)):
        split = lambda a: a.reshape(6, 11, n, 6).transpose(0, 2, 1, 3)  # noqa: E731
        assert_close(out, (split(y), split(s)), 40, dtype)


def test_outputs_too_large_for_memory_raise_memory_error_before_any_work():
    # d_model 1 and 2^20-wide Q, K, V: 100000 tokens of X are 400 kB, their outputs 1.26 TB.
    w = np.ones((1, 1 << 20), dtype=np.float32)
    p = qkv_wgpu.Projector(w, w, w, kernel="naive")
    says = r"Q, K and V of 100000 tokens as float32 1258\.3 GB.*qkv project"
    with pytest.raises(MemoryError, match=says):
        p(np.ones((100000, 1), dtype=np.float32))
