"""Times diy_nn's kernels against torch (same thread count) and numpy.

Each case runs forward + backward, float32 (``--dtype float64``), on the shapes of
issue 3 and on the convolution layers of the training benchmark's 28x28 and
CIFAR-sized nets (issues 16 and 18; a net's first layer without the gradient of
its input, as in training) and its Conv1D inference shape (forward only). The
implementations are timed in interleaved rounds (diy_nn, torch, numpy, diy_nn,
...) so that the load of the machine hits them alike; the table shows the
median time per call and the ratios diy_nn / torch and diy_nn / numpy
(below 1: diy_nn is faster).

    python benches/bench_kernels.py [--rounds 15] [--threads N] [--json out.json] [--only conv]
        [--dtype float64]

The matmul case always runs on 2 threads (numpy's BLAS limited by threadpoolctl).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Callable

import numpy as np
from diy_nn import _core as core
from timing import per_call

try:
    import torch
    import torch.nn.functional as F
except ImportError:  # the table then has no torch column
    torch = None

F32: type[np.floating] = np.float32  # the cases' dtype (``--dtype``), set before they are built


def softmax_case(shape: tuple[int, int], log: bool):
    rng = np.random.default_rng(0)
    x, d = rng.standard_normal(shape).astype(F32), rng.standard_normal(shape).astype(F32)
    fwd, bwd = (
        (core.log_softmax, core.log_softmax_backward)
        if log
        else (core.softmax, core.softmax_backward)
    )

    def diy():
        bwd(fwd(x), d)

    def numpy():
        z = x - x.max(axis=1, keepdims=True)
        e = np.exp(z)
        s = e.sum(axis=1, keepdims=True)
        if log:
            y = z - np.log(s)
            return d - np.exp(y) * d.sum(axis=1, keepdims=True)
        y = e / s
        return y * (d - (y * d).sum(axis=1, keepdims=True))

    impls = {"diy_nn": diy, "numpy": numpy}
    if torch is not None:
        xt, dt = torch.tensor(x, requires_grad=True), torch.tensor(d)
        tf = F.log_softmax if log else F.softmax

        def tor():
            tf(xt, -1).backward(dt)

        impls["torch"] = tor
    return impls


def cross_entropy_case(shape: tuple[int, int]):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(F32)
    t = rng.integers(0, shape[1], shape[0])

    def diy():
        core.cross_entropy(x, t)
        core.cross_entropy_backward(x, t)

    impls = {"diy_nn": diy}
    if torch is not None:
        xt, tt = torch.tensor(x, requires_grad=True), torch.tensor(t)

        def tor():
            F.cross_entropy(xt, tt, reduction="sum").backward()

        impls["torch"] = tor
    return impls


def conv1d_case(n: int, length: int, cin: int, cout: int, k: int, stride: int):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, length, cin)).astype(F32)
    w = rng.standard_normal((k, cin, cout)).astype(F32)
    b = rng.standard_normal(cout).astype(F32)
    lout = (length - k) // stride + 1
    d = rng.standard_normal((n, lout, cout)).astype(F32)
    gw, gb = np.zeros_like(w), np.zeros_like(b)

    def diy():
        core.conv1d(x, w, b, stride)
        core.conv1d_backward_input(d, w, length, stride)
        core.conv1d_backward_weight(x, d, gw, gb, stride)

    impls = {"diy_nn": diy}
    if torch is not None:
        xt = torch.tensor(x.transpose(0, 2, 1).copy(), requires_grad=True)
        wt = torch.tensor(w.transpose(2, 1, 0).copy(), requires_grad=True)
        bt = torch.tensor(b, requires_grad=True)
        dt = torch.tensor(d.transpose(0, 2, 1).copy())

        def tor():
            F.conv1d(xt, wt, bt, stride=stride).backward(dt)

        impls["torch"] = tor
    return impls


def conv2d_pool_case(n: int, hw: int, cin: int, cout: int, k: int, pool: int):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, hw, hw, cin)).astype(F32)
    w = rng.standard_normal((k, k, cin, cout)).astype(F32)
    b = rng.standard_normal(cout).astype(F32)
    hc = hw - k + 1
    hp = (hc - pool) // pool + 1
    d = rng.standard_normal((n, hp, hp, cout)).astype(F32)
    gw, gb = np.zeros_like(w), np.zeros_like(b)

    def diy():
        y = core.conv2d(x, w, b)
        _, arg = core.max_pool2d(y, pool, pool)
        dy = core.max_pool2d_backward(d, arg, (hc, hc))
        core.conv2d_backward_input(dy, w, (hw, hw))
        core.conv2d_backward_weight(x, dy, gw, gb)

    impls = {"diy_nn": diy}
    if torch is not None:
        xt = torch.tensor(x.transpose(0, 3, 1, 2).copy(), requires_grad=True)
        wt = torch.tensor(w.transpose(3, 2, 0, 1).copy(), requires_grad=True)
        bt = torch.tensor(b, requires_grad=True)
        dt = torch.tensor(d.transpose(0, 3, 1, 2).copy())

        def tor():
            F.max_pool2d(F.conv2d(xt, wt, bt), pool, pool).backward(dt)

        impls["torch"] = tor
    return impls


def conv2d_case(n: int, hw: int, cin: int, cout: int, k: int, stride: int, pad: int, first: bool):
    """One conv layer of a training step: forward, d weights and (unless ``first``) d input."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, hw, hw, cin)).astype(F32)
    w = rng.standard_normal((k, k, cin, cout)).astype(F32)
    b = rng.standard_normal(cout).astype(F32)
    ho = (hw + 2 * pad - k) // stride + 1
    d = rng.standard_normal((n, ho, ho, cout)).astype(F32)
    gw, gb = np.zeros_like(w), np.zeros_like(b)

    def diy():
        core.conv2d(x, w, b, stride, pad)
        if not first:
            core.conv2d_backward_input(d, w, (hw, hw), stride, pad)
        core.conv2d_backward_weight(x, d, gw, gb, stride, pad)

    impls = {"diy_nn": diy}
    if torch is not None:
        xt = torch.tensor(x.transpose(0, 3, 1, 2).copy(), requires_grad=not first)
        wt = torch.tensor(w.transpose(3, 2, 0, 1).copy(), requires_grad=True)
        bt = torch.tensor(b, requires_grad=True)
        dt = torch.tensor(d.transpose(0, 3, 1, 2).copy())

        def tor():
            F.conv2d(xt, wt, bt, stride=stride, padding=pad).backward(dt)

        impls["torch"] = tor
    return impls


