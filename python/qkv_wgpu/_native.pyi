"""Type stubs of the extension module (see the package's docstring)."""

from os import PathLike
from typing import Any, Optional, Sequence, Tuple, Union

import numpy as np
import numpy.typing as npt

# float32, float16, or ml_dtypes.bfloat16.
Array = npt.NDArray[Any]
Names = Union[str, Sequence[str]]

class GpuError(RuntimeError):
    """A GPU failed: no adapter, a device error, a lost device, a limit past the device's."""

def adapters(
    backend: Optional[str] = None, adapter: Optional[str] = None
) -> list[dict[str, Any]]:
    """The adapters wgpu sees (those `backend` and `adapter`, a name substring, allow), as
    dicts: name, backend, type, driver, limits, features, f16, subgroups ((min, max) sizes,
    or None), cooperative_matrices. With neither given, QKV_BACKEND and QKV_ADAPTER apply."""

def bench(
    shape: Optional[Names] = None,
    *,
    tokens: Optional[Sequence[int]] = None,
    max_tokens: int = 1024,
    dtype: Optional[Names] = None,
    kernel: Optional[Names] = None,
    repeats: int = 3,
    cpu: bool = True,
    seed: int = 42,
    d_model: Optional[int] = None,
    q_width: Optional[int] = None,
    kv_width: Optional[int] = None,
    bias: bool = False,
    chunk_tokens: Optional[int] = None,
    backend: Optional[str] = None,
    adapter: Optional[str] = None,
    weight_type: Optional[str] = None,
) -> list[dict[str, Any]]:
    """`qkv bench` from Python: each named shape ("gpt2" by default; "bert-base", "vit-b16",
    "llama3-8b", "all") or the custom one (d_model, q_width, kv_width, bias) at each token
    count (default: powers of two up to max_tokens), in each storage type ("f32" by
    default), W stored as `weight_type` where given ("q4_0", or "q4_k,q4_k,q6_k" for Q, K,
    V: kept in its blocks on the GPU), with each kernel configuration ("auto": the autotuned
    one; "all"; or configurations as `qkv bench --kernel` takes them), checked then timed: the library's own
    sweep, every shape checked against the device and the memory left before any is measured.
    ``chunk_tokens``: None (the default) for the size that fits; 0 is refused. The rows
    `qkv bench --json` prints, as dicts (pandas.DataFrame(rows) takes them)."""

