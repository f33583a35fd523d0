"""qkv-wgpu from Python: the fused Q/K/V projection of self-attention on any GPU.

Q = X·Wq (+ bq), K = X·Wk (+ bk), V = X·Wv (+ bv), computed in one fused dispatch of a WGSL
compute shader through wgpu (Vulkan, Metal, DX12), NumPy arrays in and out::

    import numpy as np, qkv_wgpu
    wq, wk, wv = (np.random.rand(768, 768).astype(np.float32) for _ in range(3))
    p = qkv_wgpu.Projector(wq, wk, wv)          # in-out weights [d_model, width]
    x = np.random.rand(2048, 768).astype(np.float32)
    q, k, v = p(x)
    p.check(x)["pass"]                           # against the f64 reference
    p.time(x)                                    # kernel and end-to-end times, a dict
    qkv_wgpu.bench("gpt2", tokens=[512, 2048])  # the rows `qkv bench --json` prints

Or from a checkpoint, as ``qkv project`` reads it::

    p = qkv_wgpu.Projector.from_checkpoint("model.safetensors", "h.0", dtype="bf16")

A corpus of X shards, each written into its own directory with a manifest as ``qkv project
--input 'corpus/*.npy'`` writes it (a rerun skips what is complete)::

    for path in qkv_wgpu.shard_paths(["corpus/*.npy"]):
        p.project_shard(path, "corpus-out")["state"]    # "projected", "skipped", "failed"

and on a Ray cluster, ``qkv_wgpu.ray.project_shards`` (or ``qkv_wgpu.ray.Project``, Ray
Data's callable class).

Inputs (X, weights, biases) are float32, float16 or ``ml_dtypes.bfloat16`` arrays; X must be
C-contiguous and is never copied by the module (its one copy is the upload to the GPU): a
float64 array or a strided view is refused with a ``ValueError`` that says how to convert it.
Q, K, V come back in the storage type (``dtype``): float32, float16, or bfloat16 as
``ml_dtypes.bfloat16`` where ``ml_dtypes`` is installed, else widened to float32 exactly
(``out_dtype="float32"`` always widens).

The GIL is released while the GPU works and while the host converts, checks or tunes; Ctrl-C
stops a run between chunks (``chunk_tokens`` sets their size) with ``KeyboardInterrupt``.
Errors: ``ValueError`` for shapes, types and bad input (weights holding NaN or Inf among
them), ``qkv_wgpu.GpuError`` (a ``RuntimeError``) for the device, ``OSError`` for files,
``MemoryError``, before any work, where what a call, check, time, bench or the constructor
would allocate would not fit in the memory left (the machine's, the container's, or
``ulimit -v``).
"""

from ._native import project_shard as _project_shard
from ._native import (
    GpuError,
    Projector,
    adapters,
    bench,
    dequantize,
    gguf_layer,
    quantize,
    shard_paths,
)

__all__ = [
    "GpuError",
    "Projector",
    "adapters",
    "bench",
    "dequantize",
    "gguf_layer",
    "quantize",
    "shard_paths",
]

# A class's __call__ made in Rust is a slot, whose help Python writes itself ("Call self as a
# function."): it is called through this function, which carries the documentation. (Where
# the package is reloaded, Projector.__call__ is already this function: its slot is kept.)
_slot = getattr(Projector.__call__, "_slot", Projector.__call__)


def __call__(self, x, *, position_offset=None, positions=None):
    """Q, K, V of X [tokens, d_model] or [batch, seq, d_model].

    X is a C-contiguous float32, float16 or bfloat16 array, never copied (its one copy is the
    upload to the GPU). Q, K, V come back in the storage type (``dtype``; float32 with
    ``out_dtype="float32"``) as [tokens, width] ([batch, seq, width] for 3-D X), or as
    [batch, heads, seq, head_dim] with ``head_layout="heads"``. The call streams X chunk by
    chunk with the GIL released; Ctrl-C stops it between chunks (``KeyboardInterrupt``).

    A projector made with ``rope=True`` rotates Q and K at each token's position: from
    ``position_offset`` (a decode step's: the tokens before it; 0 if not given) within each
    sequence, or ``positions``, one integer per token (a sequence or NumPy array). The
    positions are the call's own: the next call starts again from 0 unless told otherwise.

    Raises ``ValueError`` for a wrong shape or type, or X holding NaN or Inf, or positions
    without ``rope=True``; ``MemoryError``, before any work, where Q, K and V would not fit in
    the memory left.
    """
    return _slot(self, x, position_offset=position_offset, positions=positions)


__call__.__qualname__ = "Projector.__call__"
__call__._slot = _slot
Projector.__call__ = __call__
del __call__


def project_shard(self, input, out, *, out_format="npy", check=True, check_rows=None,
                  force=False, allow_nonfinite=False):
    """One shard of a corpus (the X of the .npy file ``input``) projected into
    ``out/<name>/`` (name: the file's name without ``.npy``) exactly as ``qkv project
    --input 'dir/*.npy' --out out`` writes it: ``q.npy``, ``k.npy``, ``v.npy`` (or
    ``qkv.safetensors`` with ``out_format="safetensors"``) and the manifest ``shard.json``,
    put in place all or none, and only where the check passed.

    The check is sampled over every chunk (``check_rows``: "all" or a number of rows; by
    default the CLI's: every row while that is cheap, else a sample); ``check=False`` leaves
    it out (every element is still scanned for NaN and infinities). A shard whose manifest
    still vouches for its outputs is skipped; outputs it cannot vouch for (another input,
    other weights or settings, changed files) are left as they are unless ``force=True``; X
    holding NaN or Inf is refused unless ``allow_nonfinite=True``. ``qkv project`` and this
    method share the manifests: each skips the shards the other completed.

    A failure is the shard's, returned rather than raised, so that a corpus goes on past it
    (``ValueError`` for bad arguments and ``KeyboardInterrupt`` for Ctrl-C are raised): a
    dict with ``name``, ``input``, ``dir``, ``tokens``, ``state`` ("projected", "skipped" or
    "failed"), ``error``, ``pass``, ``max_abs_err``, ``max_rel_err``, ``checked_rows``,
    ``kernel``, ``kernel_ms``, ``gpu_total_ms``, ``seconds``, ``outputs`` (the files put in
    place) and ``adapter``.
    """
    return _project_shard(self, input, out, out_format=out_format, check=check,
                          check_rows=check_rows, force=force, allow_nonfinite=allow_nonfinite)


project_shard.__qualname__ = "Projector.project_shard"
Projector.project_shard = project_shard
del project_shard
