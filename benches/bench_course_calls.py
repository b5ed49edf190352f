"""Cost of one course method call over the kernel work it does (issue 16).

For a ``Linear(256, 256)`` on a 100x256 batch, each course method
(``forward``, ``zero_grad``, ``backward_update_gradient``, ``backward_delta``,
``update_parameters``) is timed against the same work done by direct kernel
calls (``_core.linear``, ``fill``, ``_core.addmm`` and a bias sum,
``_core.matmul``, ``_core.optim_update``), interleaved, median of the rounds; the
difference is the method's overhead (argument checks, Python between the call
and its kernel).

    python benches/bench_course_calls.py [--rounds 15] [--threads 1] [--dtype float64]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable

import diy_nn as dn
import numpy as np
from diy_nn import _core
from timing import per_call


def cases(dtype: type[np.floating]) -> dict[str, tuple[Callable[[], object], Callable[[], object]]]:
    """name -> (the course method call, the same work through kernel calls alone)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((100, 256)).astype(dtype)
    d = rng.standard_normal((100, 256)).astype(dtype)
    lin = dn.Linear(256, 256, dtype=dtype)
    W, b = lin._parameters, lin._bias
    gW, gb = np.zeros_like(W), np.zeros_like(b)
    lin.zero_grad()

    def grads() -> None:
        _core.addmm(gW, x.T, d)
        gb[...] += d.sum(axis=0)

    sgd = {"rule": _core.Rule.Sgd, "lr": 1e-12, "mu": 0.0, "wd": 0.0, "b1": 0.0, "b2": 0.0,
           "eps": 0.0, "t": 1.0}  # fmt: skip

    def zero() -> None:
        gW.fill(0)
        gb.fill(0)

    return {
        "forward": (lambda: lin.forward(x), lambda: _core.linear(x, W, b)),
        "zero_grad": (lin.zero_grad, zero),
        "backward_update_gradient": (lambda: lin.backward_update_gradient(x, d), grads),
        "backward_delta": (lambda: lin.backward_delta(x, d), lambda: _core.matmul(d, W.T)),
        # a tiny step keeps the parameters finite over many calls
        "update_parameters": (
            lambda: lin.update_parameters(1e-12),
            lambda: _core.optim_update(sgd, [[W, gW], [b, gb]]),
        ),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    a = p.parse_args(argv)
    dn.set_num_threads(a.threads)
    dtype = np.dtype(a.dtype).type
    print(
        f"Linear(256, 256) on a 100x256 batch, {a.dtype}, {a.threads} thread(s), "
        f"median of {a.rounds} interleaved rounds"
    )
    head = f"{'method':<28}{'method us':>11}{'kernels us':>12}{'overhead us':>13}"
    print(head)
    print("-" * len(head))
    for name, (method, kernels) in cases(dtype).items():
        tm, tk = [], []
        for _ in range(a.rounds):
            tm.append(per_call(method, max_calls=1 << 20))
            tk.append(per_call(kernels, max_calls=1 << 20))
        m, k = statistics.median(tm) * 1e6, statistics.median(tk) * 1e6
        print(f"{name:<28}{m:>11.2f}{k:>12.2f}{m - k:>13.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
