"""``diy-nn sweep``: the experiments over many seeds and settings, on Dask distributed.

One task per (experiment, seed, setting). A task runs in a Dask worker process with the
kernels' threads (``diy_nn.set_num_threads``) and numpy's BLAS threads (threadpoolctl)
set to the worker's thread count, and a worker runs one task at a time, so W workers of
one thread each never ask for more than W cores. Without ``--scheduler`` the tasks go to
a ``LocalCluster`` of W worker processes on 127.0.0.1 (dashboard off); with
``--scheduler tcp://host:port``, to an existing Dask cluster, unchanged.

What it writes under ``DIR``:

- ``runs/<experiment>/<setting>/seed-<k>.json``: one finished run, written by its task
  once (a temporary file hard-linked into place: never half-written, never replaced),
  its figures under ``seed-<k>/``, and a line in ``runs/written.log``;
- ``sweep.json``: ``{"runs": [...], "summary": {experiment: {setting: {metric:
  {"mean", "std", "n"}}}}}`` (``std``: the sample standard deviation, None below 2 runs);
- ``sweep.md``: mean ± std beside the report's numbers and the targets;
- ``figures/<experiment>.png``: each metric's spread over the seeds, per setting.

Rerunning the same command skips the runs already in ``runs/``. A run that raises is
recorded as failed with its error and the others go on; the tasks of a worker that dies
are rerun elsewhere by the scheduler. A run's metrics are those of the serial
``diy-nn run NAME --seed k`` at the same thread count: every random choice derives from
the seed, and the kernels give the same sums for a thread count.

Dask is imported only here, on use: ``import diy_nn`` never imports it.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import re
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "Task",
    "WORKER_CONFIG",
    "parse_seeds",
    "parse_settings",
    "plan",
    "run_task",
    "summarize",
    "sweep",
    "worker_environ",
]

Value = float | int


@dataclass(frozen=True)
class Task:
    """One run of a sweep: what a worker needs (plain data, cheap to send)."""

    experiment: str
    seed: int
    setting: str
    settings: dict[str, Value] = field(default_factory=dict)
    quick: bool = False
    out: str = "sweep"
    data_dir: str | None = None

    @property
    def path(self) -> Path:
        return Path(self.out) / "runs" / self.experiment / self.setting / f"seed-{self.seed}.json"


def parse_seeds(text: str) -> list[int]:
    """``"N"``: seeds 0 .. N-1; ``"A-B"``: seeds A .. B (both included)."""
    m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", text)
    if not m:
        raise ValueError(f"--seeds: expected N or A-B (non-negative integers), got {text!r}")
    if m.group(2) is None:
        n = int(m.group(1))
        if n < 1:
            raise ValueError(f"--seeds: N must be at least 1, got {n}")
        return list(range(n))
    a, b = int(m.group(1)), int(m.group(2))
    if b < a:
        raise ValueError(f"--seeds: A-B needs A <= B, got {text!r}")
    return list(range(a, b + 1))


def parse_settings(
    items: Sequence[str], names: Sequence[str], declared: dict[str, dict[str, Value]]
) -> list[dict[str, Value]]:
    """``["KEY=V1,V2", ...]`` -> every combination, as dicts (``[{}]`` with no item).

    Each KEY must be declared by every experiment named (``experiments.SETTINGS``); each
    value is read with the type of the key's default (int or float).
    """
    grid: dict[str, list[Value]] = {}
    for item in items:
        key, sep, values = item.partition("=")
        key = key.strip()
        if not sep or not key or not values.strip():
            raise ValueError(f"--set: expected KEY=V1,V2,..., got {item!r}")
        if key in grid:
            raise ValueError(f"--set: {key!r} given twice")
        for name in names:
            if key not in declared.get(name, {}):
                takes = ", ".join(declared.get(name, {})) or "none"
                raise ValueError(
                    f"--set: unknown key {key!r} for experiment {name!r} (it takes: {takes})"
                )
        default = declared[names[0]][key]
        kind = int if isinstance(default, int) else float
        parsed: list[Value] = []
        for v in values.split(","):
            try:
                parsed.append(kind(v.strip()))
            except ValueError:
                raise ValueError(
                    f"--set {key}: {v.strip()!r} is not a{'n int' if kind is int else ' float'}"
                ) from None
        grid[key] = list(dict.fromkeys(parsed))
    keys = sorted(grid)
    return [
        dict(zip(keys, combo, strict=True)) for combo in itertools.product(*(grid[k] for k in keys))
    ]


def setting_label(settings: dict[str, Value], quick: bool) -> str:
    """The folder name of a setting: ``default``, ``quick``, ``lr=0.01,epochs=5``, ..."""
    parts = (["quick"] if quick else []) + [f"{k}={settings[k]!r}" for k in sorted(settings)]
    return ",".join(parts) or "default"


def plan(
    names: Sequence[str],
    seeds: Sequence[int],
    grid: Sequence[dict[str, Value]],
    out: Path,
    quick: bool = False,
    data_dir: Path | None = None,
) -> list[Task]:
    """Every (experiment, setting, seed) task, in that order. The workers write the runs:
    ``out`` (made absolute) must be the same folder for them, on a cluster a shared one."""
    return [
        Task(
            name,
            seed,
            setting_label(s, quick),
            dict(s),
            quick,
            str(out.absolute()),
            None if data_dir is None else str(data_dir.absolute()),
        )
        for name in names
        for s in grid
        for seed in seeds
    ]


# A worker process runs one sweep task at a time: the thread counts below are global to
# the process, and a worker with T threads then gives its T threads to one run.
_ONE_AT_A_TIME = threading.Lock()


def _worker_threads() -> int:
    try:
        from distributed import get_worker

        return max(1, int(get_worker().state.nthreads))
    except (ImportError, ValueError, AttributeError):
        return 1  # not in a Dask worker: one thread, like a worker of the default size


def run_task(task: Task) -> dict[str, Any]:
    """Runs one task (in a worker); returns its record and, if ok, writes it once.

    A run already written (a task rerun after its worker died once it had finished) is
    read back, not run again.
    """
    with _ONE_AT_A_TIME:
        if task.path.exists():
            return json.loads(task.path.read_text())
        from threadpoolctl import threadpool_limits

        import diy_nn

        from . import Context, load_all, run_experiment

        threads = _worker_threads()
        record: dict[str, Any] = {
            "experiment": task.experiment,
            "seed": task.seed,
            "setting": task.setting,
            "settings": task.settings,
            "quick": task.quick,
            "threads": threads,
            "pid": os.getpid(),
        }
        start = time.perf_counter()
        try:
            exp = load_all()[task.experiment]
            ctx = Context(
                out=task.path.with_suffix(""),
                quick=task.quick,
                seed=task.seed,
                data_dir=None if task.data_dir is None else Path(task.data_dir),
                progress=False,
                settings=dict(task.settings),
            )
            diy_nn.set_num_threads(threads)
            try:
                with threadpool_limits(limits=threads):
                    entry = run_experiment(exp, ctx)
            finally:
                diy_nn.set_num_threads(0)  # back to the default pool
        except Exception as err:  # recorded, and the other tasks go on
            record.update(status="failed", error=_error_text(err))
        else:
            # run_experiment fails a run that never read a setting it was given
            if entry["status"] != "ok":
                record.update(status="failed", error=entry.get("message", entry["status"]))
            else:
                record.update(status="ok", metrics=entry["metrics"])
        record["seconds"] = round(time.perf_counter() - start, 3)
        if record["status"] == "ok":
            return _write_once(task, record)
        return record


def _error_text(err: BaseException) -> str:
    where = traceback.extract_tb(err.__traceback__)
    last = f" (at {Path(where[-1].filename).name}:{where[-1].lineno})" if where else ""
    return f"{type(err).__name__}: {err}{last}"


def _write_once(task: Task, record: dict[str, Any]) -> dict[str, Any]:
    """Writes ``record`` to ``task.path`` whole and only once; returns what is there."""
    path = task.path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    tmp.write_text(json.dumps(record, indent=1) + "\n")
    try:
        os.link(tmp, path)
    except FileExistsError:
        return json.loads(path.read_text())  # another attempt finished first: keep its file
    finally:
        tmp.unlink()
    with open(Path(task.out) / "runs" / "written.log", "a") as log:
        log.write(f"{task.experiment}/{task.setting}/seed-{task.seed} pid {os.getpid()}\n")
    return record


def _cores() -> int:
    """The cores this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


