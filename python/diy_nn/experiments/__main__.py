"""Command line: ``python -m diy_nn.experiments list | run NAME... | run all | sweep ...``
(also ``diy-nn``)."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from . import Context, load_all, run_experiment, summary_markdown, sweep, write_summary


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="diy-nn",
        description="Reproduce the experiments of the diy_nn report (figures and a results table).",
    )
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list the experiments")
    run = sub.add_parser("run", help="run experiments by name, or 'all'")
    run.add_argument("names", nargs="+", metavar="NAME", help="experiment names, or 'all'")
    run.add_argument("--out", type=Path, default=Path("results"), help="output folder")
    run.add_argument("--quick", action="store_true", help="small budgets (smoke test)")
    run.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    run.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="folder holding usps/ and ecg5000/ (default: $DIY_NN_DATA)",
    )
    run.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    sweep.add_parser(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "sweep":
        return sweep.main(args)
    registry = load_all()
    if args.command == "list":
        for exp in registry.values():
            needs = f"  [needs {', '.join(exp.needs)}]" if exp.needs else ""
            print(f"{exp.number}  {exp.name:<12} {exp.title}{needs}")
        return 0
    names = list(registry) if "all" in args.names else list(dict.fromkeys(args.names))
    unknown = [n for n in names if n not in registry]
    if unknown:
        print(f"unknown experiment(s): {', '.join(unknown)}; try: {', '.join(registry)}")
        return 2
    start = time.perf_counter()
    entries = {}
    for name in names:
        ctx = Context(
            out=args.out,
            quick=args.quick,
            seed=args.seed,
            data_dir=args.data_dir,
            progress=not args.no_progress,
        )
        print(f"== {registry[name].number}. {name}: {registry[name].title}", flush=True)
        entry = run_experiment(registry[name], ctx)
        entries[name] = entry
        if entry["status"] != "ok":
            print(f"   {entry['message']}", flush=True)
        else:
            for m in entry["metrics"]:
                flag = {True: "ok", False: "MISSED", None: ""}[m["passed"]]
                print(f"   {m['name']}: {m['value']:.4g}  (report {m['report']}) {flag}")
            print(f"   {entry['seconds']:.1f} s", flush=True)
        write_summary(args.out, {name: entry})
    elapsed = time.perf_counter() - start
    print()
    print(summary_markdown(entries), end="")
    print(f"\nwall time: {elapsed:.1f} s; summary in {args.out / 'summary.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
