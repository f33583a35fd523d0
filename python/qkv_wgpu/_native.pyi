"""Type stubs of the extension module (see the package's docstring)."""

from typing import Any, Optional, Tuple

import numpy as np
import numpy.typing as npt

class GpuError(RuntimeError):
    """A GPU failed: no adapter, a device error, a lost device, a limit past the device's."""

def adapters(
    backend: Optional[str] = None, adapter: Optional[str] = None
) -> list[dict[str, Any]]:
    """The adapters wgpu sees (those `backend` and `adapter`, a name substring, allow), as
    dicts: name, backend, type, driver, limits, features, f16, subgroups ((min, max) sizes,
    or None), cooperative_matrices. With neither given, QKV_BACKEND and QKV_ADAPTER apply."""

class Projector:
    """The fused projection of X [tokens, d_model] through Wq, Wk, Wv (and biases).

    Weights are 2-D float32 arrays: in-out [d_model, width] (GPT-2's Conv1D) with
    ``layout="in-out"``, or PyTorch's Linear [width, d_model] with ``layout="out-in"``.
    ``dtype`` is the storage type on the GPU ("f32", "f16", "bf16"); ``kernel`` "auto" (the
    configuration autotuned for the adapter and shape class, cached like the CLI's) or a
    configuration string such as "texture(wg=32)". ``backend``/``adapter`` pick the GPU.
    """

    def __init__(
        self,
        wq: npt.NDArray[np.float32],
        wk: npt.NDArray[np.float32],
        wv: npt.NDArray[np.float32],
        bq: Optional[npt.NDArray[np.float32]] = None,
        bk: Optional[npt.NDArray[np.float32]] = None,
        bv: Optional[npt.NDArray[np.float32]] = None,
        *,
        layout: str = "in-out",
        dtype: str = "f32",
        kernel: str = "auto",
        backend: Optional[str] = None,
        adapter: Optional[str] = None,
    ) -> None: ...
    @property
    def d_model(self) -> int: ...
    @property
    def adapter(self) -> dict[str, Any]: ...
    def __call__(
        self, x: npt.NDArray[np.float32]
    ) -> Tuple[
        npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.float32]
    ]:
        """Q, K, V of X [tokens, d_model] (C-contiguous float32) as float32 arrays."""
    def check(self, x: npt.NDArray[np.float32]) -> dict[str, Any]:
        """Projects X and checks every row against the f64 reference of the inputs as the
        GPU read them: pass, max_abs_err, max_rel_err, rel_l2_err, precision_* (half types),
        atol, rtol, ttol, checked_rows, kernel, report."""
    def time(self, x: npt.NDArray[np.float32], repeats: int = 5) -> dict[str, Any]:
        """Checks, then times the projection of X: `repeats` end-to-end runs after an
        untimed first one (each checked), then, if every run passed, `repeats` back-to-back
        kernel dispatches. Keys: kernel, tokens, pass, kernel_ms (median, NaN when the check
        failed), kernel_ms_min, kernel_ms_max, timer, end_to_end_ms, tokens_per_s, gflops,
        max_abs_err. One row of a pandas DataFrame."""
