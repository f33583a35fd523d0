"""The Python module against NumPy float64, on the adapter CI names (QKV_BACKEND)."""

import threading
import time

import numpy as np
import pytest

import qkv_wgpu
from helpers import assert_close, rand, reference


def test_there_is_an_adapter_and_it_says_what_it_offers():
    found = qkv_wgpu.adapters()
    assert found, "no adapter: GPU tests fail, never skip"
    a = found[0]
    for key in ["name", "backend", "type", "limits", "features", "f16", "subgroups",
                "cooperative_matrices"]:
        assert key in a, key
    assert a["limits"]["max_buffer_size"] > 0


def test_the_worked_example_is_exact():
    # x = (2, 3), W = [[1, 10], [0, -1]] gives y = (2, 17), for Q, K and V alike.
    w = np.array([[1.0, 10.0], [0.0, -1.0]], dtype=np.float32)
    p = qkv_wgpu.Projector(w, w, w, kernel="naive")
    q, k, v = p(np.array([[2.0, 3.0]], dtype=np.float32))
    for out in (q, k, v):
        assert out.tolist() == [[2.0, 17.0]]


@pytest.mark.parametrize("tokens,d_model,q_width,kv_width,bias", [
    (1, 1, 1, 1, False),
    (17, 33, 64, 16, True),
    (70, 100, 96, 32, False),
    (33, 50, 24, 8, True),
])
@pytest.mark.parametrize("kernel", ["naive", "tiled", "texture(wg=32)"])
def test_ragged_shapes_with_and_without_bias_match_numpy(tokens, d_model, q_width, kv_width,
                                                         bias, kernel):
    rng = np.random.default_rng(tokens * 1000 + d_model)
    ws = [rand(rng, d_model, q_width), rand(rng, d_model, kv_width), rand(rng, d_model, kv_width)]
    bs = [rand(rng, q_width), rand(rng, kv_width), rand(rng, kv_width)] if bias else None
    p = qkv_wgpu.Projector(*ws, *(bs or []), kernel=kernel)
    x = rand(rng, tokens, d_model)
    for got, want in zip(p(x), reference(x, ws, bs)):
        assert_close(got, want, d_model)


def test_pytorch_linear_layout_is_transposed():
    rng = np.random.default_rng(5)
    ws = [rand(rng, 40, 24), rand(rng, 40, 8), rand(rng, 40, 8)]
    x = rand(rng, 9, 40)
    p = qkv_wgpu.Projector(*[w.T.copy() for w in ws], layout="out-in", kernel="naive")
    for got, want in zip(p(x), reference(x, ws)):
        assert_close(got, want, 40)


def test_check_returns_the_report_as_a_dict():
    rng = np.random.default_rng(6)
    ws = [rand(rng, 32, 16) for _ in range(3)]
    p = qkv_wgpu.Projector(*ws, kernel="tiled")
    r = p.check(rand(rng, 21, 32))
    assert r["pass"] is True
    assert r["checked_rows"] == 21
    assert 0 < r["max_abs_err"] < 1e-4
    assert r["kernel"] == "tiled"
    assert "PASS" in r["report"]


def test_time_checks_then_times_and_reports_a_row():
    rng = np.random.default_rng(10)
    ws = [rand(rng, 64, 32) for _ in range(3)]
    p = qkv_wgpu.Projector(*ws, kernel="tiled")
    r = p.time(rand(rng, 40, 64), repeats=2)
    assert r["pass"] is True and r["kernel"] == "tiled" and r["tokens"] == 40
    assert 0 < r["kernel_ms_min"] <= r["kernel_ms"] <= r["kernel_ms_max"]
    assert r["end_to_end_ms"] > 0 and r["tokens_per_s"] > 0 and r["gpu_gflops"] > 0
    assert r["kernel_timer"] in ("GpuTimestamp", "Host")
    with pytest.raises(ValueError, match="repeats"):
        p.time(rand(rng, 4, 64), repeats=0)


