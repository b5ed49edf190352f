"""Every experiment in --quick mode writes its figures and finite metrics; the CLI and summary."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
from diy_nn.experiments import (
    SETTINGS,
    Context,
    Experiment,
    load_all,
    run_experiment,
    summary_markdown,
    write_summary,
)
from diy_nn.experiments import __main__ as cli
from diy_nn.experiments.__main__ import main

REPO = Path(__file__).resolve().parents[1]
REGISTRY = load_all()
NEEDS_DATA = {name for name, exp in REGISTRY.items() if exp.needs}


def _data_dir() -> Path | None:
    for cand in (os.environ.get("DIY_NN_DATA"), REPO / "data"):
        if cand and (Path(cand) / "usps").is_dir() and (Path(cand) / "ecg5000").is_dir():
            return Path(cand)
    return None


DATA = _data_dir()


def test_list_names_every_experiment(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in REGISTRY:
        assert name in out
    assert [e.number for e in REGISTRY.values()] == sorted(e.number for e in REGISTRY.values())
    assert set(range(1, 10)) == {e.number for e in REGISTRY.values()}


def test_unknown_experiment(capsys):
    assert main(["run", "nope", "--out", "unused"]) == 2
    assert "unknown" in capsys.readouterr().out


@pytest.mark.parametrize("name", list(REGISTRY))
def test_quick_run_writes_figures_and_finite_metrics(name, tmp_path, monkeypatch):
    if name in NEEDS_DATA and DATA is None:
        pytest.skip("no data folder ($DIY_NN_DATA or the clone's data/)")
    args = ["run", name, "--quick", "--no-progress", "--out", str(tmp_path)]
    if DATA is not None:
        args += ["--data-dir", str(DATA)]
    contexts: list[Context] = []

    def run_and_keep(exp: Experiment, ctx: Context) -> dict:
        contexts.append(ctx)
        return run_experiment(exp, ctx)

    monkeypatch.setattr(cli, "run_experiment", run_and_keep)
    assert main(args) == 0
    # each setting the experiment declares is one its code reads (so --set changes it)
    assert [c.read_settings for c in contexts] == [set(SETTINGS.get(name, {}))]
    summary = json.loads((tmp_path / "summary.json").read_text())
    entry = summary[name]
    assert entry["status"] == "ok", entry
    assert entry["metrics"] and entry["figures"]
    for m in entry["metrics"]:
        assert math.isfinite(m["value"]), m
    for fig in entry["figures"]:
        path = tmp_path / fig
        assert path.suffix == ".png" and path.stat().st_size > 1000
    assert name in (tmp_path / "summary.md").read_text()


def test_missing_data_is_skipped_with_a_hint(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("DIY_NN_DATA", raising=False)
    name = sorted(NEEDS_DATA)[0]
    args = ["run", name, "--quick", "--no-progress", "--out", str(tmp_path)]
    assert main(args + ["--data-dir", str(tmp_path / "empty")]) == 1  # could not run: not 0
    entry = json.loads((tmp_path / "summary.json").read_text())[name]
    assert entry["status"] == "skipped"
    assert "DIY_NN_DATA" in entry["message"] and "--data-dir" in entry["message"]
    assert "skipped" in capsys.readouterr().out


def test_summary_merges_runs(tmp_path):
    a = {"status": "ok", "number": 1, "metrics": [], "figures": []}
    b = {"status": "skipped", "number": 2, "message": "no data"}
    write_summary(tmp_path, {"a": a})
    merged = write_summary(tmp_path, {"b": b})
    assert list(merged) == ["a", "b"]
    assert set(json.loads((tmp_path / "summary.json").read_text())) == {"a", "b"}
    md = summary_markdown(merged)
    assert "| 2 | b | skipped" in md and "no data" in md


def test_iris_feature_order_leaves_the_weakest_feature_where_the_pooling_drops_it():
    import numpy as np
    from diy_nn.data import load_iris
    from diy_nn.experiments.conv import IRIS_FEATURES, _anova_f

    X, y = load_iris()
    f = _anova_f(X, y)
    # the textbook one-way ANOVA F of iris (scikit-learn's f_classif gives the same)
    assert np.allclose(f, [119.26, 49.16, 1180.16, 960.01], rtol=1e-3)
    assert IRIS_FEATURES[int(np.argmin(f))] == "sepal width"


def test_unit_rows_gives_unit_length_codes_and_keeps_zero_rows_finite():
    import numpy as np
    from diy_nn.experiments.clustering import _unit_rows

    out = _unit_rows(np.array([[3.0, 4.0], [0.0, 0.0]]))
    assert np.allclose(out, [[0.6, 0.8], [0.0, 0.0]])
