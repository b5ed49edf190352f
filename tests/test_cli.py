"""The experiments' command line: exit statuses, whole data messages, partial results, logs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from diy_nn.experiments.__main__ import EXIT_INCOMPLETE, EXIT_MISSING_EXTRA, main

REPO = Path(__file__).resolve().parents[1]


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Runs the CLI in a child whose stdout and stderr are pipes (not a terminal)."""
    full = dict(os.environ, **(env or {}))
    full["PYTHONPATH"] = os.pathsep.join(
        [str(REPO / "python"), *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    return subprocess.run(
        [sys.executable, "-m", "diy_nn.experiments", *args],
        capture_output=True,
        text=True,
        env=full,
        timeout=600,
        check=False,
    )


def test_missing_data_exits_non_zero_and_names_the_folder(tmp_path):
    proc = _cli("run", "usps_mlp", "--out", str(tmp_path), env={"DIY_NN_DATA": "/nonexistent"})
    assert proc.returncode == EXIT_INCOMPLETE, proc.stdout + proc.stderr
    assert "/nonexistent" in proc.stdout
    entry = json.loads((tmp_path / "summary.json").read_text())["usps_mlp"]
    assert entry["status"] == "skipped"


def test_the_whole_message_is_kept(tmp_path):
    import diy_nn.experiments as experiments

    def needs_data(ctx):
        raise experiments.MissingData("no USPS; looked at:\n  /a/usps\n  /b/usps\n  /c/usps")

    exp = experiments.Experiment("fake", 99, "fake", ("usps",), needs_data)
    entry = experiments.run_experiment(exp, experiments.Context(out=tmp_path))
    assert entry["status"] == "skipped"
    for place in ("/a/usps", "/b/usps", "/c/usps"):
        assert place in entry["message"]
        assert place in experiments.summary_markdown({"fake": entry})


def test_the_others_run_and_data_free_parts_are_kept(tmp_path, monkeypatch):
    monkeypatch.delenv("DIY_NN_DATA", raising=False)
    missing = tmp_path / "no-data"
    args = ["run", "regression", "conv1d", "--quick", "--no-progress", "--out", str(tmp_path)]
    assert main([*args, "--data-dir", str(missing)]) == EXIT_INCOMPLETE
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["regression"]["status"] == "ok"
    conv1d = summary["conv1d"]
    assert conv1d["status"] == "incomplete"
    names = [m["name"] for m in conv1d["metrics"]]
    assert "iris test accuracy" in names and not any("USPS" in n for n in names)
    assert conv1d["figures"] and all((tmp_path / f).is_file() for f in conv1d["figures"])
    assert str(missing) in conv1d["message"]
    assert "iris test accuracy" in (tmp_path / "summary.md").read_text()


def test_without_the_experiments_extra_says_how_to_install(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "sklearn", None)  # `import sklearn` raises ImportError
    assert main(["run", "regression", "--out", str(tmp_path)]) == EXIT_MISSING_EXTRA
    err = capsys.readouterr().err
    assert "scikit-learn" in err and "matplotlib" not in err.split("which")[0]
    assert "pip install 'diy_nn[experiments]'" in err
    assert not (tmp_path / "summary.json").exists()


def test_a_log_gets_one_line_per_experiment_and_no_bars(tmp_path):
    proc = _cli("run", "regression", "--quick", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "\r" not in proc.stdout + proc.stderr  # no progress-bar frames
    lines = proc.stdout.splitlines()
    assert sum(line.startswith("1. regression: ok in ") for line in lines) == 1
    assert not any(line.startswith("==") for line in lines)
    assert "not meant to meet the targets" in proc.stdout
    assert "report None" not in proc.stdout


def test_quick_misses_are_not_shouted(tmp_path):
    from diy_nn.experiments import summary_markdown
    from diy_nn.experiments.__main__ import summary_line

    metric = {"name": "acc", "value": 0.5, "report": None, "target": 0.9, "goal": ">="}
    entry = {"status": "ok", "number": 3, "seconds": 1.0, "metrics": [dict(metric, passed=False)]}
    assert "MISSED" in summary_line("x", entry) and "report" not in summary_line("x", entry)
    quick = dict(entry, quick=True)
    assert "missed (quick budget)" in summary_line("x", quick)
    md = summary_markdown({"x": quick})
    assert "**NO**" not in md and "not meant to meet the targets" in md


def test_list_needs_no_extra(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert main(["list"]) == 0
    assert "usps_mlp" in capsys.readouterr().out
