"""The report's experiments, runnable one by one or all together.

``python -m diy_nn.experiments list | run NAME... | run all`` (or ``diy-nn``).
Each experiment writes its PNG figures under ``OUT/NAME/`` and merges its
metrics, with the report's numbers beside them, into ``OUT/summary.json`` and
``OUT/summary.md``.
"""

from __future__ import annotations

import importlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

__all__ = [
    "Context",
    "Experiment",
    "Metric",
    "Result",
    "MissingData",
    "EXPERIMENTS",
    "register",
    "run_experiment",
    "write_summary",
    "SETTINGS",
]


class MissingData(Exception):
    """Raised by an experiment whose data files are not there; the runner skips it.

    Args:
        message: what is missing and every place looked (shown whole).
        partial: what the experiment computed before it needed the data (its
            data-free parts); the runner keeps and reports it.
    """

    def __init__(self, message: str, partial: Result | None = None) -> None:
        super().__init__(message)
        self.partial = partial


@dataclass
class Metric:
    """One number of an experiment, with the report's value and our target beside it.

    ``goal`` says how ``value`` is judged against ``target``: ``">="``, ``"<="``, ``">"``
    (strictly above), or ``""`` (no target, shown for information).
    """

    name: str
    value: float
    report: float | str | None = None
    target: float | None = None
    goal: str = ""
    note: str = ""

    @property
    def passed(self) -> bool | None:
        if not self.goal or self.target is None:
            return None
        if not math.isfinite(self.value):
            return False
        if self.goal == ">=":
            return self.value >= self.target
        if self.goal == ">":
            return self.value > self.target
        if self.goal == "<=":
            return self.value <= self.target
        raise ValueError(f"Metric {self.name}: unknown goal {self.goal!r}")


@dataclass
class Result:
    """What an experiment hands back: its metrics, figures and a line of notes."""

    metrics: list[Metric] = field(default_factory=list)
    figures: list[Path] = field(default_factory=list)
    notes: str = ""


@dataclass
class Context:
    """Where and how an experiment runs.

    Args:
        out: the output folder (figures go under ``out/<experiment>/``).
        quick: small budgets, for smoke tests.
        seed: the seed every random choice derives from.
        data_dir: the folder holding ``usps/`` and ``ecg5000/`` (None: ``$DIY_NN_DATA``).
        progress: show tqdm bars.
        name: the experiment running (set by the runner).
        settings: hyper-parameters overriding the experiment's declared defaults
            (``SETTINGS``); ``diy-nn sweep --set KEY=V`` fills it.
    """

    out: Path
    quick: bool = False
    seed: int = 0
    data_dir: Path | None = None
    progress: bool = True
    name: str = ""
    settings: dict[str, float | int] = field(default_factory=dict)
    read_settings: set[str] = field(default_factory=set)

    def setting(self, key: str) -> float | int:
        """The hyper-parameter ``key`` of the running experiment: the override in
        ``settings``, else the default declared in ``SETTINGS[name]``. Records that it was
        read, so that a sweep can tell a setting the experiment ignores from one it uses."""
        declared = SETTINGS.get(self.name, {})
        if key not in declared:
            raise KeyError(f"experiment {self.name!r} declares no setting {key!r}")
        self.read_settings.add(key)
        return self.settings.get(key, declared[key])

    def rng(self, offset: int = 0) -> np.random.Generator:
        """A generator seeded from ``seed`` and ``offset`` (same numbers on every run)."""
        return np.random.default_rng([self.seed, offset])

    def figure(self, filename: str) -> Path:
        """The path of a figure of the running experiment."""
        return self.out / self.name / filename

    def budget(self, full: int, quick: int) -> int:
        return quick if self.quick else full

    def budget_setting(self, key: str, quick: int) -> int:
        """The setting ``key`` (an epoch or step count) under the run's budget: a value
        given explicitly (``--set``) is used as it is, ``--quick`` or not; otherwise the
        declared default, or ``quick`` in a quick run."""
        value = int(self.setting(key))
        return value if key in self.settings else self.budget(value, quick)


@dataclass
class Experiment:
    name: str
    number: int
    title: str
    needs: tuple[str, ...]
    run: Callable[[Context], Result]


EXPERIMENTS: dict[str, Experiment] = {}

#: The hyper-parameters each experiment takes, with the defaults its code uses; an
#: experiment reads one with ``ctx.setting(KEY)`` (``epochs`` with ``ctx.budget_setting``:
#: ``--quick`` shortens it unless it is given explicitly), ``diy-nn run --set KEY=V`` sets
#: it and ``diy-nn sweep --set KEY=V1,V2`` varies it (an experiment that never reads a key
#: it is given fails that run). ``code_size``: the autoencoder's code width (256-100-C).
SETTINGS: dict[str, dict[str, float | int]] = {
    "usps_mlp": {"lr": 1e-3, "epochs": 30, "batch_size": 64},
    "autoencoder": {"lr": 2e-3, "epochs": 40, "batch_size": 64, "code_size": 10},
    "denoising": {"lr": 2e-3, "epochs": 40, "batch_size": 64},
    "ecg": {"lr": 2e-3, "epochs": 150, "batch_size": 32},
    "conv1d": {"lr": 1e-3, "epochs": 30, "batch_size": 64},
    "conv2d": {"lr": 1e-3, "epochs": 20, "batch_size": 64},
}

_MODULES = ("regression", "classif2d", "usps_mlp", "autoencoder", "ecg", "clustering", "conv")


