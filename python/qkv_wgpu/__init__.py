"""qkv-wgpu from Python: the fused Q/K/V projection of self-attention on any GPU.

Q = X·Wq (+ bq), K = X·Wk (+ bk), V = X·Wv (+ bv), computed in one fused dispatch of a WGSL
compute shader through wgpu (Vulkan, Metal, DX12), NumPy arrays in and out::

    import numpy as np, qkv_wgpu
    wq, wk, wv = (np.random.rand(768, 768).astype(np.float32) for _ in range(3))
    p = qkv_wgpu.Projector(wq, wk, wv)          # in-out weights [d_model, width]
    q, k, v = p(np.random.rand(2048, 768).astype(np.float32))
    p.check(x)["pass"]                           # against the f64 reference

The GIL is released while the GPU works and while the host converts, checks or tunes.
Errors: ``ValueError`` for shapes, types and bad input, ``qkv_wgpu.GpuError`` (a
``RuntimeError``) for the device, ``OSError`` for files.
"""

from ._native import GpuError, Projector, adapters

__all__ = ["GpuError", "Projector", "adapters"]
