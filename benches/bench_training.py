"""End-to-end training benchmark: diy_nn against torch, torch.compile, jax.jit and numpy.

Each workload (``training_workloads.py``: the report's models on USPS-shaped
random data, float32 and float64, the per-layer course loop, SGD with momentum
and Adam, CIFAR-sized conv nets, wide dense nets, batch-1 inference) runs over
its samples once per timed run — forward, backward and update per batch, or the
forward alone for inference — in five implementations of the same maths
(gradients of the *summed* loss, the same optimizer rule and learning rate):

- diy_nn, through its public API (``Optim``/``SGD``/``Adam.step(x, y)``, or the
  course's per-layer calls);
- torch eager (``reduction="sum"`` losses, ``torch.optim``) and ``torch.compile``
  of the forward and loss (skipped, with the reason, where it cannot compile);
- jax: ``jax.jit`` of the whole step (``training_jax.py``; the ``bench`` extra,
  skipped with a message where jax is missing);
- plain numpy: a straightforward explicit-backprop reference.

Runs are interleaved (round robin over the frameworks, several rounds). Each
(thread count, workload) runs in its own subprocess, with the thread variables
set before any import; the 1024³ matmul GFLOP/s (float32 and float64) is
measured in the same run, per thread count. Page faults per step are the
``ru_minflt`` deltas of the timed runs. Peak memory is measured per (framework,
workload) in a fresh subprocess: the resident-set high-water mark (``VmHWM``,
reset through ``/proc/self/clear_refs``) minus the resident set just before.

``--busy N`` times a loaded machine: N processes spin (one core each) beside
every timed subprocess, as another program would, so that a framework's
threads compete with them for the cores.

    python benches/bench_training.py [--quick] [--suite base,f64,...|all]
        [--workloads mlp,cifar3,...] [--threads 1,2] [--rounds 7]
        [--frameworks diy_nn,torch,...] [--no-memory] [--busy N] [--json results.json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import training_jax
from training_frameworks import diy_setup, numpy_setup, torch_compile_setup, torch_setup
from training_workloads import LR, SUITES, WORKLOADS, Workload, flops_per_sample, make_data

THREAD_VARS = ("RAYON_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
FRAMEWORKS = ("diy_nn", "torch", "torch_compile", "jax", "numpy")
ANCHORS = ("torch", "torch_compile", "jax")  # "best of the others"
MEMORY_FRAMEWORKS = ("diy_nn", "torch", "jax", "numpy")  # torch.compile's peak is its compiler
SETUPS: dict[str, Callable[[Workload, np.ndarray, np.ndarray], Callable[[], None]]] = {
    "diy_nn": diy_setup,
    "torch": torch_setup,
    "torch_compile": torch_compile_setup,
    "jax": training_jax.jax_setup,
    "numpy": numpy_setup,
}
QUICK_SAMPLES = 1000


def run_samples(w: Workload, samples: int | None, quick: bool) -> int:
    """Samples per timed run: ``--samples``, else the workload's (capped by ``--quick``),
    at least one batch."""
    n = samples or (min(w.samples, max(QUICK_SAMPLES, 2 * w.batch)) if quick else w.samples)
    return max(n, w.batch)


# --- workers (subprocesses) ------------------------------------------------------------


def _set_threads(n: int, frameworks: tuple[str, ...]) -> None:
    if "torch" in frameworks or "torch_compile" in frameworks:
        import torch

        torch.set_num_threads(n)
    if "diy_nn" in frameworks:
        import diy_nn

        diy_nn.set_num_threads(n)


# After a call, OpenBLAS's worker threads spin for about 2^28 cycles (tens of ms)
# and OpenMP's for a while too: a run that starts in that window shares its
# cores with them (diy_nn's 2-thread matmul measured 240 instead of 450 GFLOP/s
# right after a numpy product). Each timed run starts after this pause, so no
# framework pays for the previous one's idle threads.
SETTLE_S = 0.2


def _timed(f: Callable[[], object]) -> tuple[float, int]:
    """Seconds of one call and the minor page faults it took."""
    time.sleep(SETTLE_S)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    t0 = time.perf_counter()
    f()
    elapsed = time.perf_counter() - t0
    return elapsed, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults


def worker_matmul(args: dict[str, Any]) -> dict[str, Any]:
    """GFLOP/s of a 1024³ product, float32 and float64: numpy (BLAS) and diy_nn."""
    _set_threads(args["threads"], ("diy_nn",))
    rng = np.random.default_rng(1)
    out: dict[str, dict[str, float]] = {}
    for dtype in ("float32", "float64"):
        a = rng.random((1024, 1024)).astype(dtype)
        b = rng.random((1024, 1024)).astype(dtype)
        products: dict[str, Callable[[], object]] = {"numpy": lambda a=a, b=b: a @ b}
        try:
            from diy_nn import _core

            products["diy_nn"] = lambda a=a, b=b: _core.matmul(a, b)
        except ImportError:
            pass
        for name, f in products.items():
            f()
            best = min(_timed(f)[0] for _ in range(args.get("repeats", 3)))
            out.setdefault(dtype, {})[name] = 2 * 1024**3 / best / 1e9
    return out


def worker_times(args: dict[str, Any]) -> dict[str, Any]:
    threads, rounds, n = args["threads"], args["rounds"], args["samples"]
    frameworks = tuple(args["frameworks"])
    training_jax.configure(threads)
    _set_threads(threads, tuple(f for f in frameworks if f != "jax"))
    w = WORKLOADS[args["workload"]]
    x, y = make_data(w, n)
    result: dict[str, Any] = {"times": {}, "faults": {}, "errors": {}}
    runs: dict[str, Callable[[], None]] = {}
    for fw in frameworks:
        try:
            runs[fw] = SETUPS[fw](w, x, y)
            runs[fw]()  # warm-up run (and compilation)
        except Exception as e:  # a missing package, a workload an implementation lacks
            runs.pop(fw, None)
            msg = str(e).strip().splitlines()
            result["errors"][fw] = f"{type(e).__name__}: {msg[0] if msg else ''}"[:200]
    cpus = os.cpu_count() or 1
    if "jax" in runs and 1 < threads < cpus:
        result["notes"] = [f"jax: XLA's pool runs on all {cpus} CPUs, not {threads} threads"]
    for fw in runs:
        result["times"][fw], result["faults"][fw] = [], []
    for _ in range(rounds):
        for fw, run in runs.items():  # interleaved: each round visits every framework
            t, faults = _timed(run)
            result["times"][fw].append(t)
            result["faults"][fw].append(faults)
    return result


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def worker_memory(args: dict[str, Any]) -> dict[str, Any]:
    """Peak resident-set increase (MiB) of building the model and one run."""
    fw, w = args["framework"], WORKLOADS[args["workload"]]
    training_jax.configure(args["threads"])
    if fw == "torch":
        import torch  # noqa: F401
    elif fw == "diy_nn":
        import diy_nn  # noqa: F401
    elif fw == "jax":
        import jax  # noqa: F401
    _set_threads(args["threads"], (fw,))
    x, y = make_data(w, args["samples"])
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    before = _status_kib("VmRSS")
    run = SETUPS[fw](w, x, y)
    run()
    peak = _status_kib("VmHWM")
    return {"peak_mib": (peak - before) / 1024}


BUSY_TAG = "diy_nn-bench-busy"


@contextlib.contextmanager
def busy_processes(n: int) -> Any:
    """``n`` processes spinning on one core each while the block runs (``--busy``).

    Each is named by a ``BUSY_TAG`` argument and this process's id, so a test can
    tell them from any other process of the machine.
    """
    spin = [sys.executable, "-c", "while True: pass", BUSY_TAG, str(os.getpid())]
    procs = [subprocess.Popen(spin, stdout=subprocess.DEVNULL) for _ in range(n)]
    try:
        yield
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def run_worker(mode: str, args: dict[str, Any], threads: int, timeout: float) -> dict[str, Any]:
    env = dict(os.environ)
    for var in THREAD_VARS:
        env[var] = str(threads)
    try:
        proc = subprocess.run(
            [sys.executable, __file__, "--_worker", mode, json.dumps(args)],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1:] or ["(no output)"]
        return {"error": f"exit {proc.returncode}: {tail[0]}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --- the report --------------------------------------------------------------------------


def summarise(ts: list[float]) -> dict[str, float]:
    med = statistics.median(ts)
    return {
        "median_s": med,
        "min_s": min(ts),
        "max_s": max(ts),
        "spread": (max(ts) - min(ts)) / med if med else 0.0,
        "rounds": len(ts),
    }


def workload_result(
    w: Workload, raw: dict[str, Any], samples: int, matmul: dict[str, Any]
) -> dict[str, Any]:
    """Per framework: times, GFLOP/s and faults per step; diy_nn's ratios."""
    res: dict[str, Any] = {"title": w.title, "samples": samples, "steps": w.steps(samples)}
    flops = flops_per_sample(w) * samples
    for fw, ts in raw.get("times", {}).items():
        s = summarise(ts)
        s["gflops"] = flops / s["median_s"] / 1e9
        s["faults_per_step"] = statistics.median(raw["faults"][fw]) / res["steps"]
        res[fw] = s
    mm = matmul.get(w.dtype, {}).get("numpy")
    if "diy_nn" in res:
        diy = res["diy_nn"]["median_s"]
        for other in ("torch", "numpy"):
            if other in res:
                res[f"diy/{other}"] = diy / res[other]["median_s"]
        anchors = {fw: res[fw]["median_s"] for fw in ANCHORS if fw in res}
        if anchors:
            best = min(anchors, key=anchors.__getitem__)
            res["best_other"], res["diy/best"] = best, diy / anchors[best]
        if mm:
            res["diy_nn_matmul_fraction"] = res["diy_nn"]["gflops"] / mm
    return res


