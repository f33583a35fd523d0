"""A corpus of X shards projected on a Ray cluster, through Ray Data.

Each shard (a ``.npy`` file of X) is one row of the dataset; each worker builds its
projector once (the checkpoint read and the weights uploaded once per worker) and projects
the shards it is given into ``out/<name>/``, exactly as ``qkv project --input 'dir/*.npy'
--out out`` writes them: Q, K, V and the shard's manifest put in place all or none, only
where the check (sampled over every chunk of the shard) passed. A shard already complete is
skipped, so a job that died is finished by running it again (by Ray or by ``qkv project``:
they share the manifests), and a worker that dies mid-shard leaves nothing half written::

    import qkv_wgpu.ray
    report = qkv_wgpu.ray.project_shards(
        "corpus/*.npy", "corpus-out", "model.safetensors", "h.0",
        concurrency=2, num_gpus=1, kernel="auto")
    report["projected"], report["tokens_per_s"]

or, to build the pipeline yourself::

    ds = ray.data.from_items([{"path": p} for p in qkv_wgpu.shard_paths(["corpus/"])])
    ds.map_batches(qkv_wgpu.ray.Project, fn_constructor_kwargs=dict(
        weights="model.safetensors", prefix="h.0", out="corpus-out"),
        compute=ray.data.ActorPoolStrategy(size=2), num_gpus=1, batch_size=1).take_all()

Ray itself is not a dependency of ``qkv_wgpu``: install it (``pip install 'ray[data]'``)
where this module is used. The outputs directory must be one every worker can reach (a
shared file system), as the shards must.
"""

import os
import subprocess
import time

from . import Projector, shard_paths

__all__ = ["Project", "ShardsFailed", "project_shards"]

# The columns each batch of reports holds, in this order.
_COLUMNS = (
    "name", "input", "dir", "tokens", "state", "error", "pass", "max_abs_err", "max_rel_err",
    "checked_rows", "kernel", "kernel_ms", "gpu_total_ms", "seconds", "outputs", "adapter",
    "node", "pid",
)


class ShardsFailed(RuntimeError):
    """Some shards failed (the others were written): ``report`` is the whole run's."""

    def __init__(self, message, report):
        super().__init__(message)
        self.report = report


def _gpu_adapter(gpu_ids, run=subprocess.run):
    """The adapter filter (``pci:ADDRESS``) of the GPU Ray gave this worker, or None where
    it gave none. Ray says which GPU by setting CUDA_VISIBLE_DEVICES, which Vulkan does not
    read: without this every worker of a machine would take its first GPU. nvidia-smi gives
    the PCI address of the device Ray named (an index in nvidia-smi's order, which is CUDA's
    for identical GPUs and with CUDA_DEVICE_ORDER=PCI_BUS_ID, or a UUID), and wgpu's adapter
    is found by it."""
    ids = [str(i) for i in gpu_ids]
    if not ids:
        return None
    if len(set(ids)) > 1:
        raise ValueError(f"Ray gave this worker GPUs {', '.join(ids)}: a projector runs on "
                         "one GPU; give num_gpus=1 (or a fraction to share one)")
    how = ("pass adapter='pci:ADDRESS' yourself (qkv_wgpu.adapters() lists each adapter's "
           "pci_bus_id)")
    try:
        done = run(["nvidia-smi", "--query-gpu=pci.bus_id", "--format=csv,noheader",
                    "-i", ids[0]], capture_output=True, text=True, timeout=60)
    except FileNotFoundError:
        raise RuntimeError(f"Ray gave this worker GPU {ids[0]}, but nvidia-smi, which says "
                           f"where that GPU is, is not installed: {how}") from None
    address = done.stdout.strip()
    if done.returncode != 0 or not address or "\n" in address:
        raise RuntimeError(f"nvidia-smi does not say where GPU {ids[0]} is "
                           f"({(done.stderr or done.stdout).strip()}): {how}")
    return f"pci:{address}"


def _ray_gpu_ids():
    try:
        import ray

        return ray.get_gpu_ids()
    except Exception:  # not in a Ray worker
        return []


def _node_id():
    try:
        import ray

        return ray.get_runtime_context().get_node_id()
    except Exception:  # not in a Ray worker
        return None