#: Dask settings of the workers a sweep starts. A worker's event loop wakes every 20 ms by
#: default (its tick, profiler and monitors), each time taking the GIL from the run, which
#: releases it around every kernel call: measured on a busy 2-core machine, a full
#: usps_mlp run took 28-31 s in a default worker against 18-20 s alone; with these, 16-19 s.
#: Workers started by hand take them as environment variables (see the README).
WORKER_CONFIG = {
    "distributed.admin.tick.interval": "1s",
    "distributed.worker.profile.enabled": False,
    "distributed.worker.memory.monitor-interval": "1s",
    "distributed.admin.system-monitor.interval": "2s",
}


def worker_environ() -> dict[str, str]:
    """``WORKER_CONFIG`` as the environment variables of a ``dask worker`` started by hand."""
    return {
        "DASK_" + key.upper().replace(".", "__").replace("-", "_"): str(value)
        for key, value in WORKER_CONFIG.items()
    }


def _client(workers: int, scheduler: str | None) -> tuple[Any, Any]:
    """A Dask client on ``scheduler``, or on a new loopback LocalCluster of ``workers``."""
    import logging

    import dask
    from distributed import Client, LocalCluster

    if scheduler:
        return Client(scheduler, timeout="30s"), None
    with dask.config.set(WORKER_CONFIG):  # the nannies hand it to their workers
        cluster = LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            # no dashboard; the scheduler's small HTTP server on a free loopback port
            scheduler_kwargs={"dashboard": False, "dashboard_address": "127.0.0.1:0"},
            silence_logs=logging.ERROR,
        )
    return Client(cluster), cluster