def _ratio(res: dict[str, Any], key: str) -> str:
    return f"{res[key]:.3f}" if key in res else "-"


def print_table(report: dict[str, Any]) -> None:
    print(f"\nCPU: {report['machine']['cpu']} ({report['machine']['cores']} logical CPUs)")
    if report.get("busy"):
        print(f"a loaded machine: {report['busy']} busy process(es) spun beside the timed runs")
    print(
        "ms: median time of one run over the workload's samples (spread); best = the fastest "
        "of torch, torch.compile (tc), jax.jit; GFLOP/s and %mm (of numpy's 1024^3 matmul, "
        "same dtype) are diy_nn's; faults: minor page faults per step, diy_nn / torch"
    )
    short = {"torch_compile": "tc", "torch": "torch", "jax": "jax"}
    for tkey, run in report["runs"].items():
        mm = run.get("matmul_gflops", {})
        mm_text = ", ".join(
            f"{dt} numpy {v.get('numpy', 0):.1f} / diy_nn {v.get('diy_nn', 0):.1f}"
            for dt, v in mm.items()
        )
        print(f"\n== {tkey} thread(s); 1024^3 matmul GFLOP/s: {mm_text or '-'}")
        head = f"{'workload':<22}{'steps':>6}"
        head += "".join(f"{h:>15}" for h in ("diy_nn ms", "torch ms", "compile ms", "jax ms"))
        head += f"{'numpy ms':>15}{'diy/torch':>10}{'diy/numpy':>10}{'diy/best':>14}"
        head += f"{'GFLOP/s':>9}{'%mm':>5}{'faults':>12}"
        print(head)
        print("-" * len(head))
        for wname, res in run["workloads"].items():
            cells = []
            for fw in FRAMEWORKS:
                s = res.get(fw)
                cells.append(
                    f"{s['median_s'] * 1e3:8.1f} ({s['spread'] * 100:2.0f}%)" if s else "-"
                )
            best = f"{_ratio(res, 'diy/best')} {short.get(res.get('best_other', ''), '')}"
            diy = res.get("diy_nn", {})
            gflops = f"{diy['gflops']:.1f}" if diy else "-"
            frac = res.get("diy_nn_matmul_fraction")
            faults = "/".join(
                f"{res[fw]['faults_per_step']:.0f}" if fw in res else "-"
                for fw in ("diy_nn", "torch")
            )
            print(
                f"{wname:<22}{res.get('steps', ''):>6}"
                + "".join(f"{c:>15}" for c in cells)
                + f"{_ratio(res, 'diy/torch'):>10}{_ratio(res, 'diy/numpy'):>10}{best:>14}"
                + f"{gflops:>9}{f'{frac * 100:.0f}' if frac else '-':>5}{faults:>12}"
            )
        mem = run.get("memory")
        if mem:
            print("peak memory (MiB over the RSS before the run):")
            for wname, per_fw in mem.items():
                vals = "  ".join(
                    f"{fw} {per_fw[fw]:.1f}" if isinstance(per_fw.get(fw), float) else f"{fw} -"
                    for fw in MEMORY_FRAMEWORKS
                    if fw in per_fw
                )
                print(f"  {wname:<22}{vals}")
        for key, err in run.get("errors", {}).items():
            print(f"  skipped {key}: {err}")
        for key, note in run.get("notes", {}).items():
            print(f"  note {key}: {note}")