def test_bad_input_raises_value_error_with_the_message():
    rng = np.random.default_rng(7)
    ws = [rand(rng, 8, 4) for _ in range(3)]
    p = qkv_wgpu.Projector(*ws, kernel="naive")
    with pytest.raises(ValueError, match="columns"):
        p(rand(rng, 3, 9))
    with pytest.raises(ValueError, match="no rows"):
        p(np.zeros((0, 8), dtype=np.float32))
    with pytest.raises(ValueError, match="C-contiguous"):
        p(rand(rng, 8, 16)[:, ::2])
    with pytest.raises(ValueError, match="unknown kernel"):
        qkv_wgpu.Projector(*ws, kernel="bogus")
    with pytest.raises(ValueError, match="runs one configuration"):
        qkv_wgpu.Projector(*ws, kernel="naive,tiled")
    # None is the one way to ask for the automatic chunk size: 0 is refused, in the library's
    # words (as `qkv --chunk-tokens 0` and the page refuse it).
    with pytest.raises(ValueError, match="^invalid input: chunk_tokens must be at least 1$"):
        qkv_wgpu.Projector(*ws, kernel="naive", chunk_tokens=0)
    with pytest.raises(ValueError, match="layout"):
        qkv_wgpu.Projector(*ws, layout="sideways")
    with pytest.raises(ValueError, match="three biases"):
        qkv_wgpu.Projector(*ws, rand(rng, 4))
    x = rand(rng, 3, 8)
    x[1, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        p(x)


def test_gpu_error_is_a_runtime_error():
    assert issubclass(qkv_wgpu.GpuError, RuntimeError)


def test_two_threads_on_one_projector_and_on_two_get_their_own_answers():
    rng = np.random.default_rng(8)
    ws = [rand(rng, 48, 32) for _ in range(3)]
    shared = qkv_wgpu.Projector(*ws, kernel="tiled")
    own = [qkv_wgpu.Projector(*ws, kernel="naive") for _ in range(2)]
    xs = [rand(rng, 20 + i, 48) for i in range(4)]
    errors = []

    def work(p, x):
        try:
            for got, want in zip(p(x), reference(x, ws)):
                assert_close(got, want, 48)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(shared, xs[0])),
               threading.Thread(target=work, args=(shared, xs[1])),
               threading.Thread(target=work, args=(own[0], xs[2])),
               threading.Thread(target=work, args=(own[1], xs[3]))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


def test_the_gil_is_released_while_the_gpu_works():
    # A Python thread wakes every millisecond while the main thread projects a batch that
    # takes a while on a CPU driver. Were the GIL held through the projection, the thread
    # could not wake during it: the longest gap between its wakes would be the whole call.
    rng = np.random.default_rng(9)
    ws = [rand(rng, 256, 256) for _ in range(3)]
    p = qkv_wgpu.Projector(*ws, kernel="naive")
    x = rand(rng, 2048, 256)
    p(x[:1].copy())  # the pipeline made and warmed up
    p(x)
    ticks = []
    stop = threading.Event()

    def tick():
        while not stop.is_set():
            ticks.append(time.perf_counter())
            time.sleep(0.001)

    t = threading.Thread(target=tick)
    t.start()
    time.sleep(0.02)
    try:
        start = time.perf_counter()
        p(x)
        end = time.perf_counter()
    finally:
        stop.set()
        t.join()
    assert end - start > 0.05, f"the call took {end - start:.3f} s: too short to tell"
    wakes = [start] + [w for w in ticks if start < w < end] + [end]
    longest = max(b - a for a, b in zip(wakes, wakes[1:]))
    assert longest < (end - start) / 2, (longest, end - start, len(wakes))


def test_a_correct_result_whose_errors_do_not_cancel_passes_flagged():
    # Issue #32: X = 1, W = 1.1 over d_model 4096 summed in order rounds the same way at
    # every step: past the probabilistic bound, within the deterministic one. PASS, flagged.
    w = np.full((4096, 8), 1.1, np.float32)
    p = qkv_wgpu.Projector(w, w, w, kernel="naive")
    r = p.check(np.ones((2, 4096), np.float32))
    assert r["pass"], r["report"]
    assert r["flagged"] > 0 and r["decided_by"] == "deterministic", r
    assert r["sound_ttol"] > r["ttol"]
    assert "errors did not cancel" in r["report"]