def conv1d_forward_case(n: int, length: int, cin: int, cout: int, k: int):
    """A Conv1D forward alone (inference)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, length, cin)).astype(F32)
    w = rng.standard_normal((k, cin, cout)).astype(F32)
    b = rng.standard_normal(cout).astype(F32)
    impls = {"diy_nn": lambda: core.conv1d(x, w, b)}
    if torch is not None:
        xt = torch.tensor(x.transpose(0, 2, 1).copy())
        wt, bt = torch.tensor(w.transpose(2, 1, 0).copy()), torch.tensor(b)

        def tor():
            with torch.inference_mode():
                F.conv1d(xt, wt, bt)

        impls["torch"] = tor
    return impls


def _net_convs() -> dict[str, tuple[Callable[[], dict], str]]:
    """The conv layers of the training benchmark's nets: (n, hw, cin, cout, k, stride, pad)."""
    shapes = [
        (64, 28, 1, 16, 3, 1, 1),  # cnn28
        (64, 14, 16, 32, 3, 1, 1),
        (64, 32, 3, 32, 3, 1, 1),  # cifar3 (and its avg-pool / pool-first variants)
        (64, 16, 32, 64, 3, 1, 1),
        (64, 32, 3, 32, 5, 1, 2),  # cifar5
        (64, 16, 32, 64, 5, 1, 2),
        (64, 32, 3, 32, 7, 1, 2),  # cifar7
        (64, 15, 32, 64, 7, 1, 2),
        (64, 32, 3, 32, 3, 2, 1),  # cifar3_s2
        (64, 16, 32, 64, 3, 2, 1),
        (64, 32, 3, 17, 3, 1, 1),  # cifar3_odd
        (64, 16, 17, 33, 3, 1, 1),
    ]
    cases: dict[str, tuple[Callable[[], dict], str]] = {}
    for n, hw, cin, cout, k, s, p in shapes:
        first = cin in (1, 3)
        name = f"conv2d ({n},{hw},{hw},{cin})->{cout} k{k} s{s} p{p}" + (" first" if first else "")
        cases[name] = (
            lambda a=(n, hw, cin, cout, k, s, p, first): conv2d_case(*a),
            "<= 0.8",
        )
    cases["conv1d forward (32,1000,8)->16 k9"] = (
        lambda: conv1d_forward_case(32, 1000, 8, 16, 9),
        "<= 1",
    )
    return cases


