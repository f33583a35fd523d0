"""Honest verdicts and a safe interpreter: no deadlock between properties and a running call,
no NaN weights, a MemoryError (never an abort) before anything too large, a check against
X as the GPU read it, a quiet first use, and the names and help the documentation gives."""

import importlib
import os
import pydoc
import re
import subprocess
import sys
import threading

import numpy as np
import pytest

import qkv_wgpu
from helpers import cli_bench_keys, rand


def run_python(script, timeout, env=None, cwd=None):
    """`script` in a fresh interpreter: a hang or a crash fails the test instead of
    stopping the test run."""
    try:
        return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                              timeout=timeout, env=env, cwd=cwd)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"still running after {timeout} s (a deadlock?): {e.stdout} {e.stderr}")


PROPERTIES_DURING_A_CALL = r"""
import threading, numpy as np, qkv_wgpu
rng = np.random.default_rng(0)
ws = [rng.uniform(-1, 1, (64, 32)).astype(np.float32) for _ in range(3)]
p = qkv_wgpu.Projector(*ws, kernel="naive", chunk_tokens=4)
x = rng.uniform(-1, 1, (512, 64)).astype(np.float32)
p(x)
done = threading.Event()
def work():
    try:
        for _ in range(2):
            p(x)
            p.check(x)
    finally:
        done.set()
t = threading.Thread(target=work)
t.start()
reads = 0
while not done.is_set():
    for name in ("d_model", "q_width", "kv_width", "dtype", "adapter", "kernel"):
        getattr(p, name)
    reads += 1
t.join()
print("reads", reads, p.kernel)
"""


def test_properties_read_while_another_thread_projects_never_deadlock():
    # The properties once waited for the projector's lock with the GIL held, while the call
    # holding the lock waited for the GIL between chunks (to look for Ctrl-C).
    done = run_python(PROPERTIES_DURING_A_CALL, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"reads [1-9]\d* naive", done.stdout), done.stdout


@pytest.mark.parametrize("layout", ["in-out", "out-in"])
def test_weights_and_biases_holding_nan_or_inf_are_refused_naming_tensor_and_index(layout):
    w = np.ones((8, 8), dtype=np.float32)
    b = np.zeros(8, dtype=np.float32)
    bad = w.copy()
    bad[2, 3] = np.nan
    bad[5, 1] = np.nan
    with pytest.raises(ValueError, match=r"wk has 2 non-finite values \(first: NaN at \[2, 3\]\)"):
        qkv_wgpu.Projector(w, bad, w, layout=layout, kernel="naive")
    bad_b = b.copy()
    bad_b[1] = np.inf
    with pytest.raises(ValueError, match=r"bv has 1 non-finite value \(first: inf at \[1\]\)"):
        qkv_wgpu.Projector(w, w, w, b, b, bad_b, layout=layout, kernel="naive")
    half = w.astype(np.float16)
    half[0, 7] = -np.inf
    with pytest.raises(ValueError, match=r"wq has 1 non-finite value \(first: -inf at \[0, 7\]\)"):
        qkv_wgpu.Projector(half, w, w, layout=layout, kernel="naive")


