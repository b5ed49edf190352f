"""Issue 15: ``diy-nn sweep`` on Dask distributed (a LocalCluster, an external scheduler
and workers started here, a worker killed mid-sweep). Every server binds 127.0.0.1 and is
stopped by the test that starts it."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import diy_nn as nn
import pytest
from diy_nn.experiments import Context, load_all, run_experiment
from diy_nn.experiments import __main__ as cli
from diy_nn.experiments import sweep as sw

PYTHON_DIR = Path(nn.__file__).resolve().parent.parent
DASK = shutil.which("dask", path=str(Path(sys.executable).parent)) or shutil.which("dask")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(PYTHON_DIR), env.get("PYTHONPATH", "")])
    return env


def _serial(name: str, seed: int, tmp: Path) -> list[dict]:
    """The metrics of the serial ``diy-nn run NAME --seed k --quick``, at one thread."""
    from threadpoolctl import threadpool_limits

    nn.set_num_threads(1)
    try:
        with threadpool_limits(limits=1):
            ctx = Context(out=tmp / f"serial-{seed}", quick=True, seed=seed, progress=False)
            entry = run_experiment(load_all()[name], ctx)
    finally:
        nn.set_num_threads(0)
    assert entry["status"] == "ok"
    return entry["metrics"]


def _sweep_json(out: Path) -> dict:
    return json.loads((out / "sweep.json").read_text())


def _written(out: Path) -> list[str]:
    log = out / "runs" / "written.log"
    return log.read_text().splitlines() if log.exists() else []


def test_import_diy_nn_never_imports_dask():
    code = (
        "import sys, diy_nn, diy_nn.experiments, diy_nn.experiments.__main__, "
        "diy_nn.experiments.sweep\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed'))\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env=_env(), timeout=120)


def test_seeds_and_settings_parse():
    assert sw.parse_seeds("3") == [0, 1, 2]
    assert sw.parse_seeds("4-6") == [4, 5, 6]
    for bad in ("0", "6-4", "x", "1-", "-2"):
        with pytest.raises(ValueError, match="--seeds"):
            sw.parse_seeds(bad)
    declared = {"a": {"lr": 1e-3, "epochs": 30}, "b": {"lr": 2e-3}}
    grid = sw.parse_settings(["lr=0.1,0.01", "epochs=5,10"], ["a"], declared)
    assert grid == [
        {"epochs": 5, "lr": 0.1},
        {"epochs": 5, "lr": 0.01},
        {"epochs": 10, "lr": 0.1},
        {"epochs": 10, "lr": 0.01},
    ]
    assert all(isinstance(s["epochs"], int) for s in grid)
    assert sw.parse_settings([], ["a", "b"], declared) == [{}]
    assert sw.setting_label({"lr": 0.1, "epochs": 5}, True) == "quick,epochs=5,lr=0.1"
    with pytest.raises(ValueError, match=r"unknown key 'epochs' for experiment 'b'"):
        sw.parse_settings(["epochs=5"], ["a", "b"], declared)
    with pytest.raises(ValueError, match="not an int"):
        sw.parse_settings(["epochs=2.5"], ["a"], declared)
    with pytest.raises(ValueError, match="KEY=V1,V2"):
        sw.parse_settings(["lr"], ["a"], declared)


def test_unknown_set_key_is_a_clear_error_before_any_work(tmp_path, capsys):
    out = tmp_path / "D"
    argv = ["sweep", "regression", "--seeds", "2", "--set", "lr=0.1", "--out", str(out)]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "unknown key 'lr' for experiment 'regression'" in err
    assert not out.exists()
    assert cli.main(["sweep", "nope", "--seeds", "2", "--out", str(out)]) == 2
    assert "unknown experiment(s): nope" in capsys.readouterr().err


def test_a_setting_the_experiment_does_not_read_fails_that_run(tmp_path, monkeypatch):
    from diy_nn.experiments import SETTINGS

    # regression reads no setting: give it one, as if it were declared
    monkeypatch.setitem(SETTINGS, "regression", {"steps": 2000})
    task = sw.Task("regression", 0, "quick,steps=10", {"steps": 10}, True, str(tmp_path))
    record = sw.run_task(task)
    assert record["status"] == "failed"
    assert "does not read the setting(s) steps" in record["error"]
    assert not task.path.exists()


def test_local_cluster_sweep_equals_serial_and_rerun_recomputes_nothing(tmp_path):
    out = tmp_path / "D"
    argv = ["sweep", "regression", "--seeds", "3", "--workers", "2", "--quick"]
    argv += ["--out", str(out), "--no-progress"]
    assert cli.main(argv) == 0
    result = _sweep_json(out)
    assert [(r["seed"], r["status"]) for r in result["runs"]] == [(0, "ok"), (1, "ok"), (2, "ok")]
    for r in result["runs"]:
        assert r["metrics"] == _serial("regression", r["seed"], tmp_path)
    summary = result["summary"]["regression"]["quick"]["slope"]
    slopes = [
        next(m["value"] for m in r["metrics"] if m["name"] == "slope") for r in result["runs"]
    ]
    assert summary["n"] == 3
    assert summary["mean"] == pytest.approx(sum(slopes) / 3)
    assert "regression" in (out / "sweep.md").read_text()
    assert (out / "figures" / "regression.png").stat().st_size > 0

    files = sorted((out / "runs").rglob("seed-*.json"))
    assert len(files) == 3
    stamps = {f: f.stat().st_mtime_ns for f in files}
    log = _written(out)
    assert cli.main(argv) == 0
    assert {f: f.stat().st_mtime_ns for f in files} == stamps
    assert _written(out) == log
    assert _sweep_json(out)["runs"] == result["runs"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(procs: list[subprocess.Popen]) -> None:
    """Terminates ``procs`` in reverse order of start (workers before their scheduler)."""
    for p in reversed(procs):
        if p.poll() is None:
            p.terminate()
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


@pytest.fixture
def dask_cluster(tmp_path) -> Iterator[tuple[str, list[subprocess.Popen]]]:
    """A ``dask scheduler`` and two one-thread ``dask worker`` processes on 127.0.0.1."""
    assert DASK is not None, "the dask command (package distributed) is not installed"
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    local = ["--dashboard-address", "127.0.0.1:0"]
    logs = tmp_path / "dask-logs"
    logs.mkdir()
    procs: list[subprocess.Popen] = []

    def start(args: list[str], log: str) -> subprocess.Popen:
        with open(logs / log, "w") as f:
            env = {**_env(), **sw.worker_environ()}
            p = subprocess.Popen([DASK, *args], env=env, stdout=f, stderr=subprocess.STDOUT)
        procs.append(p)
        return p

    try:
        start(["scheduler", "--host", "127.0.0.1", "--port", str(port), *local], "scheduler")
        worker = ["worker", address, "--host", "127.0.0.1", "--nthreads", "1", "--no-nanny"]
        workers = [start([*worker, *local, "--name", f"w{i}"], f"w{i}") for i in range(2)]
        from distributed import Client

        with Client(address, timeout="60s") as client:
            client.wait_for_workers(2, timeout=90)
        yield address, workers
    finally:
        _stop(procs)


def test_external_scheduler_sweep_completes(tmp_path, dask_cluster):
    address, _ = dask_cluster
    out = tmp_path / "D"
    argv = ["sweep", "regression", "--seeds", "1-2", "--quick", "--scheduler", address]
    assert cli.main([*argv, "--out", str(out), "--no-progress"]) == 0
    runs = _sweep_json(out)["runs"]
    assert [(r["seed"], r["status"]) for r in runs] == [(1, "ok"), (2, "ok")]
    for r in runs:
        assert r["metrics"] == _serial("regression", r["seed"], tmp_path)


def test_killing_a_worker_mid_sweep_still_gives_every_run_once(tmp_path, dask_cluster):
    address, workers = dask_cluster
    out = tmp_path / "D"
    n = 6
    cmd = [sys.executable, "-m", "diy_nn.experiments", "sweep", "regression", "--seeds", str(n)]
    cmd += ["--quick", "--scheduler", address, "--out", str(out), "--no-progress"]
    sweep = subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while not _written(out) and sweep.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        workers[0].kill()  # SIGKILL: no goodbye to the scheduler
        done_at_kill = len(_written(out))
        output, _ = sweep.communicate(timeout=150)
    finally:
        _stop([sweep])
    assert sweep.returncode == 0, output.decode()
    assert 1 <= done_at_kill < n, "the worker was not killed in the middle of the sweep"
    runs = _sweep_json(out)["runs"]
    assert [(r["seed"], r["status"]) for r in runs] == [(k, "ok") for k in range(n)]
    written = [line.split(" pid ")[0] for line in _written(out)]
    assert sorted(written) == sorted(f"regression/quick/seed-{k}" for k in range(n))
    assert not list((out / "runs").rglob("*.tmp"))


def _metrics_of_run(argv: list[str], out: Path) -> list[dict]:
    """The metrics of ``diy-nn run ... --out out`` at one thread (as a sweep worker runs)."""
    from threadpoolctl import threadpool_limits

    nn.set_num_threads(1)
    try:
        with threadpool_limits(limits=1):
            assert cli.main([*argv, "--no-progress", "--out", str(out)]) == 0
    finally:
        nn.set_num_threads(0)
    name = argv[1]
    return json.loads((out / "summary.json").read_text())[name]["metrics"]


def _values(metrics: list[dict]) -> list[float]:
    return [m["value"] for m in metrics]


def test_set_lr_sweep_equals_serial_runs_with_that_setting_and_changes_them(tmp_path):
    out = tmp_path / "D"
    argv = ["sweep", "autoencoder", "--seeds", "1", "--set", "lr=0.01,0.0005", "--quick"]
    argv += ["--workers", "2", "--out", str(out), "--no-progress"]
    assert cli.main(argv) == 0
    runs = {r["setting"]: r for r in _sweep_json(out)["runs"]}
    assert sorted(runs) == ["quick,lr=0.0005", "quick,lr=0.01"]
    for lr in ("0.01", "0.0005"):
        run = ["run", "autoencoder", "--quick", "--seed", "0", "--set", f"lr={lr}"]
        serial = _metrics_of_run(run, tmp_path / f"serial-{lr}")
        assert runs[f"quick,lr={lr}"]["status"] == "ok"
        assert runs[f"quick,lr={lr}"]["metrics"] == serial
    # the setting reaches the optimiser: other learning rates, other losses
    fast, slow = (_values(runs[f"quick,lr={lr}"]["metrics"]) for lr in ("0.01", "0.0005"))
    assert all(a != b for a, b in zip(fast, slow, strict=True))


def test_run_settings_change_the_run_and_default_settings_change_nothing(tmp_path):
    base = ["run", "autoencoder", "--quick", "--seed", "0"]
    default = _metrics_of_run(base, tmp_path / "default")
    # the declared defaults given explicitly: the same run (epochs aside, see below)
    same = _metrics_of_run([*base, "--set", "lr=0.002", "--set", "batch_size=64"], tmp_path / "s")
    assert same == default
    for setting in ("code_size=16", "batch_size=32"):
        other = _metrics_of_run([*base, "--set", setting], tmp_path / setting)
        assert _values(other) != _values(default), setting
    # an explicit epochs is used as given under --quick: 2 is the quick budget (same run),
    # 3 is one epoch more (another run)
    assert _metrics_of_run([*base, "--set", "epochs=2"], tmp_path / "e2") == default
    assert _values(_metrics_of_run([*base, "--set", "epochs=3"], tmp_path / "e3")) != _values(
        default
    )


def test_budget_setting_quick_unless_given(tmp_path):
    ctx = Context(out=tmp_path, quick=True, name="ecg")
    assert ctx.budget_setting("epochs", 3) == 3
    assert Context(out=tmp_path, name="ecg").budget_setting("epochs", 3) == 150
    given = Context(out=tmp_path, quick=True, name="ecg", settings={"epochs": 7})
    assert given.budget_setting("epochs", 3) == 7
    assert given.read_settings == {"epochs"}


def test_run_set_errors_are_clear_before_any_work(tmp_path, capsys):
    out = tmp_path / "R"
    argv = ["run", "autoencoder", "--quick", "--out", str(out)]
    assert cli.main([*argv, "--set", "lr=0.1,0.2"]) == 2
    assert "run takes one value per key; diy-nn sweep varies" in capsys.readouterr().err
    assert cli.main([*argv, "--set", "momentum=0.9"]) == 2
    assert "unknown key 'momentum' for experiment 'autoencoder'" in capsys.readouterr().err
    assert cli.main([*argv, "--set", "code_size=x"]) == 2
    assert "is not an int" in capsys.readouterr().err
    assert not out.exists()