def matmul_case(size: int):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size)).astype(F32)
    b = rng.standard_normal((size, size)).astype(F32)
    impls = {"diy_nn": lambda: core.matmul(a, b), "numpy": lambda: a @ b}
    if torch is not None:
        at, bt = torch.tensor(a), torch.tensor(b)
        impls["torch"] = lambda: at @ bt
    return impls


CASES: dict[str, tuple[Callable[[], dict], str]] = {
    "conv1d (20,50,16)->33 k3 s2": (lambda: conv1d_case(20, 50, 16, 33, 3, 2), "<= 0.25"),
    "conv2d (100,16,16,1)->32 k3 + maxpool2": (
        lambda: conv2d_pool_case(100, 16, 1, 32, 3, 2),
        "<= 0.3",
    ),
    "softmax (1000,10)": (lambda: softmax_case((1000, 10), log=False), "<= 0.1"),
    "log_softmax (256,1000)": (lambda: softmax_case((256, 1000), log=True), "<= 0.5"),
    "cross_entropy (256,1000)": (lambda: cross_entropy_case((256, 1000)), ""),
    **_net_convs(),
    "matmul 1024^3 (2 threads)": (lambda: matmul_case(1024), "numpy/diy >= 0.8"),
}


def run(rounds: int, only: str | None) -> list[dict]:
    threads = core.get_num_threads()
    if torch is not None:
        torch.set_num_threads(threads)
    rows = []
    for name, (make, target) in CASES.items():
        if only and only not in name:
            continue
        impls = make()
        limits = None
        if name.startswith("matmul"):
            core.set_num_threads(2)
            if torch is not None:
                torch.set_num_threads(2)
            try:
                from threadpoolctl import threadpool_limits

                limits = threadpool_limits(2)
            except ImportError:
                pass
        times: dict[str, list[float]] = {k: [] for k in impls}
        try:
            for _ in range(rounds):
                for key, f in impls.items():
                    times[key].append(per_call(f))
        finally:
            if limits is not None:
                limits.unregister()
            core.set_num_threads(threads)
            if torch is not None:
                torch.set_num_threads(threads)
        med = {k: statistics.median(v) for k, v in times.items()}
        row = {"case": name, "target": target, "median_s": med}
        for other in ("torch", "numpy"):
            if other in med:
                row[f"diy/{other}"] = med["diy_nn"] / med[other]
        rows.append(row)
        print_row(row)
    return rows


def print_row(row: dict) -> None:
    med = row["median_s"]
    cols = [f"{row['case']:<44}"]
    for k in ("diy_nn", "torch", "numpy"):
        cols.append(f"{med[k] * 1e6:>10.1f}" if k in med else f"{'-':>10}")
    for k in ("diy/torch", "diy/numpy"):
        cols.append(f"{row[k]:>10.3f}" if k in row else f"{'-':>10}")
    cols.append(f"  {row['target']}")
    print(" ".join(cols), flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rounds", type=int, default=15, help="interleaved rounds (default 15)")
    p.add_argument("--json", help="also write the results to this JSON file")
    p.add_argument("--threads", type=int, help="threads for diy_nn and torch (default: diy_nn's)")
    p.add_argument("--only", help="run the cases whose name contains this text")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    args = p.parse_args(argv)
    global F32
    F32 = np.dtype(args.dtype).type
    if args.threads:
        core.set_num_threads(args.threads)
    print(
        f"diy_nn threads: {core.get_num_threads()}, torch: "
        f"{torch.__version__ if torch is not None else 'absent'}, numpy {np.__version__}; "
        f"median of {args.rounds} interleaved rounds, {args.dtype}, forward + backward"
    )
    head = ["case", "diy_nn us", "torch us", "numpy us", "diy/torch", "diy/numpy", "  target"]
    print(f"{head[0]:<44} " + " ".join(f"{h:>10}" for h in head[1:-1]) + head[-1])
    rows = run(args.rounds, args.only)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {"threads": core.get_num_threads(), "dtype": args.dtype, "rows": rows}, f, indent=2
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
