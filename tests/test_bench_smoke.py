"""Smoke test of benches/bench_training.py: a tiny run prints ratios and writes JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from parity import require_torch

BENCH = Path(__file__).resolve().parents[1] / "benches" / "bench_training.py"


def test_bench_training_quick(tmp_path):
    require_torch()
    out = tmp_path / "bench.json"
    cmd = [sys.executable, str(BENCH), "--quick", "--workloads", "ecg", "--threads", "1"]
    cmd += ["--rounds", "1", "--samples", "256", "--json", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "diy/torch" in proc.stdout and "diy/numpy" in proc.stdout
    report = json.loads(out.read_text())
    ecg = report["runs"]["1"]["workloads"]["ecg"]
    for fw in ("diy_nn", "torch", "numpy"):
        assert ecg[fw]["median_s"] > 0, report["runs"]["1"].get("errors")
    assert report["runs"]["1"]["matmul_gflops"]["numpy"] > 0
    memory = report["runs"]["1"]["memory"]["ecg"]
    assert all(isinstance(memory[fw], float) for fw in ("diy_nn", "torch", "numpy")), memory