def _cpu_model() -> str:
    """``lscpu``'s model name, else /proc/cpuinfo's, else the platform's."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def select_workloads(suites: str | None, workloads: str | None) -> list[str]:
    """The union of the named suites and workloads (default: the ``base`` suite)."""
    names: list[str] = []
    if not suites and not workloads:
        suites = "base"
    for s in (suites or "").split(","):
        if s:
            if s not in SUITES:
                raise ValueError(f"unknown suite {s!r}; choose from {', '.join(SUITES)}")
            names += [w.name for w in SUITES[s]]
    for name in (workloads or "").split(","):
        if name:
            if name not in WORKLOADS:
                raise ValueError(f"unknown workload {name!r}; choose from {', '.join(WORKLOADS)}")
            names.append(name)
    return list(dict.fromkeys(names))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="few rounds on fewer samples (CI smoke)")
    p.add_argument(
        "--suite",
        help="comma-separated groups: " + ", ".join(f"{k} ({len(v)})" for k, v in SUITES.items()),
    )
    p.add_argument("--workloads", help="comma-separated workloads (added to --suite's)")
    p.add_argument("--list", action="store_true", help="list the suites and workloads, then exit")
    p.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    p.add_argument("--rounds", type=int, default=None, help="timed runs per framework (default 7)")
    p.add_argument("--samples", type=int, default=None, help="samples per run for every workload")
    p.add_argument("--frameworks", default=",".join(FRAMEWORKS))
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory runs")
    p.add_argument(
        "--busy", type=int, default=0, help="processes spinning beside the timed runs (0)"
    )
    p.add_argument("--json", help="write the results there")
    p.add_argument("--_worker", nargs=2, help=argparse.SUPPRESS)
    a = p.parse_args(argv)

    if a._worker:
        mode, payload = a._worker
        fn = {"times": worker_times, "memory": worker_memory, "matmul": worker_matmul}[mode]
        print(json.dumps(fn(json.loads(payload))))
        return 0
    if a.list:
        for name, ws in SUITES.items():
            if name != "all":
                print(f"{name}:")
                for w in ws:
                    print(f"  {w.name:<24}{w.title}")
        return 0
    try:
        workloads = select_workloads(a.suite, a.workloads)
    except ValueError as e:
        p.error(str(e))
    frameworks = [f for f in a.frameworks.split(",") if f]
    for f in frameworks:
        if f not in FRAMEWORKS:
            p.error(f"unknown framework {f!r}; choose from {', '.join(FRAMEWORKS)}")
    if a.busy < 0:
        p.error(f"--busy must be 0 or more, got {a.busy}")
    rounds = a.rounds or (2 if a.quick else 7)
    report: dict[str, Any] = {
        "machine": {
            "cpu": _cpu_model(),
            "cores": os.cpu_count(),
            "python": platform.python_version(),
        },
        "rounds": rounds,
        "busy": a.busy,
        "lr": LR,
        "command": " ".join([os.path.basename(sys.executable), *sys.argv]),
        "runs": {},
    }
    for threads in (int(t) for t in a.threads.split(",")):
        run: dict[str, Any] = {"workloads": {}, "errors": {}}
        mm_args = {"threads": threads, "repeats": 1 if a.quick else 3}
        mm = run_worker("matmul", mm_args, threads, timeout=600)
        if "error" in mm:
            run["errors"]["matmul"] = mm.pop("error")
        run["matmul_gflops"] = mm
        for wname in workloads:
            w = WORKLOADS[wname]
            samples = run_samples(w, a.samples, a.quick)
            args = {"threads": threads, "rounds": rounds, "samples": samples}
            args.update(workload=wname, frameworks=frameworks)
            print(f"[{threads} thr] {wname} ...", file=sys.stderr, flush=True)
            with busy_processes(a.busy):
                raw = run_worker("times", args, threads, timeout=3600)
            if "error" in raw:
                run["errors"][wname] = raw["error"]
            for fw, err in raw.get("errors", {}).items():
                run["errors"][f"{wname}/{fw}"] = err
            for note in raw.get("notes", []):
                run.setdefault("notes", {})[wname] = note
            run["workloads"][wname] = workload_result(w, raw, samples, mm)
            if a.no_memory:
                continue
            for fw in (f for f in frameworks if f in MEMORY_FRAMEWORKS):
                if f"{wname}/{fw}" in run["errors"]:
                    continue
                margs = {"framework": fw, "workload": wname, "threads": threads}
                margs["samples"] = samples
                m = run_worker("memory", margs, threads, timeout=600)
                run.setdefault("memory", {}).setdefault(wname, {})[fw] = m.get(
                    "peak_mib", m.get("error")
                )
        report["runs"][str(threads)] = run
    print_table(report)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(report, f, indent=2)
        print(f"\nwrote {a.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
