"""Smoke test of benches/bench_training.py: a tiny run prints ratios and writes JSON,
with jax timed where it is installed (the bench extra) and reported as skipped where not."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from parity import require_torch

BENCH = Path(__file__).resolve().parents[1] / "benches" / "bench_training.py"


def test_bench_training_quick(tmp_path):
    require_torch()
    out = tmp_path / "bench.json"
    cmd = [sys.executable, str(BENCH), "--quick", "--workloads", "ecg", "--threads", "1"]
    cmd += ["--rounds", "1", "--samples", "256", "--json", str(out)]
    cmd += ["--frameworks", "diy_nn,torch,jax,numpy"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "diy/torch" in proc.stdout and "diy/numpy" in proc.stdout
    assert "diy/best" in proc.stdout and "CPU: " in proc.stdout
    report = json.loads(out.read_text())
    assert report["machine"]["cpu"]
    run = report["runs"]["1"]
    ecg = run["workloads"]["ecg"]
    for fw in ("diy_nn", "torch", "numpy"):
        assert ecg[fw]["median_s"] > 0, run.get("errors")
        assert ecg[fw]["faults_per_step"] >= 0 and ecg[fw]["gflops"] > 0
    if importlib.util.find_spec("jax") is not None:
        assert ecg["jax"]["median_s"] > 0, run.get("errors")
    else:
        assert "jax" not in ecg and "ecg/jax" in run["errors"]
        assert "skipped ecg/jax: ModuleNotFoundError" in proc.stdout
    assert ecg["diy/best"] > 0 and ecg["best_other"] in ("torch", "jax")
    assert run["matmul_gflops"]["float32"]["numpy"] > 0
    assert run["matmul_gflops"]["float64"]["numpy"] > 0
    memory = run["memory"]["ecg"]
    assert all(isinstance(memory[fw], float) for fw in ("diy_nn", "torch", "numpy")), memory


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:  # the process ended meanwhile
        return b""


def test_bench_training_on_a_loaded_machine(tmp_path):
    """``--busy 1``: the run is labelled, and the spinning process is gone afterwards."""
    out = tmp_path / "bench.json"
    cmd = [sys.executable, str(BENCH), "--quick", "--workloads", "ecg", "--threads", "1"]
    cmd += ["--rounds", "1", "--samples", "64", "--frameworks", "diy_nn", "--no-memory"]
    # Output to files, not pipes: a spinner left behind would hold a pipe open.
    log, err = tmp_path / "stdout", tmp_path / "stderr"
    with log.open("w") as stdout, err.open("w") as stderr:
        run = subprocess.Popen(
            [*cmd, "--busy", "1", "--json", str(out)], stdout=stdout, stderr=stderr
        )
        run.wait(timeout=600)
    assert run.returncode == 0, err.read_text()
    assert "1 busy process(es)" in log.read_text()
    assert json.loads(out.read_text())["busy"] == 1
    # Only this run's spinners: another process of the machine may well say "while True".
    tag = f"diy_nn-bench-busy\0{run.pid}\0".encode()
    left = [int(c.parent.name) for c in Path("/proc").glob("[0-9]*/cmdline") if tag in _read(c)]
    for pid in left:  # stop them before failing, so that a failure leaves no core spinning
        os.kill(pid, signal.SIGKILL)
    assert not left
    bad = subprocess.run([*cmd, "--busy", "-1"], capture_output=True, text=True, timeout=600)
    assert bad.returncode == 2 and "--busy must be 0 or more" in bad.stderr


def test_bench_training_suites_name_known_workloads():
    sys.path.insert(0, str(BENCH.parent))
    try:
        import training_workloads as tw
    finally:
        sys.path.remove(str(BENCH.parent))
    assert set(tw.SUITES["all"]) <= set(tw.WORKLOADS.values())
    assert {w.dtype for w in tw.SUITES["cifar"]} == {"float32", "float64"}
    # each Linear's input size is the size flowing into it (the FLOP counts rely on it)
    for w in tw.SUITES["all"]:
        shape = w.input_shape
        for layer in w.layers:
            if layer[0] == "linear":
                assert shape == (layer[1],), (w.name, layer, shape)
            shape = tw.out_shape((layer,), shape)
        assert tw.flops_per_sample(w) > 0


def test_bench_floor_sets_the_products_floor_under_each_framework():
    """``bench_floor.py``: a row per workload, diy_nn's step slower than its products alone,
    and a non-dense workload refused with its reason."""
    require_torch()
    floor = BENCH.parent / "bench_floor.py"
    cmd = [sys.executable, str(floor), "--threads", "1", "--samples", "64", "--seconds", "0.05"]
    proc = subprocess.run([*cmd, "--workloads", "ecg"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    head, row = proc.stdout.splitlines()[-2:]
    assert head.split()[:3] == ["workload", "floor", "diy_nn"], proc.stdout
    assert head.split()[-3:] == ["rest", "0.5", "leaves"], proc.stdout
    cells = row.split()
    floor_ms, diy_ms, rest_us = float(cells[1]), float(cells[2]), float(cells[-2])
    assert cells[0] == "ecg" and 0 < floor_ms < diy_ms
    steps = 2  # 64 samples at the ECG model's batch of 32
    # the ms cells are rounded to 1 us: the per-step figure within 1 us of theirs
    assert rest_us == pytest.approx((diy_ms - floor_ms) * 1e3 / steps, abs=1), row
    has_jax = importlib.util.find_spec("jax") is not None
    assert ("jax" in head.split()) == has_jax and ("jax skipped" in proc.stdout) != has_jax
    bad = subprocess.run(
        [*cmd, "--workloads", "cnn2d"], capture_output=True, text=True, timeout=600
    )
    assert bad.returncode != 0 and "cnn2d: not a dense chain" in bad.stderr
