"""Cost of one course method call over the kernel work it does (issue 16).

For a ``Linear(256, 256)`` on a 100x256 batch, each course method
(``forward``, ``zero_grad``, ``backward_update_gradient``, ``backward_delta``,
``update_parameters``) is timed against the same work done by direct kernel
calls (``_core.linear``, ``fill``, ``_core.addmm`` and a bias sum,
``_core.matmul``, ``_core.optim_update``), interleaved, median of the rounds; the
difference is the method's overhead (argument checks, Python between the call
and its kernel). On a busy machine the difference of two medians of ~200 us
calls wanders by more than the overhead: the paired column times the method and
its kernels back to back, call by call, and takes the median of the differences;
the python column repeats the difference with the kernels replaced by calls that
return at once (the Python around them alone; least times over the rounds).

    python benches/bench_course_calls.py [--rounds 15] [--threads 1] [--dtype float64]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import diy_nn as dn
import numpy as np
from diy_nn import _core
from timing import per_call

PAIRS = 101  # back-to-back (method, kernels) pairs per round


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


class _NoKernels:
    """Stand-ins for the ``_core`` kernels the cases call, returning at once (a result
    made once, up front): with them in place of ``_core`` in ``diy_nn.linear``,
    ``diy_nn.module`` and here, method minus kernels is the Python around the kernel
    alone, free of the kernel's noise (``zero_grad`` calls numpy's ``fill``, no kernel)."""

    Rule = _core.Rule

    def __init__(self, y: np.ndarray, dx: np.ndarray) -> None:
        self.linear = lambda x, w, b=None: y
        self.matmul = lambda a, b: dx
        self.addmm = lambda out, a, b, alpha=1.0, beta=1.0: None
        self.optim_update = lambda hyper, slots: None


@contextmanager
def no_kernels(stand_in: _NoKernels) -> Iterator[None]:
    """``_core`` replaced by ``stand_in`` where the cases reach it, then put back."""
    holders = (sys.modules["diy_nn.linear"], sys.modules["diy_nn.module"], sys.modules[__name__])
    real = [m._core for m in holders]  # type: ignore[attr-defined]
    try:
        for m in holders:
            m._core = stand_in  # type: ignore[attr-defined]
        yield
    finally:
        for m, core in zip(holders, real, strict=True):
            m._core = core  # type: ignore[attr-defined]


def paired(method: Callable[[], object], kernels: Callable[[], object], calls: int) -> list[float]:
    """Seconds of ``method`` minus seconds of ``kernels``, one pair of calls at a time
    (their order alternates): both see the same moment of a busy machine, so the
    difference keeps the overhead and loses most of the noise of a long kernel."""
    clock, diffs = time.perf_counter, []
    for i in range(calls):
        first, second = (method, kernels) if i % 2 else (kernels, method)
        t0 = clock()
        first()
        t1 = clock()
        second()
        t2 = clock()
        diffs.append((t1 - t0) - (t2 - t1) if first is method else (t2 - t1) - (t1 - t0))
    return diffs


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
        f"median of {a.rounds} interleaved rounds; paired: median over the rounds of the "
        f"median difference of {PAIRS} back-to-back calls"
    )
    print("python: least time over the rounds minus least time, kernels replaced by no-op calls")
    head = f"{'method':<28}{'method us':>11}{'kernels us':>12}{'overhead us':>13}{'paired us':>11}"
    head += f"{'python us':>11}"
    print(head)
    print("-" * len(head))
    the_cases = cases(dtype)
    lin_x = np.ones((100, 256), dtype)
    stand_in = _NoKernels(lin_x, lin_x.copy())
    for name, (method, kernels) in the_cases.items():
        tm, tk, tp, sm, sk = [], [], [], [], []
        for _ in range(a.rounds):
            tm.append(per_call(method, max_calls=1 << 20))
            tk.append(per_call(kernels, max_calls=1 << 20))
            tp.append(statistics.median(paired(method, kernels, PAIRS)))
            with no_kernels(stand_in):
                sm.append(per_call(method))
                sk.append(per_call(kernels))
        m, k = statistics.median(tm) * 1e6, statistics.median(tk) * 1e6
        d, py = statistics.median(tp) * 1e6, (min(sm) - min(sk)) * 1e6
        print(f"{name:<28}{m:>11.2f}{k:>12.2f}{m - k:>13.2f}{d:>11.2f}{py:>11.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
