"""Command line: ``python -m diy_nn.experiments list | run NAME... | run all | sweep ...``
(also ``diy-nn``).

Exit status: 0 when every requested experiment ran whole; 1 when one could not (its
data is missing: the others still run, and its data-free parts are kept; or it never read
a setting given with ``--set``); 2 for an unknown experiment or a bad ``--set``; 3 when
the ``experiments`` extra (matplotlib, scikit-learn) is not installed.

Each experiment prints one summary line (and, when it could not run whole, the
loader's message listing every place looked). Progress bars are drawn on a terminal
only: in a log file they would be thousands of frames.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from . import (
    SETTINGS,
    Context,
    load_all,
    run_experiment,
    summary_markdown,
    sweep,
    write_summary,
)

EXIT_INCOMPLETE = 1
EXIT_USAGE = 2
EXIT_MISSING_EXTRA = 3

# (module imported, package to install) of the `experiments` extra
EXTRAS = (("matplotlib", "matplotlib"), ("sklearn", "scikit-learn"))


def _add_list(sub: argparse._SubParsersAction) -> None:
    sub.add_parser("list", help="list the experiments")


def _add_run(sub: argparse._SubParsersAction) -> None:
    run = sub.add_parser("run", help="run experiments by name, or 'all'")
    run.add_argument("names", nargs="+", metavar="NAME", help="experiment names, or 'all'")
    run.add_argument("--out", type=Path, default=Path("results"), help="output folder")
    run.add_argument(
        "--quick",
        action="store_true",
        help="small budgets: a smoke test, not meant to meet the targets",
    )
    run.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    run.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="folder holding usps/ and ecg5000/ (default: $DIY_NN_DATA)",
    )
    run.add_argument(
        "--no-progress",
        action="store_true",
        help="hide the progress bars (they are shown on a terminal only)",
    )
    run.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=V",
        help="a hyper-parameter the experiments declare, one value (repeatable); "
        "an explicit epochs is used as given, even with --quick",
    )


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="diy-nn",
        description="Reproduce the experiments of the diy_nn report (figures and a results table).",
    )
    sub = p.add_subparsers(dest="command", required=True)
    for add in PARSERS:
        add(sub)
    return p


def missing_extras() -> list[str]:
    """The packages of the ``experiments`` extra that cannot be imported."""
    missing = []
    for module, package in EXTRAS:
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(package)
    return missing


def _install_hint(missing: list[str]) -> str:
    return (
        f"diy-nn: the experiments need {' and '.join(missing)} (the 'experiments' extra), "
        "which are not installed. Install them with\n"
        "  pip install 'diy_nn[experiments]'\n"
        "or, in a clone of the repository, `pip install '.[experiments]'`, "
        "`maturin develop --extras experiments` or `make demo`."
    )


def _metric_text(m: dict, quick: bool) -> str:
    text = f"{m['name']} {m['value']:.4g}"
    details = []
    if m.get("report") not in (None, ""):
        details.append(f"report {m['report']}")
    if m.get("passed") is not None:
        verdict = "met" if m["passed"] else "missed (quick budget)" if quick else "MISSED"
        details.append(f"target {m['goal']} {m['target']:g} {verdict}")
    return text + (f" ({'; '.join(details)})" if details else "")


def summary_line(name: str, entry: dict) -> str:
    """One line for one experiment: its status, time and metrics."""
    status = entry["status"]
    head = f"{entry['number']}. {name}: {status if status == 'ok' else status.upper()}"
    head += f" in {entry['seconds']:.1f} s"
    parts = [_metric_text(m, bool(entry.get("quick"))) for m in entry.get("metrics", [])]
    return " | ".join([head, *parts])


def cmd_list(args: argparse.Namespace) -> int:
    for exp in load_all().values():
        needs = f"  [needs {', '.join(exp.needs)}]" if exp.needs else ""
        print(f"{exp.number}  {exp.name:<12} {exp.title}{needs}")
    return 0


def _one_setting(items: Sequence[str], names: Sequence[str]) -> dict[str, float | int]:
    """``--set KEY=V`` of ``run``: sweep's parser, and one value per key."""
    grid = sweep.parse_settings(items, names, SETTINGS)
    if len(grid) > 1:
        several = [i.partition("=")[0] for i in items if "," in i.partition("=")[2]]
        raise ValueError(
            f"--set {', '.join(several)}: run takes one value per key; "
            "diy-nn sweep varies a setting over several"
        )
    return grid[0]


def cmd_run(args: argparse.Namespace) -> int:
    registry = load_all()
    names = list(registry) if "all" in args.names else list(dict.fromkeys(args.names))
    unknown = [n for n in names if n not in registry]
    if unknown:
        print(f"unknown experiment(s): {', '.join(unknown)}; try: {', '.join(registry)}")
        return EXIT_USAGE
    try:
        settings = _one_setting(args.set, names)
    except ValueError as err:
        print(f"diy-nn run: {err}", file=sys.stderr)
        return EXIT_USAGE
    missing = missing_extras()
    if missing:
        print(_install_hint(missing), file=sys.stderr)
        return EXIT_MISSING_EXTRA
    terminal = sys.stdout.isatty()
    if args.quick:
        print("--quick: small budgets for a smoke test; they are not meant to meet the targets.")
    start = time.perf_counter()
    entries = {}
    for name in names:
        ctx = Context(
            out=args.out,
            quick=args.quick,
            seed=args.seed,
            data_dir=args.data_dir,
            progress=not args.no_progress and sys.stderr.isatty(),
            settings=dict(settings),
        )
        if terminal:
            print(f"== {registry[name].number}. {name}: {registry[name].title}", flush=True)
        entry = run_experiment(registry[name], ctx)
        entries[name] = entry
        print(summary_line(name, entry), flush=True)
        if entry["status"] != "ok":
            print("   " + entry["message"].replace("\n", "\n   "), flush=True)
        write_summary(args.out, {name: entry})
    elapsed = time.perf_counter() - start
    print()
    print(summary_markdown(entries), end="")
    print(f"\nwall time: {elapsed:.1f} s; summary in {args.out / 'summary.md'}")
    incomplete = [n for n, e in entries.items() if e["status"] != "ok"]
    if incomplete:
        print(
            f"{len(incomplete)} of {len(entries)} experiment(s) could not run whole: "
            f"{', '.join(incomplete)}",
            file=sys.stderr,
        )
        return EXIT_INCOMPLETE
    return 0


# Each subcommand: a function adding its parser, and the function running it.
PARSERS: list[Callable[[argparse._SubParsersAction], None]] = [
    _add_list,
    _add_run,
    sweep.add_parser,
]
COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "list": cmd_list,
    "run": cmd_run,
    "sweep": sweep.main,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    return COMMANDS[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