class Project:
    """Ray Data's callable class for ``map_batches``: a batch of shards in (a ``path``
    column, as NumPy), their reports out (one row each: ``state`` "projected", "skipped" or
    "failed", ``pass``, the check's errors, times, and the ``node`` and ``pid`` that did it).

    The projector is built once, when Ray makes the worker: from ``weights`` (a safetensors
    or GGUF checkpoint) and ``prefix``, with ``projector`` the keyword arguments of
    ``qkv_wgpu.Projector.from_checkpoint`` (``dtype``, ``kernel``, ``heads``, ...). On the
    GPU Ray gave the worker (``num_gpus``), found by its PCI address (NVIDIA: nvidia-smi),
    unless ``adapter`` names one. Each
    shard is written by ``Projector.project_shard`` into ``out`` with ``out_format``,
    ``check``, ``check_rows``, ``force`` and ``allow_nonfinite``. A shard's failure is its
    report's ``state``, not an exception, so that one bad shard does not stop the others.
    """

    def __init__(self, weights, prefix=None, *, out, out_format="npy", check=True,
                 check_rows=None, force=False, allow_nonfinite=False, **projector):
        if projector.get("adapter") is None:
            projector["adapter"] = _gpu_adapter(_ray_gpu_ids())
        self.projector = Projector.from_checkpoint(weights, prefix, **projector)
        self.out = os.fspath(out)
        self.shard = dict(out_format=out_format, check=check, check_rows=check_rows,
                          force=force, allow_nonfinite=allow_nonfinite)
        self.node, self.pid = _node_id(), os.getpid()

    def __call__(self, batch):
        rows = []
        for path in batch["path"]:
            r = self.projector.project_shard(os.fspath(str(path)), self.out, **self.shard)
            r.update(node=self.node, pid=self.pid)
            rows.append(r)
        return {c: [r[c] for r in rows] for c in _COLUMNS}


def project_shards(inputs, out, weights, prefix=None, *, concurrency=1, num_gpus=None,
                   out_format="npy", check=True, check_rows=None, force=False,
                   allow_nonfinite=False, ray_remote_args=None, **projector):
    """Projects every shard of ``inputs`` into ``out/<name>/`` on the Ray cluster this
    process is connected to (``ray.init()`` first, or one is started on this machine), with
    ``concurrency`` workers (a projector each), each given ``num_gpus`` GPUs where set.

    ``inputs``: what ``qkv project --input`` takes (a path, a directory, a glob pattern, a
    list file, or a list of them). The other arguments are those of ``Project``. Returns the
    report of the run: ``shards`` (a dict each, in the order given), ``projected``,
    ``skipped``, ``failed``, ``tokens`` (projected this run), ``wall_s`` and ``tokens_per_s``
    (end to end, the workers' start included), and ``nodes`` (the shards each node
    projected). Raises ``ShardsFailed`` (with the report) if any shard failed: the others
    are written, and a rerun does only what is left.
    """
    import ray

    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    paths = [os.path.abspath(p) for p in shard_paths(list(inputs))]
    started = time.perf_counter()
    kwargs = dict(weights=os.path.abspath(weights), prefix=prefix, out=os.path.abspath(out),
                  out_format=out_format, check=check, check_rows=check_rows, force=force,
                  allow_nonfinite=allow_nonfinite, **projector)
    remote = dict(ray_remote_args or {})
    if num_gpus is not None:
        remote["num_gpus"] = num_gpus
    ds = ray.data.from_items([{"path": p} for p in paths], override_num_blocks=len(paths))
    ds = ds.map_batches(Project, fn_constructor_kwargs=kwargs,
                        compute=ray.data.ActorPoolStrategy(size=concurrency), batch_size=1,
                        batch_format="numpy", **remote)
    rows = ds.take_all()
    wall_s = time.perf_counter() - started
    order = {p: i for i, p in enumerate(paths)}
    shards = sorted(({c: _plain(r[c]) for c in _COLUMNS} for r in rows),
                    key=lambda r: order[r["input"]])
    count = {s: sum(r["state"] == s for r in shards) for s in ("projected", "skipped", "failed")}
    tokens = sum(r["tokens"] for r in shards if r["state"] == "projected")
    nodes = {}
    for r in shards:
        if r["state"] == "projected":
            nodes[r["node"]] = nodes.get(r["node"], 0) + 1
    report = dict(out=os.path.abspath(out), shards=shards, **count, tokens=tokens,
                  wall_s=wall_s, tokens_per_s=tokens / wall_s, nodes=nodes)
    if len(shards) != len(paths) or set(r["input"] for r in shards) != set(paths):
        raise RuntimeError(f"Ray returned {len(shards)} reports for {len(paths)} shards")
    if count["failed"]:
        failed = "; ".join(f"{r['name']}: {r['error']}" for r in shards if r["state"] == "failed")
        raise ShardsFailed(f"{count['failed']} of {len(shards)} shard(s) failed, and were not "
                           f"written ({failed})", report)
    return report


def _plain(v):
    """A NumPy scalar or array from Ray's rows as a plain Python value."""
    if hasattr(v, "tolist"):
        return v.tolist()
    return v