def sweep(
    tasks: Sequence[Task],
    out: Path,
    workers: int | None = None,
    scheduler: str | None = None,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Runs the tasks not finished yet in ``out/runs``; writes ``sweep.json``, ``sweep.md``
    and the figures; returns ``sweep.json``'s content.

    ``progress``: None shows the bar on a terminal only.
    """
    from tqdm.auto import tqdm

    records: dict[int, dict[str, Any]] = {}
    todo = []
    for i, t in enumerate(tasks):
        if t.path.exists():
            records[i] = json.loads(t.path.read_text())
        else:
            todo.append(i)
    if todo:
        from distributed import as_completed

        client, cluster = _client(workers or _cores(), scheduler)
        try:
            futures = {
                client.submit(
                    run_task, tasks[i], key=f"sweep-{uuid.uuid4().hex[:8]}-{_key(tasks[i])}"
                ): i
                for i in todo
            }
            bar = tqdm(
                total=len(tasks),
                initial=len(records),
                desc="sweep",
                unit="run",
                disable=None if progress is None else not progress,
            )
            with bar:
                for fut in as_completed(futures):
                    i = futures[fut]
                    try:
                        records[i] = fut.result()
                    except Exception as err:  # the worker died too often, or got lost
                        records[i] = {
                            **_ident(tasks[i]),
                            "status": "failed",
                            "error": _error_text(err),
                        }
                    bar.update()
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
    runs = [_public(records[i]) for i in range(len(tasks))]
    summary = summarize(runs)
    result: dict[str, Any] = {"runs": runs, "summary": summary}
    out.mkdir(parents=True, exist_ok=True)
    (out / "sweep.json").write_text(json.dumps(result, indent=1) + "\n")
    (out / "sweep.md").write_text(sweep_markdown(runs, summary))
    for name in dict.fromkeys(r["experiment"] for r in runs):
        plot_spread(name, runs, out / "figures" / f"{name}.png")
    return result


def _key(t: Task) -> str:
    return f"{t.experiment}-{t.setting}-seed{t.seed}"


def _ident(t: Task) -> dict[str, Any]:
    return {"experiment": t.experiment, "seed": t.seed, "setting": t.setting, "seconds": None}


def _public(r: dict[str, Any]) -> dict[str, Any]:
    keep = ("experiment", "seed", "setting", "status", "metrics", "error", "seconds")
    return {k: r[k] for k in keep if k in r}


def _metric_table(runs: Iterable[dict[str, Any]]) -> dict[str, dict[str, dict[str, list]]]:
    """experiment -> setting -> metric -> the ok runs' metric dicts, in seed order."""
    table: dict[str, dict[str, dict[str, list]]] = {}
    for r in runs:
        per = table.setdefault(r["experiment"], {}).setdefault(r["setting"], {})
        for m in r.get("metrics", []) if r["status"] == "ok" else []:
            per.setdefault(m["name"], []).append(m)
    return table


def summarize(runs: Iterable[dict[str, Any]]) -> dict[str, dict[str, dict[str, dict]]]:
    """Mean, sample std (None for one run) and count of each metric over the ok runs."""
    out: dict[str, dict[str, dict[str, dict]]] = {}
    for name, settings in _metric_table(runs).items():
        for label, metrics in settings.items():
            for metric, ms in metrics.items():
                v = np.array([m["value"] for m in ms], dtype=float)
                std = float(np.std(v, ddof=1)) if len(v) > 1 else None
                entry = {"mean": float(np.mean(v)), "std": std, "n": len(v)}
                out.setdefault(name, {}).setdefault(label, {})[metric] = entry
    return out


def _fmt(v: float | None) -> str:
    if v is None:
        return "—"
    if not math.isfinite(v):
        return str(v)
    return f"{v:.4g}" if abs(v) < 1e4 else f"{v:.3e}"


def sweep_markdown(runs: Sequence[dict[str, Any]], summary: dict) -> str:
    """The table of ``sweep.md``: mean ± std over seeds, the report's number, the target
    and how many seeds met it; then the failed runs with their errors."""
    lines = [
        "# diy_nn sweep: mean ± std over seeds",
        "",
        "| experiment | setting | metric | mean ± std | n | report | target | seeds on target |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, settings in _metric_table(runs).items():
        for label, metrics in settings.items():
            for metric, ms in metrics.items():
                s = summary[name][label][metric]
                first = ms[0]
                target = f"{first['goal']} {_fmt(first['target'])}" if first.get("goal") else "—"
                met = [m.get("passed") for m in ms]
                on = f"{sum(p is True for p in met)}/{len(met)}" if first.get("goal") else ""
                report = first.get("report")
                report_s = _fmt(report) if isinstance(report, int | float) else str(report or "—")
                spread = f"{_fmt(s['mean'])} ± {_fmt(s['std'])}"
                lines.append(
                    f"| {name} | {label} | {metric} | {spread} | {s['n']} | {report_s} "
                    f"| {target} | {on} |"
                )
    failed = [r for r in runs if r["status"] != "ok"]
    n_ok = len(runs) - len(failed)
    lines += ["", f"{n_ok} of {len(runs)} runs ok."]
    if failed:
        lines += ["", "Failed runs:", ""]
        lines += [
            f"- {r['experiment']} / {r['setting']} / seed {r['seed']}: {r.get('error', '')}"
            for r in failed
        ]
    return "\n".join(lines) + "\n"


def plot_spread(name: str, runs: Sequence[dict[str, Any]], path: Path) -> Path | None:
    """One panel per metric of ``name``: each seed's value per setting (dots), mean ± std
    (bar) and the target (dashed line)."""
    table = _metric_table(runs).get(name, {})
    metrics = list(dict.fromkeys(m for per in table.values() for m in per))
    if not metrics:
        return None
    from .. import plotting

    plt = plotting._plt()
    cols = min(3, len(metrics))
    rows = -(-len(metrics) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows), squeeze=False)
    labels = list(table)
    for ax, metric in zip(axes.flat, metrics, strict=False):
        target = None
        for i, label in enumerate(labels):
            ms = table[label].get(metric, [])
            v = np.array([m["value"] for m in ms], dtype=float)
            if len(v) == 0:
                continue
            jitter = np.linspace(-0.15, 0.15, len(v)) if len(v) > 1 else np.zeros(1)
            ax.plot(i + jitter, v, "o", alpha=0.6, color="C0", ms=4)
            std = float(np.std(v, ddof=1)) if len(v) > 1 else 0.0
            ax.errorbar([i + 0.3], [float(np.mean(v))], [std], fmt="s", color="C1", capsize=4)
            if ms[0].get("goal") and ms[0].get("target") is not None:
                target = (ms[0]["goal"], ms[0]["target"])
        if target is not None:
            ax.axhline(
                target[1], ls="--", color="C3", lw=1, label=f"target {target[0]} {target[1]}"
            )
            ax.legend(fontsize=7)
        ax.set_xticks(range(len(labels)), labels, rotation=20, fontsize=7)
        ax.set_title(metric, fontsize=9)
    for ax in list(axes.flat)[len(metrics) :]:
        ax.axis("off")
    fig.suptitle(f"{name}: spread over seeds (dots), mean ± std (squares)", fontsize=10)
    fig.tight_layout()
    return plotting._save(fig, path)


def add_parser(sub: Any) -> None:
    """Adds the ``sweep`` subcommand to the ``diy-nn`` parser's subparsers ``sub``."""
    p = sub.add_parser(
        "sweep",
        help="run experiments over seeds and settings on Dask (local processes or a cluster)",
    )
    p.add_argument("names", nargs="+", metavar="NAME", help="experiment names, or 'all'")
    p.add_argument("--seeds", required=True, help="N (seeds 0..N-1) or A-B (A..B)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=V1,V2",
        help="vary a hyper-parameter the experiments declare (repeatable: every combination)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="worker processes of the local cluster, one thread each (default: the cores)",
    )
    p.add_argument("--scheduler", default=None, help="an existing Dask scheduler, tcp://host:port")
    p.add_argument("--quick", action="store_true", help="small budgets (smoke test)")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--data-dir", type=Path, default=None, help="default: $DIY_NN_DATA")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def main(args: argparse.Namespace) -> int:
    """Runs ``diy-nn sweep``; 0 when every run is ok, 1 when some failed, 2 on bad usage."""
    from . import SETTINGS, load_all

    registry = load_all()
    names = list(registry) if "all" in args.names else list(dict.fromkeys(args.names))
    unknown = [n for n in names if n not in registry]
    try:
        if unknown:
            raise ValueError(
                f"unknown experiment(s): {', '.join(unknown)}; try: {', '.join(registry)}"
            )
        if args.workers is not None and args.workers < 1:
            raise ValueError(f"--workers must be at least 1, got {args.workers}")
        seeds = parse_seeds(args.seeds)
        grid = parse_settings(args.set, names, SETTINGS)
    except ValueError as err:
        print(f"diy-nn sweep: {err}", file=sys.stderr)
        return 2
    tasks = plan(names, seeds, grid, args.out, args.quick, args.data_dir)
    start = time.perf_counter()
    result = sweep(
        tasks, args.out, args.workers, args.scheduler, False if args.no_progress else None
    )
    n_ok = sum(r["status"] == "ok" for r in result["runs"])
    print(sweep_markdown(result["runs"], result["summary"]), end="")
    print(
        f"\n{n_ok} of {len(tasks)} runs ok; wall time {time.perf_counter() - start:.1f} s; "
        f"results in {args.out / 'sweep.md'}"
    )
    return 0 if n_ok == len(tasks) else 1
