"""examples/ray_embed.py on a small corpus: one vector per row, in order,
equal to the single-process result. Needs `ray[data]` (scripts/test-python
installs it with KILN_TEST_RAY=1); skipped otherwise."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import MINILM_GGUF, ROOT


def test_ray_example_matches_single_process(tmp_path):
    pytest.importorskip("ray.data", reason="ray[data] is not installed (KILN_TEST_RAY=1 scripts/test-python)")
    run = subprocess.run(
        [
            sys.executable,
            str(ROOT / "examples" / "ray_embed.py"),
            "--model",
            str(MINILM_GGUF),
            "--rows",
            "300",
            "--batch-size",
            "64",
            "--out",
            str(tmp_path),
            "--check",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    summary = [line for line in run.stdout.splitlines() if line.startswith(("Ray", "single process"))]
    print("\n".join(summary))
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert any("300 vectors" in line for line in summary), summary
    assert any("rows match" in line for line in summary), summary
