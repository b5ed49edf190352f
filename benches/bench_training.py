"""End-to-end training benchmark: diy_nn against torch and plain numpy.

Each workload (the report's models, on USPS-shaped random data) is trained for
one epoch of mini-batch SGD — forward, backward and update — in float32, in
three implementations of the same maths (gradients of the *summed* loss, the
same learning rate):

- diy_nn, through its public API (``Optim(net, loss, eps).step(x, y)``);
- torch (``reduction="sum"`` losses, ``torch.optim.SGD``);
- plain numpy: a straightforward explicit-backprop reference written here.

Runs are interleaved (round robin over the frameworks, several rounds) and
each thread count runs in its own subprocess, with the thread variables set
before any import. Peak memory is measured per (framework, workload) in a fresh
subprocess: the resident-set high-water mark (``VmHWM``, reset through
``/proc/self/clear_refs``) minus the resident set just before the run.

    python benches/bench_training.py [--quick] [--threads 1,2] [--rounds 7]
        [--workloads mlp,autoencoder,...] [--json results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

N_SAMPLES = 7291  # the USPS training set
LR = 1e-4
THREAD_VARS = ("RAYON_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
FRAMEWORKS = ("diy_nn", "torch", "numpy")


# --- the workloads: layer lists shared by the three implementations ------------------
# ("linear", in, out) | ("tanh",) | ("sigmoid",) | ("relu",) | ("conv1d", k, cin, cout)
# | ("conv2d", k, cin, cout) | ("maxpool1d", k, s) | ("maxpool2d", k, s) | ("flatten",)


@dataclass(frozen=True)
class Workload:
    name: str
    title: str
    layers: tuple[tuple[Any, ...], ...]
    input_shape: tuple[int, ...]  # one sample, channels last
    loss: str  # "ce" (on logits), "bce", "mae"
    batch: int
    n_classes: int = 10


def _mlp(*sizes: int, act: str = "tanh", last: str | None = None) -> tuple[tuple[Any, ...], ...]:
    layers: list[tuple[Any, ...]] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=False)):
        layers.append(("linear", a, b))
        if i < len(sizes) - 2:
            layers.append((act,))
    if last:
        layers.append((last,))
    return tuple(layers)


WORKLOADS = {
    w.name: w
    for w in (
        Workload(
            "mlp", "MLP 256-128-64-10 TanH, CE, b=100", _mlp(256, 128, 64, 10), (256,), "ce", 100
        ),
        Workload(
            "autoencoder",
            "AE 256-100-10-100-256, BCE, b=10",
            _mlp(256, 100, 10, 100, 256, last="sigmoid"),
            (256,),
            "bce",
            10,
        ),
        Workload(
            "cnn2d",
            "Conv2D(3,1,32)-MaxPool2D-FC, CE, b=100",
            (
                ("conv2d", 3, 1, 32),
                ("maxpool2d", 2, 2),
                ("flatten",),
                ("linear", 1568, 100),
                ("relu",),
                ("linear", 100, 10),
            ),
            (16, 16, 1),
            "ce",
            100,
        ),
        Workload(
            "cnn1d",
            "Conv1D(3,1,32)-MaxPool1D-FC, CE, b=100",
            (
                ("conv1d", 3, 1, 32),
                ("maxpool1d", 2, 2),
                ("flatten",),
                ("linear", 4064, 100),
                ("relu",),
                ("linear", 100, 10),
            ),
            (256, 1),
            "ce",
            100,
        ),
        Workload(
            "ecg",
            "ECG AE 140-32-16-8-16-32-140, MAE, b=32",
            _mlp(140, 32, 16, 8, 16, 32, 140, last="sigmoid"),
            (140,),
            "mae",
            32,
        ),
    )
}


def flops_per_sample(w: Workload) -> float:
    """Multiply-adds x 2 of one sample's forward + backward (no d input for the first layer)."""
    shape = w.input_shape
    total = 0.0
    for i, layer in enumerate(w.layers):
        kind = layer[0]
        passes = 2 if i == 0 else 3  # forward, d weights, d input
        if kind == "linear":
            total += passes * 2 * layer[1] * layer[2]
            shape = (layer[2],)
        elif kind in ("conv1d", "conv2d"):
            k, cin, cout = layer[1:]
            spatial = tuple(n - k + 1 for n in shape[:-1])
            positions = int(np.prod(spatial))
            total += passes * 2 * positions * k ** len(spatial) * cin * cout
            shape = (*spatial, cout)
        elif kind in ("maxpool1d", "maxpool2d"):
            k, s = layer[1:]
            shape = (*((n - k) // s + 1 for n in shape[:-1]), shape[-1])
        elif kind == "flatten":
            shape = (int(np.prod(shape)),)
    return total


def make_data(w: Workload, n: int) -> tuple[np.ndarray, np.ndarray]:
    """USPS-like inputs in [0, 1) (channels last) and targets: class indices or the inputs."""
    rng = np.random.default_rng(0)
    x = rng.random((n, *w.input_shape), dtype=np.float32)
    if w.loss == "ce":
        return x, rng.integers(0, w.n_classes, n).astype(np.int64)
    return x, x.reshape(n, -1).copy()


# --- diy_nn ----------------------------------------------------------------------------


def diy_setup(w: Workload, x: np.ndarray, y: np.ndarray) -> Callable[[], None]:
    import diy_nn as dn

    dn.set_default_dtype(np.float32)
    layers: list[Any] = []
    for layer in w.layers:
        kind, args = layer[0], layer[1:]
        layers.append(
            {
                "linear": lambda a: dn.Linear(*a),
                "tanh": lambda a: dn.TanH(),
                "sigmoid": lambda a: dn.Sigmoid(),
                "relu": lambda a: dn.ReLU(),
                "conv1d": lambda a: dn.Conv1D(*a),
                "conv2d": lambda a: dn.Conv2D(*a),
                "maxpool1d": lambda a: dn.MaxPool1D(*a),
                "maxpool2d": lambda a: dn.MaxPool2D(*a),
                "flatten": lambda a: dn.Flatten(),
            }[kind](args)
        )
    net = dn.Sequential(*layers)
    loss = {"ce": dn.CELogSoftMax, "bce": dn.BCELoss, "mae": dn.MAELoss}[w.loss]()
    opt = dn.Optim(net, loss, eps=LR)
    b = w.batch

    def epoch() -> None:
        for i in range(0, len(x), b):
            opt.step(x[i : i + b], y[i : i + b])

    return epoch


# --- torch -----------------------------------------------------------------------------


def torch_setup(w: Workload, x: np.ndarray, y: np.ndarray) -> Callable[[], None]:
    import torch
    from torch import nn

    torch.manual_seed(0)
    layers: list[nn.Module] = []
    for layer in w.layers:
        kind, args = layer[0], layer[1:]
        layers.append(
            {
                "linear": lambda a: nn.Linear(*a),
                "tanh": lambda a: nn.Tanh(),
                "sigmoid": lambda a: nn.Sigmoid(),
                "relu": lambda a: nn.ReLU(),
                "conv1d": lambda a: nn.Conv1d(a[1], a[2], a[0]),
                "conv2d": lambda a: nn.Conv2d(a[1], a[2], a[0]),
                "maxpool1d": lambda a: nn.MaxPool1d(*a),
                "maxpool2d": lambda a: nn.MaxPool2d(*a),
                "flatten": lambda a: nn.Flatten(),
            }[kind](args)
        )
    model = nn.Sequential(*layers)
    loss = {
        "ce": nn.CrossEntropyLoss(reduction="sum"),
        "bce": nn.BCELoss(reduction="sum"),
        "mae": nn.L1Loss(reduction="sum"),
    }[w.loss]
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    # torch is channels first: (N, C, L) and (N, C, H, W).
    tx = torch.from_numpy(np.ascontiguousarray(np.moveaxis(x, -1, 1)) if x.ndim > 2 else x)
    ty = torch.from_numpy(y)
    b = w.batch

    def epoch() -> None:
        for i in range(0, len(tx), b):
            opt.zero_grad()
            loss(model(tx[i : i + b]), ty[i : i + b]).backward()
            opt.step()

    return epoch


# --- plain numpy: the straightforward reference ----------------------------------------


class NumpyNet:
    """Explicit forward/backward in numpy, channels last, float32, stride-1 convs."""

    def __init__(self, w: Workload) -> None:
        rng = np.random.default_rng(0)
        self.layers: list[dict[str, Any]] = []
        for layer in w.layers:
            kind, args = layer[0], layer[1:]
            entry: dict[str, Any] = {"kind": kind, "args": args}
            if kind == "linear" or kind.startswith("conv"):
                if kind == "linear":
                    shape, fan_in = (args[0], args[1]), args[0]
                else:
                    k, cin, cout = args
                    nd = 1 if kind == "conv1d" else 2
                    shape, fan_in = (k,) * nd + (cin, cout), k**nd * cin
                bound = 1 / np.sqrt(fan_in)
                entry["W"] = rng.uniform(-bound, bound, shape).astype(np.float32)
                entry["b"] = rng.uniform(-bound, bound, shape[-1]).astype(np.float32)
            self.layers.append(entry)

    def forward(self, x: np.ndarray) -> np.ndarray:
        for layer in self.layers:
            layer["x"] = x
            kind = layer["kind"]
            if kind == "linear":
                x = x @ layer["W"] + layer["b"]
            elif kind == "tanh":
                x = np.tanh(x)
                layer["y"] = x
            elif kind == "sigmoid":
                x = 1 / (1 + np.exp(-x))
                layer["y"] = x
            elif kind == "relu":
                x = np.maximum(x, 0)
            elif kind == "conv1d":
                W = layer["W"]
                k = W.shape[0]
                lo = x.shape[1] - k + 1
                out = np.empty((x.shape[0], lo, W.shape[-1]), np.float32)
                out[...] = layer["b"]
                for i in range(k):
                    out += x[:, i : i + lo] @ W[i]
                x = out
            elif kind == "conv2d":
                W = layer["W"]
                k = W.shape[0]
                ho, wo = x.shape[1] - k + 1, x.shape[2] - k + 1
                out = np.empty((x.shape[0], ho, wo, W.shape[-1]), np.float32)
                out[...] = layer["b"]
                for i in range(k):
                    for j in range(k):
                        out += x[:, i : i + ho, j : j + wo] @ W[i, j]
                x = out
            elif kind == "maxpool1d":  # k == stride == 2
                n, length, c = x.shape
                x = x[:, : length // 2 * 2].reshape(n, length // 2, 2, c).max(axis=2)
            elif kind == "maxpool2d":
                n, h, w, c = x.shape
                x = x.reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))
            elif kind == "flatten":
                x = x.reshape(x.shape[0], -1)
            layer["out"] = x
        return x

    def backward(self, delta: np.ndarray) -> None:
        for idx in range(len(self.layers) - 1, -1, -1):
            layer = self.layers[idx]
            kind, x = layer["kind"], layer["x"]
            first = idx == 0
            if kind == "linear":
                layer["gW"] = x.T @ delta
                layer["gb"] = delta.sum(axis=0)
                if not first:
                    delta = delta @ layer["W"].T
            elif kind == "tanh":
                delta = delta * (1 - layer["y"] ** 2)
            elif kind == "sigmoid":
                delta = delta * layer["y"] * (1 - layer["y"])
            elif kind == "relu":
                delta = delta * (x > 0)
            elif kind == "conv1d":
                W = layer["W"]
                k, cin, cout = W.shape
                lo = delta.shape[1]
                d2 = delta.reshape(-1, cout)
                layer["gW"] = np.stack([x[:, i : i + lo].reshape(-1, cin).T @ d2 for i in range(k)])
                layer["gb"] = d2.sum(axis=0)
                if not first:
                    dx = np.zeros_like(x)
                    for i in range(k):
                        dx[:, i : i + lo] += delta @ W[i].T
                    delta = dx
            elif kind == "conv2d":
                W = layer["W"]
                k, _, cin, cout = W.shape
                ho, wo = delta.shape[1:3]
                d2 = delta.reshape(-1, cout)
                gW = np.empty_like(W)
                for i in range(k):
                    for j in range(k):
                        gW[i, j] = x[:, i : i + ho, j : j + wo].reshape(-1, cin).T @ d2
                layer["gW"] = gW
                layer["gb"] = d2.sum(axis=0)
                if not first:
                    dx = np.zeros_like(x)
                    for i in range(k):
                        for j in range(k):
                            dx[:, i : i + ho, j : j + wo] += delta @ W[i, j].T
                    delta = dx
            elif kind == "maxpool1d":
                n, length, c = x.shape
                xs = x[:, : length // 2 * 2].reshape(n, length // 2, 2, c)
                mask = xs == layer["out"][:, :, None]
                dx = np.zeros_like(x)
                dx[:, : length // 2 * 2] = (mask * delta[:, :, None]).reshape(n, -1, c)
                delta = dx
            elif kind == "maxpool2d":
                n, h, w, c = x.shape
                xs = x.reshape(n, h // 2, 2, w // 2, 2, c)
                mask = xs == layer["out"][:, :, None, :, None]
                delta = (mask * delta[:, :, None, :, None]).reshape(x.shape)
            elif kind == "flatten":
                delta = delta.reshape(x.shape)

    def update(self, lr: float) -> None:
        for layer in self.layers:
            if "W" in layer:
                layer["W"] -= lr * layer["gW"]
                layer["b"] -= lr * layer["gb"]


def numpy_loss_grad(kind: str, y: np.ndarray, yhat: np.ndarray) -> tuple[float, np.ndarray]:
    """The summed loss and its gradient with respect to ``yhat``."""
    if kind == "ce":
        z = yhat - yhat.max(axis=1, keepdims=True)
        e = np.exp(z)
        s = e.sum(axis=1, keepdims=True)
        rows = np.arange(len(y))
        cost = float(np.sum(np.log(s[:, 0]) - z[rows, y]))
        grad = e / s
        grad[rows, y] -= 1
        return cost, grad
    if kind == "bce":
        p = np.clip(yhat, 1e-7, 1 - 1e-7)
        cost = float(-np.sum(y * np.log(p) + (1 - y) * np.log(1 - p)))
        return cost, (p - y) / (p * (1 - p))
    diff = yhat - y
    return float(np.abs(diff).sum()), np.sign(diff).astype(np.float32)


def numpy_setup(w: Workload, x: np.ndarray, y: np.ndarray) -> Callable[[], None]:
    net = NumpyNet(w)
    b = w.batch

    def epoch() -> None:
        for i in range(0, len(x), b):
            yhat = net.forward(x[i : i + b])
            _, grad = numpy_loss_grad(w.loss, y[i : i + b], yhat)
            net.backward(grad)
            net.update(LR)

    return epoch


SETUPS = {"diy_nn": diy_setup, "torch": torch_setup, "numpy": numpy_setup}


# --- workers (subprocesses) ------------------------------------------------------------


def _set_threads(n: int, frameworks: tuple[str, ...]) -> None:
    if "torch" in frameworks:
        import torch

        torch.set_num_threads(n)
    if "diy_nn" in frameworks:
        import diy_nn

        diy_nn.set_num_threads(n)


def matmul_gflops(threads: int) -> dict[str, float]:
    """GFLOP/s of a 1024³ float32 product: numpy (BLAS) and diy_nn."""
    rng = np.random.default_rng(1)
    a = rng.random((1024, 1024), dtype=np.float32)
    b = rng.random((1024, 1024), dtype=np.float32)
    out: dict[str, float] = {}
    products: dict[str, Callable[[], object]] = {"numpy": lambda: a @ b}
    try:
        from diy_nn import _core

        products["diy_nn"] = lambda: _core.matmul(a, b)
    except ImportError:
        pass
    for name, f in products.items():
        f()
        best = min(_timed(f) for _ in range(3))
        out[name] = 2 * 1024**3 / best / 1e9
    return out


# After a call, OpenBLAS's worker threads spin for about 2^28 cycles (tens of ms)
# and OpenMP's for a while too: a run that starts in that window shares its
# cores with them (diy_nn's 2-thread matmul measured 240 instead of 450 GFLOP/s
# right after a numpy product). Each timed run starts after this pause, so no
# framework pays for the previous one's idle threads.
SETTLE_S = 0.2


def _timed(f: Callable[[], object]) -> float:
    time.sleep(SETTLE_S)
    t0 = time.perf_counter()
    f()
    return time.perf_counter() - t0


def worker_times(args: dict[str, Any]) -> dict[str, Any]:
    threads, rounds, n = args["threads"], args["rounds"], args["samples"]
    frameworks = tuple(args["frameworks"])
    _set_threads(threads, frameworks)
    result: dict[str, Any] = {"threads": threads, "workloads": {}, "errors": {}}
    epochs: dict[tuple[str, str], Callable[[], None]] = {}
    for wname in args["workloads"]:
        w = WORKLOADS[wname]
        x, y = make_data(w, n)
        for fw in frameworks:
            try:
                epochs[wname, fw] = SETUPS[fw](w, x, y)
                epochs[wname, fw]()  # warm-up epoch
            except Exception as e:  # a module not landed yet, a missing package
                epochs.pop((wname, fw), None)
                result["errors"][f"{wname}/{fw}"] = f"{type(e).__name__}: {e}"
    times: dict[tuple[str, str], list[float]] = {key: [] for key in epochs}
    for _ in range(rounds):
        for key, epoch in epochs.items():  # interleaved: each round visits every run
            times[key].append(_timed(epoch))
    for (wname, fw), ts in times.items():
        result["workloads"].setdefault(wname, {})[fw] = ts
    result["matmul_gflops"] = matmul_gflops(threads)
    return result


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def worker_memory(args: dict[str, Any]) -> dict[str, Any]:
    """Peak resident-set increase (MiB) of building the model and one epoch."""
    fw, w = args["framework"], WORKLOADS[args["workload"]]
    if fw == "torch":
        import torch  # noqa: F401
    elif fw == "diy_nn":
        import diy_nn  # noqa: F401
    _set_threads(args["threads"], (fw,))
    x, y = make_data(w, args["samples"])
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    before = _status_kib("VmRSS")
    epoch = SETUPS[fw](w, x, y)
    epoch()
    peak = _status_kib("VmHWM")
    return {"peak_mib": (peak - before) / 1024}


def run_worker(mode: str, args: dict[str, Any], threads: int, timeout: float) -> dict[str, Any]:
    env = dict(os.environ)
    for var in THREAD_VARS:
        env[var] = str(threads)
    proc = subprocess.run(
        [sys.executable, __file__, "--_worker", mode, json.dumps(args)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
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


def _fmt_ratio(a: dict[str, Any] | None, b: dict[str, Any] | None) -> str:
    if not a or not b:
        return "-"
    return f"{a['median_s'] / b['median_s']:.3f}"


def print_table(report: dict[str, Any]) -> None:
    for tkey, run in report["runs"].items():
        gf = run.get("matmul_gflops", {})
        print(
            f"\n== {tkey} thread(s): median epoch time (spread), float32; "
            f"1024^3 matmul: numpy {gf.get('numpy', 0):.1f} GFLOP/s, "
            f"diy_nn {gf.get('diy_nn', 0):.1f} GFLOP/s"
        )
        head = (
            f"{'workload':<12}{'diy_nn ms':>16}{'torch ms':>16}{'numpy ms':>16}"
            f"{'diy/torch':>11}{'diy/numpy':>11}{'GFLOP/s':>9}"
        )
        print(head)
        print("-" * len(head))
        for wname, res in run["workloads"].items():
            cells = []
            for fw in FRAMEWORKS:
                s = res.get(fw)
                cells.append(
                    f"{s['median_s'] * 1e3:9.1f} ({s['spread'] * 100:2.0f}%)" if s else f"{'-':>15}"
                )
            diy, torch_, numpy_ = (res.get(fw) for fw in FRAMEWORKS)
            gflops = f"{res['diy_nn_gflops']:.1f}" if "diy_nn_gflops" in res else "-"
            print(
                f"{wname:<12}{cells[0]:>16}{cells[1]:>16}{cells[2]:>16}"
                f"{_fmt_ratio(diy, torch_):>11}{_fmt_ratio(diy, numpy_):>11}{gflops:>9}"
            )
        mem = run.get("memory")
        if mem:
            print("peak memory (MiB over the RSS before the run):")
            for wname, per_fw in mem.items():
                vals = "  ".join(
                    f"{fw} {per_fw[fw]:.1f}" if isinstance(per_fw.get(fw), float) else f"{fw} -"
                    for fw in FRAMEWORKS
                )
                print(f"  {wname:<12}{vals}")
        for key, err in run.get("errors", {}).items():
            print(f"  skipped {key}: {err}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="few rounds on fewer samples (CI smoke)")
    p.add_argument("--workloads", default=",".join(WORKLOADS), help="comma-separated subset")
    p.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    p.add_argument("--rounds", type=int, default=None, help="timed epochs per run (default 7)")
    p.add_argument("--samples", type=int, default=None, help=f"default {N_SAMPLES}")
    p.add_argument("--frameworks", default=",".join(FRAMEWORKS))
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory runs")
    p.add_argument("--json", help="write the results there")
    p.add_argument("--_worker", nargs=2, help=argparse.SUPPRESS)
    a = p.parse_args(argv)

    if a._worker:
        mode, payload = a._worker
        fn = worker_times if mode == "times" else worker_memory
        print(json.dumps(fn(json.loads(payload))))
        return 0

    workloads = [w for w in a.workloads.split(",") if w]
    for w in workloads:
        if w not in WORKLOADS:
            p.error(f"unknown workload {w!r}; choose from {', '.join(WORKLOADS)}")
    frameworks = [f for f in a.frameworks.split(",") if f]
    rounds = a.rounds or (2 if a.quick else 7)
    samples = a.samples or (1000 if a.quick else N_SAMPLES)
    report: dict[str, Any] = {
        "machine": {
            "cpu": _cpu_model(),
            "cores": os.cpu_count(),
            "python": platform.python_version(),
        },
        "samples": samples,
        "rounds": rounds,
        "lr": LR,
        "command": " ".join([os.path.basename(sys.executable), *sys.argv]),
        "runs": {},
    }
    for threads in (int(t) for t in a.threads.split(",")):
        args = {
            "threads": threads,
            "rounds": rounds,
            "samples": samples,
            "workloads": workloads,
            "frameworks": frameworks,
        }
        raw = run_worker("times", args, threads, timeout=3600)
        run: dict[str, Any] = {"workloads": {}, "errors": dict(raw.get("errors", {}))}
        if "error" in raw:
            run["errors"]["worker"] = raw["error"]
        run["matmul_gflops"] = raw.get("matmul_gflops", {})
        for wname in workloads:
            res = {fw: summarise(ts) for fw, ts in raw.get("workloads", {}).get(wname, {}).items()}
            if "diy_nn" in res:
                flops = flops_per_sample(WORKLOADS[wname]) * samples
                res["diy_nn_gflops"] = flops / res["diy_nn"]["median_s"] / 1e9
            run["workloads"][wname] = res
        if not a.no_memory:
            run["memory"] = {}
            for wname in workloads:
                for fw in frameworks:
                    margs = {"framework": fw, "workload": wname, "threads": threads}
                    margs["samples"] = samples
                    m = run_worker("memory", margs, threads, timeout=600)
                    run["memory"].setdefault(wname, {})[fw] = m.get("peak_mib", m.get("error"))
        report["runs"][str(threads)] = run
    print_table(report)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(report, f, indent=2)
        print(f"\nwrote {a.json}")
    return 0


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


if __name__ == "__main__":
    sys.exit(main())
