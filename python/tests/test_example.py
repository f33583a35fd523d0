"""The examples run: examples/python/project_checkpoint.py from start to end (on a --demo
checkpoint), and every Python block of README.md as pasted."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "python" / "project_checkpoint.py"


def run(script, timeout, cwd=None):
    """`script` in a fresh interpreter."""
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd)


def test_the_checkpoint_example_projects_compares_and_plots(tmp_path):
    plot = tmp_path / "gflops.png"
    done = subprocess.run(
        [sys.executable, str(EXAMPLE), "--demo", str(tmp_path / "demo.safetensors"),
         "--tokens", "16,40", "--kernel", "naive", "--plot", str(plot)],
        capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    for dtype in ("f32", "bf16"):
        for part in "QKV":
            assert f"{dtype:>4} {part}: max |err|" in done.stdout, done.stdout
    assert done.stdout.count("PASS") == 4, done.stdout
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_checkpoint_example_says_what_it_needs_before_any_work(tmp_path):
    assert "--demo PATH" in EXAMPLE.read_text().split('"""')[1]
    blocked = ("import runpy, sys; sys.modules['matplotlib'] = None; "
               f"sys.argv = ['project_checkpoint.py', '--demo', {str(tmp_path / 'd.st')!r}]; "
               f"runpy.run_path({str(EXAMPLE)!r}, run_name='__main__')")
    done = run(blocked, timeout=60)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr and done.stdout == "", done.stdout + done.stderr
    assert "matplotlib" in done.stderr and "pip install" in done.stderr, done.stderr
    assert not (tmp_path / "d.st").exists()


def readme_python_blocks():
    return re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)


def test_every_python_example_in_the_readme_runs_as_pasted(tmp_path):
    blocks = readme_python_blocks()
    assert blocks
    for block in blocks:
        done = run(block, timeout=600, cwd=tmp_path)
        assert done.returncode == 0, block + done.stdout + done.stderr
