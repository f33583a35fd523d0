#!/usr/bin/env python3
"""Runs every shell and Python example of README.md and docs/*.md as pasted.

    python3 scripts/docs_examples.py [--python PY] [--list]

What counts as an example: each line of a ```sh block (a command, run with bash), each
```python block (run whole with PY: the Python lane's environment, where the module and
numpy are installed), and each `$ ` line of a ```text block (a command whose output the
document shows). A document's examples run in order, in one scratch directory of their own
(so the Python block that writes `gpt2-tiny.safetensors` feeds the `qkv project` line after
it), with `examples/` linked in and `qkv` on PATH as the release binary that the README's
first example (`scripts/run.sh`) builds. Commands that name the repository's own files
(`scripts/...`, `./python`) run from its root, as a reader in a fresh clone would run them.

A few examples cannot run on a machine without a GPU, or are this lane's neighbours; each is
named in SKIPPED with the reason, printed as it is passed over, and a SKIPPED entry that no
longer matches an example fails the run (so the list cannot go stale silently). Every other
example must exit 0. The last line is 'N passed, N failed' for CI.
"""
import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

# Commands (their text up to any trailing comment) not run, and why.
SKIPPED = {
    "scripts/test.sh": "the Rust test suite: CI's own lane, run just before this one",
    "qkv bench --shape all --max-tokens 16384 --dtype f32,f16,bf16 --json > bench.json":
        "hours on a CPU driver; for an NVIDIA GPU beside cuBLAS (its flags are parsed below)",
    "python3 scripts/cublas_compare.py bench.json": "needs an NVIDIA GPU and PyTorch",
}

# Skipped commands whose arguments are still checked: `qkv` parses them (clap validates
# every value as it reads it) and stops at --help.
PARSED_ONLY = {
    "qkv bench --shape all --max-tokens 16384 --dtype f32,f16,bf16 --json > bench.json":
        ["qkv", "bench", "--shape", "all", "--max-tokens", "16384", "--dtype", "f32,f16,bf16",
         "--json", "--help"],
}

# A command that serves until stopped: run in the background until the page answers.
SERVES = {"bash scripts/web.sh": "http://127.0.0.1:8000/"}

TIMEOUT_S = 1200


def examples(doc: Path):
    """(line, kind, text) of each example of `doc`, in order."""
    text = doc.read_text()
    for m in re.finditer(r"^```(\w*)\n(.*?)^```", text, re.S | re.M):
        lang, body = m.group(1), m.group(2)
        first = text[: m.start()].count("\n") + 2
        if lang == "python":
            yield first, "python", body
        elif lang == "sh":
            for i, line in enumerate(body.splitlines()):
                if line.strip() and not line.lstrip().startswith("#"):
                    yield first + i, "sh", line
        elif lang == "text":
            for i, line in enumerate(body.splitlines()):
                if line.startswith("$ "):
                    yield first + i, "sh", line[2:]


def command_of(line: str) -> str:
    """The command without its trailing comment (`  # ...`)."""
    return re.split(r"\s+#\s", line, maxsplit=1)[0].strip()


def at_root(cmd: str) -> bool:
    """Whether a command names the repository's own files (`scripts/run.sh`, `pip install
    ./python`): a reader runs those from the root of the clone."""
    return bool(re.search(r"(^|\s)(\./|scripts/)", cmd))


def serve_until_up(cmd, url, env):
    proc = subprocess.Popen(["bash", "-c", cmd], cwd=ROOT, env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + TIMEOUT_S
    try:
        while time.time() < deadline:
            if proc.poll() is not None:
                return False, f"exited {proc.returncode} before serving:\n{proc.stdout.read()}"
            try:
                with urllib.request.urlopen(url, timeout=5) as r:
                    body = r.read().decode(errors="replace")
                    ok = r.status == 200 and "qkv" in body.lower()
                    return ok, f"{url}: HTTP {r.status}"
            except OSError:
                time.sleep(2)
        return False, f"{url} did not answer in {TIMEOUT_S} s"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--python", default=os.environ.get("QKV_DOCS_PYTHON", sys.executable),
                    help="the Python that runs the python blocks (the Python lane's venv)")
    ap.add_argument("--list", action="store_true", help="list the examples and exit")
    args = ap.parse_args()
    args.python = os.path.abspath(args.python)

    found = [(doc, *e) for doc in DOCS for e in examples(doc)]
    if args.list:
        for doc, line, kind, body in found:
            print(f"{doc.relative_to(ROOT)}:{line} [{kind}] {body.splitlines()[0]}")
        return 0
    stale = set(SKIPPED) - {command_of(b) for _, _, k, b in found if k == "sh"}
    if stale:
        print(f"docs: SKIPPED names commands no document has any more: {sorted(stale)}")
        return 1

    bin_dir = Path(tempfile.mkdtemp(prefix="qkv-docs-bin-"))
    (bin_dir / "qkv").symlink_to(ROOT / "target" / "release" / "qkv")
    # The environment's own bin/ on PATH (a link to its python would not find the venv).
    py_bin = Path(os.path.abspath(args.python)).parent
    path = os.pathsep.join([str(bin_dir), str(py_bin), os.environ["PATH"]])
    env = dict(os.environ, PATH=path, QKV_CACHE_DIR=tempfile.mkdtemp(prefix="qkv-docs-cache-"))
    passed, failed = 0, []
    for doc in DOCS:
        work = Path(tempfile.mkdtemp(prefix=f"qkv-docs-{doc.stem}-"))
        (work / "examples").symlink_to(ROOT / "examples")
        for d, line, kind, body in found:
            if d != doc:
                continue
            where = f"{doc.relative_to(ROOT)}:{line}"
            cmd = command_of(body) if kind == "sh" else body
            if kind == "sh" and cmd in SKIPPED:
                print(f"docs: {where}: skipped `{cmd}`: {SKIPPED[cmd]}", flush=True)
                if cmd in PARSED_ONLY:
                    r = subprocess.run(PARSED_ONLY[cmd], env=env, cwd=work,
                                       capture_output=True, text=True)
                    if r.returncode != 0:
                        failed.append(where)
                        print(f"docs: {where}: its arguments do not parse:\n{r.stderr}")
                continue
            start = time.time()
            if kind == "sh" and cmd in SERVES:
                ok, out = serve_until_up(cmd, SERVES[cmd], env)
                code = 0 if ok else 1
            else:
                argv = [args.python, "-c", body] if kind == "python" else ["bash", "-c", body]
                cwd = ROOT if kind == "sh" and at_root(cmd) else work
                try:
                    r = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True,
                                       timeout=TIMEOUT_S)
                    code, out = r.returncode, r.stdout + r.stderr
                except subprocess.TimeoutExpired:
                    code, out = 124, f"still running after {TIMEOUT_S} s"
            took = time.time() - start
            label = cmd if kind == "sh" else f"python block ({len(body.splitlines())} lines)"
            if code == 0:
                passed += 1
                print(f"docs: {where}: ok in {took:.0f} s: {label}", flush=True)
            else:
                failed.append(where)
                print(f"docs: {where}: FAILED (exit {code}) in {took:.0f} s: {label}\n"
                      f"{out[-4000:]}", flush=True)
        shutil.rmtree(work, ignore_errors=True)
    shutil.rmtree(bin_dir, ignore_errors=True)
    if failed:
        print(f"docs: failed: {', '.join(failed)}")
    print(f"{passed} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