TOO_LARGE = r"""
import resource, sys, numpy as np, qkv_wgpu

def vm_size():
    for line in open("/proc/self/status"):
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024

def expect(name, f):
    try:
        f()
    except MemoryError as e:
        print(name, "MemoryError:", e, flush=True)
    except Exception as e:
        print(name, type(e).__name__ + ":", e, flush=True)
    else:
        print(name, "no error", flush=True)

# d_model 1 and 2^20-wide Q, K, V: 100000 tokens of X are 400 kB, Q, K and V 1.26 TB.
w = np.ones((1, 1 << 20), dtype=np.float32)
p = qkv_wgpu.Projector(w, w, w, kernel="naive")
x = np.ones((100000, 1), dtype=np.float32)
p(x[:2])
# This process may now take 4 GB more than it holds (an allocation past that fails, as on a
# machine out of memory): the guard heeds the limit.
resource.setrlimit(resource.RLIMIT_AS, (vm_size() + (4 << 30), resource.RLIM_INFINITY))
expect("call", lambda: p(x))
expect("check", lambda: p.check(x))
expect("time", lambda: p.time(x, repeats=1))
expect("bench-tokens", lambda: qkv_wgpu.bench(d_model=1, q_width=1 << 20, tokens=[100000],
                                               kernel="naive", repeats=1))
# `qkv run --d-model 32768 --q-width 32768`: 12.9 GB of weights.
expect("bench-weights", lambda: qkv_wgpu.bench(d_model=32768, q_width=32768, tokens=[1],
                                                kernel="naive", repeats=1, cpu=False))
big = np.zeros((1 << 14, 1 << 14), dtype=np.float32)  # 1 GB, never touched
expect("constructor", lambda: qkv_wgpu.Projector(big, big, big, kernel="naive"))
print("still usable:", p(x[:3])[0].shape)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc, sets RLIMIT_AS")
def test_everything_too_large_for_memory_raises_memory_error_before_allocating():
    done = run_python(TOO_LARGE, timeout=300)
    out = done.stdout
    assert done.returncode == 0, f"exit {done.returncode}: {out} {done.stderr}"
    for name, says in [
        ("call", r"needs about 1258\.3 GB of memory \(Q, K and V of 100000 tokens as float32 "
                 r"1258\.3 GB\)"),
        ("check", r"needs about \d+\.\d GB .* available; checking 100000 tokens .*"
                  r"check X in parts"),
        ("time", r"needs about \d+\.\d GB .* available; timing 100000 tokens .*time X in parts"),
        ("bench-tokens", r"needs about \d+\.\d GB .* available; custom at 100000 tokens in "
                         r"f32 is a row of this sweep: use fewer tokens .*"
                         r"no CPU baseline \(cpu=False\)"),
        ("bench-weights", r"needs about \d+\.\d GB of memory \(weights \(f32, generated\) "
                          r"12\.9 GB, .* available; custom at 1 token in f32"),
        ("constructor", r"needs about \d+\.\d GB of memory \(the weights widened to float32 .* "
                        r"available; the weights \(\d+ values\)"),
    ]:
        line = next((li for li in out.splitlines() if li.startswith(name + " ")), "")
        assert re.match(rf"{name} MemoryError: .*{says}", line), (name, out)
    assert "still usable: (3, 1048576)" in out, out


def test_check_compares_with_x_as_the_gpu_read_it_while_another_thread_writes_x():
    # The reference is of X as uploaded: a thread flipping X's sign meanwhile cannot turn a
    # correct result into a FAIL.
    rng = np.random.default_rng(11)
    ws = [rand(rng, 64, 32) for _ in range(3)]
    p = qkv_wgpu.Projector(*ws, kernel="naive", chunk_tokens=16)
    x = rand(rng, 1024, 64)
    assert p.check(x)["pass"] is True
    stop = threading.Event()

    def scribble():
        while not stop.is_set():
            np.negative(x, out=x)

    t = threading.Thread(target=scribble)
    t.start()
    try:
        checked = p.check(x)
        timed = p.time(x, repeats=2)
    finally:
        stop.set()
        t.join()
    assert checked["pass"] is True, checked["report"]
    assert timed["pass"] is True, timed


FIRST_USE = r"""
import ctypes, numpy as np, qkv_wgpu
w = np.eye(4, dtype=np.float32)
qkv_wgpu.Projector(w, w, w, kernel="naive")(np.ones((2, 4), dtype=np.float32))
qkv_wgpu.adapters()
got = ctypes.CDLL(None).getenv
got.restype = ctypes.c_char_p
print("NODEVICE_SELECT", got(b"NODEVICE_SELECT"))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Mesa's device-select layer")
def test_first_use_without_a_session_prints_nothing_and_a_users_setting_stands():
    env = {k: v for k, v in os.environ.items()
           if k not in ("XDG_RUNTIME_DIR", "NODEVICE_SELECT", "MESA_VK_DEVICE_SELECT")}
    done = run_python(FIRST_USE, timeout=300, env=env)
    assert done.returncode == 0, done.stderr
    assert "XDG_RUNTIME_DIR" not in done.stderr, done.stderr
    assert "NODEVICE_SELECT b'1'" in done.stdout, done.stdout
    done = run_python(FIRST_USE, timeout=300, env={**env, "NODEVICE_SELECT": "0"})
    assert "NODEVICE_SELECT b'0'" in done.stdout, done.stdout + done.stderr


def test_time_and_bench_name_their_measures_alike():
    rng = np.random.default_rng(12)
    ws = [rand(rng, 32, 16) for _ in range(3)]
    r = qkv_wgpu.Projector(*ws, kernel="tiled").time(rand(rng, 10, 32), repeats=1)
    # The measures bench's rows have go by bench's names; time() adds only the spread of
    # the kernel's times and the throughput end to end.
    assert set(r) - set(cli_bench_keys()) == {"kernel_ms_min", "kernel_ms_max", "tokens_per_s"}
    assert r["gpu_gflops"] > 0 and r["kernel_timer"] in ("GpuTimestamp", "Host")


def test_calling_a_projector_is_documented():
    text = pydoc.render_doc(qkv_wgpu.Projector.__call__, renderer=pydoc.plaintext)
    assert "Call self as a function" not in text, text
    assert "Q, K, V of X" in text and "[batch, seq, d_model]" in text, text
    assert "Q, K, V of X" in pydoc.render_doc(qkv_wgpu.Projector, renderer=pydoc.plaintext)
    # The documented __call__ survives a reload of the package (no call through itself).
    importlib.reload(qkv_wgpu)
    w = np.eye(4, dtype=np.float32)
    q, _, _ = qkv_wgpu.Projector(w, w, w, kernel="naive")(np.ones((2, 4), dtype=np.float32))
    assert q.tolist() == [[1.0] * 4] * 2