class Projector:
    """The fused projection of X through Wq, Wk, Wv (and biases).

    Weights are 2-D float32, float16 or bfloat16 arrays: in-out [d_model, width] (GPT-2's
    Conv1D) with ``layout="in-out"``, or PyTorch's Linear [width, d_model] with
    ``layout="out-in"``; biases 1-D. ``dtype`` is the storage type on the GPU ("f32", "f16",
    "bf16"); ``kernel`` "auto" (the configuration autotuned for the adapter and shape class,
    cached like the CLI's) or a configuration string such as "texture(wg=32)". ``heads`` (and
    ``kv_heads``, by default as many as K's width holds at Q's head size: GQA) with
    ``head_layout="heads"`` return Q as [batch, heads, seq, head_dim] and K, V as
    [batch, kv_heads, seq, head_dim]. ``chunk_tokens`` fixes the tokens per chunk (None, the
    default: the largest that fits the device's buffers; 0 is refused).
    ``out_dtype="float32"`` widens half-typed results. ``backend``/``adapter`` pick the GPU.
    """

    def __init__(
        self,
        wq: Array,
        wk: Array,
        wv: Array,
        bq: Optional[Array] = None,
        bk: Optional[Array] = None,
        bv: Optional[Array] = None,
        *,
        layout: str = "in-out",
        dtype: str = "f32",
        kernel: str = "auto",
        heads: Optional[int] = None,
        kv_heads: Optional[int] = None,
        head_layout: str = "tokens",
        chunk_tokens: Optional[int] = None,
        out_dtype: Optional[str] = None,
        backend: Optional[str] = None,
        adapter: Optional[str] = None,
    ) -> None: ...
    @staticmethod
    def from_checkpoint(
        path: Union[str, PathLike[str]],
        prefix: Optional[str] = None,
        *,
        names: Optional[Names] = None,
        bias_names: Optional[Names] = None,
        weight_layout: Optional[str] = None,
        d_model: Optional[int] = None,
        dtype: str = "f32",
        kernel: str = "auto",
        heads: Optional[int] = None,
        kv_heads: Optional[int] = None,
        head_layout: str = "tokens",
        chunk_tokens: Optional[int] = None,
        out_dtype: Optional[str] = None,
        backend: Optional[str] = None,
        adapter: Optional[str] = None,
        original_order: bool = False,
        weight_type: Optional[str] = None,
        rope: bool = False,
        qk_norm: bool = False,
        config: Optional[Union[str, PathLike[str]]] = None,
    ) -> "Projector":
        """One attention layer's projection from a safetensors or GGUF checkpoint, as `qkv
        project` reads it: under `prefix` by the BERT, Llama and GPT-2 naming conventions, or
        `names` (one fused matrix, or Wq, Wk, Wv) and `bias_names`. F16/BF16 tensors stay
        in their type. A GGUF file's layer is `prefix` ("blk.0"), each matrix in its format
        (block formats kept in their blocks on the GPU), heads from its metadata;
        `original_order=True` undoes llama.cpp's reordering of Q's and K's rows. `weight_type`
        ("q4_0", or "q4_k,q4_k,q6_k" for Q, K, V) quantizes on load. Weights holding NaN or
        Inf are refused. `rope=True` and `qk_norm=True` apply the model's own RoPE and
        QK-norm to Q and K on the GPU after the projection, in f32 before the final rounding,
        as `qkv project --rope --qk-norm` does: from `config` (default: config.json beside a
        safetensors checkpoint) and the layer's q_norm/k_norm weights, or from a GGUF file's
        metadata and attn_q_norm/attn_k_norm; heads from the same files."""
    @property
    def d_model(self) -> int: ...
    @property
    def q_width(self) -> int: ...
    @property
    def kv_width(self) -> int: ...
    @property
    def dtype(self) -> str: ...
    @property
    def adapter(self) -> dict[str, Any]: ...
    @property
    def kernel(self) -> Optional[str]:
        """The configuration the last call ran (None before the first)."""
    @property
    def epilogue(self) -> Optional[str]:
        """The RoPE and QK-norm applied to Q and K, in words (None without them)."""
    @property
    def epilogue_plan(self) -> Optional[str]:
        """Where the last call's RoPE and QK-norm ran: fused into the kernel's store
        (blocktile, heads that fit its 128-column tile), or a pass after it and why (None
        without them, or before the first call)."""
    def __call__(
        self,
        x: Array,
        *,
        position_offset: Optional[int] = None,
        positions: Optional[Sequence[int]] = None,
    ) -> Tuple[Array, Array, Array]:
        """Q, K, V of X [tokens, d_model] or [batch, seq, d_model] (C-contiguous float32,
        float16 or bfloat16; never copied), in the storage type (see the class). With
        rope=True, Q and K are rotated at each token's position: position_offset + its index
        within its sequence, or positions (one per token)."""
    def check(self, x: Array) -> dict[str, Any]:
        """Projects X and checks every row against the f64 reference of the inputs as the
        GPU read them: pass, max_abs_err, max_rel_err, rel_l2_err, precision_* (half types),
        atol, rtol, ttol (the probabilistic bound), sound_ttol (the deterministic one), qk_ttol
        (Q's and K's ttol: with rope= or qk_norm=, the epilogue's own rounding added),
        flagged (elements between the two: correct, their errors did not cancel),
        worst_flagged, decided_by, checked_rows, kernel, report."""
    def time(self, x: Array, repeats: int = 5) -> dict[str, Any]:
        """Checks, then times the projection of X: `repeats` end-to-end runs after an
        untimed first one (each checked), then, if every run passed, `repeats` back-to-back
        kernel dispatches. Keys, named as in bench()'s rows where they measure the same:
        kernel, tokens, dtype, pass, kernel_ms (median, NaN when the check failed),
        kernel_ms_min, kernel_ms_max, kernel_timer ("GpuTimestamp" or "Host"; "" when the
        check failed), end_to_end_ms, tokens_per_s, gpu_gflops, max_abs_err. A list of these
        dicts (or of bench()'s rows) is a pandas DataFrame."""
    def project_shard(
        self,
        input: Union[str, PathLike[str]],
        out: Union[str, PathLike[str]],
        *,
        out_format: str = "npy",
        check: bool = True,
        check_rows: Optional[Union[int, str]] = None,
        force: bool = False,
        allow_nonfinite: bool = False,
    ) -> dict[str, Any]:
        """One shard (the X of the .npy file `input`) projected into `out/<name>/` exactly
        as `qkv project --input 'dir/*.npy' --out out` writes it: q.npy, k.npy, v.npy (or
        qkv.safetensors) and its manifest shard.json, all or none, only where the check
        (sampled over every chunk; `check_rows` "all" or a number) passed. Complete shards
        are skipped; outputs it cannot vouch for are left as they are unless `force`. A
        failure is returned, not raised: name, input, dir, tokens, state ("projected",
        "skipped", "failed"), error, pass, max_abs_err, max_rel_err, checked_rows, kernel,
        kernel_ms, gpu_total_ms, seconds, outputs, adapter."""

def shard_paths(inputs: Sequence[Union[str, PathLike[str]]]) -> list[str]:
    """The shards `inputs` name, as `qkv project --input` takes them: .npy files,
    directories of them, glob patterns, list files (.txt, .list: a path a line). Each must
    be a file, none named twice, no two sharing a name (their outputs' directory)."""

def project_shard(projector: Projector, input: Any, out: Any, **kwargs: Any) -> dict[str, Any]:
    """`Projector.project_shard` (the package makes it the method; see there)."""

def quantize(x: np.ndarray, weight_type: str) -> bytes:
    """1-D float32 `x` (whole blocks, finite) quantized to the block format `weight_type`
    (q8_0, q4_0, q4_1, q5_0, q5_1, q4_k, q5_k, q6_k) by ggml's reference quantizer: the bytes
    llama.cpp writes for it."""

def dequantize(data: bytes, weight_type: str) -> np.ndarray:
    """Whole blocks of `weight_type` as 1-D float32, each value what ggml's
    `dequantize_row_*` computes."""

def gguf_layer(
    path: Union[str, PathLike], prefix: str, original_order: bool = False
) -> dict[str, Any]:
    """The attention layer under `prefix` ("blk.0") of a GGUF file: architecture, d_model,
    heads, kv_heads, rows_reordered (llama.cpp reordered Q's and K's rows for its RoPE),
    types (Q's, K's, V's formats), wq/wk/wv (float32 [rows, d_model], ggml's dequantized
    values) and bias (three arrays, or None). With `original_order`, Q's and K's rows as the
    original model had them (then rows_reordered is False)."""
