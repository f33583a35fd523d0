"""examples/python/project_checkpoint.py runs from start to end (on a --demo checkpoint)."""

import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "python" / "project_checkpoint.py"


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