def register(
    name: str, number: int, title: str, needs: tuple[str, ...] = ()
) -> Callable[[Callable[[Context], Result]], Callable[[Context], Result]]:
    """Decorator adding an experiment function to ``EXPERIMENTS``."""

    def deco(fn: Callable[[Context], Result]) -> Callable[[Context], Result]:
        EXPERIMENTS[name] = Experiment(name, number, title, needs, fn)
        return fn

    return deco


def load_all() -> dict[str, Experiment]:
    """Imports every experiment module; returns the registry in the report's order."""
    for mod in _MODULES:
        importlib.import_module(f"{__name__}.{mod}")
    return dict(sorted(EXPERIMENTS.items(), key=lambda kv: (kv[1].number, kv[0])))


def run_experiment(exp: Experiment, ctx: Context) -> dict:
    """Runs one experiment; returns its summary entry: status ok; skipped or incomplete
    (data missing); failed when it never read a setting given in ``ctx.settings``."""
    ctx.name = exp.name
    start = time.perf_counter()
    entry: dict = {"number": exp.number, "title": exp.title, "quick": ctx.quick, "seed": ctx.seed}
    result: Result | None
    try:
        result = exp.run(ctx)
    except (MissingData, FileNotFoundError) as err:
        # "incomplete": the data-free part ran and is kept; "skipped": nothing ran.
        result = err.partial if isinstance(err, MissingData) else None
        status = "skipped" if result is None else "incomplete"
        entry.update(status=status, message=_skip_message(err, result is not None))
    else:
        entry.update(status="ok")
        unread = sorted(set(ctx.settings) - ctx.read_settings)
        if unread:
            entry.update(
                status="failed",
                message=f"{exp.name} does not read the setting(s) {', '.join(unread)} "
                "(ctx.setting): the values given would not change the run",
            )
    if ctx.settings:
        entry["settings"] = dict(ctx.settings)
    result = result or Result()
    entry.update(
        metrics=[dict(asdict(m), passed=m.passed) for m in result.metrics],
        figures=[str(Path(f).relative_to(ctx.out)) for f in result.figures],
        notes=result.notes,
    )
    entry["seconds"] = round(time.perf_counter() - start, 2)
    return entry


def _skip_message(err: Exception, partial: bool) -> str:
    """The loader's whole message (every place looked), then what to do."""
    what = "the parts that need it were skipped" if partial else "skipped"
    message = f"data missing, {what}:\n{str(err) or type(err).__name__}"
    if "DIY_NN_DATA" not in message:
        message += "\nSet DIY_NN_DATA or pass --data-dir to a folder holding usps/ and ecg5000/"
    return message


def _fmt(v: object) -> str:
    if v is None or v == "":
        return "—"
    if isinstance(v, float):
        if not math.isfinite(v):
            return str(v)
        return f"{v:.4g}" if abs(v) < 1e4 else f"{v:.3e}"
    return str(v)


def write_summary(out: Path, entries: dict[str, dict]) -> dict[str, dict]:
    """Merges ``entries`` into ``out/summary.json`` and rewrites ``out/summary.md``."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / "summary.json"
    merged: dict[str, dict] = {}
    if path.exists():
        try:
            merged = json.loads(path.read_text())
        except json.JSONDecodeError:
            merged = {}
    merged.update(entries)
    merged = dict(sorted(merged.items(), key=lambda kv: (kv[1].get("number", 99), kv[0])))
    path.write_text(json.dumps(merged, indent=2, default=str) + "\n")
    (out / "summary.md").write_text(summary_markdown(merged))
    return merged


def summary_markdown(entries: dict[str, dict]) -> str:
    """The results table: one row per metric, with the report's number and the target."""
    lines = [
        "# diy_nn: the report's experiments",
        "",
        "| # | experiment | metric | diy_nn | report | target | ok | time (s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    notes = []
    for name, e in entries.items():
        mode = " (quick)" if e.get("quick") else ""
        if e.get("status") != "ok":
            notes.append(
                f"- **{name}** ({e.get('status')}): " + e.get("message", "").replace("\n", "\n  ")
            )
        if not e.get("metrics"):
            lines.append(
                f"| {e.get('number', '')} | {name}{mode} | {e.get('status')} | — | — | — | — "
                f"| {e.get('seconds', '')} |"
            )
            continue
        # quick budgets are smoke tests, not meant to reach the targets
        missed = "missed (quick)" if e.get("quick") else "**NO**"
        for i, m in enumerate(e["metrics"]):
            target = f"{m['goal']} {_fmt(m['target'])}" if m.get("goal") else "—"
            ok = {True: "yes", False: missed, None: ""}[m.get("passed")]
            label = f"{name}{mode}" if i == 0 else ""
            secs = e.get("seconds", "") if i == 0 else ""
            metric = m["name"] + (f" ({m['note']})" if m.get("note") else "")
            lines.append(
                f"| {e.get('number', '') if i == 0 else ''} | {label} | {metric} | "
                f"{_fmt(m['value'])} | {_fmt(m.get('report'))} | {target} | {ok} | {secs} |"
            )
        if e.get("notes"):
            notes.append(f"- **{name}**: {e['notes']}")
    if any(e.get("quick") for e in entries.values()):
        notes.append(
            "- (quick): small budgets for a smoke test, not meant to meet the targets; "
            "run without --quick for the report's numbers"
        )
    if notes:
        lines += ["", "Notes:", "", *notes]
    return "\n".join(lines) + "\n"
