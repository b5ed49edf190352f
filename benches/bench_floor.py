"""How far each framework is from the floor its products set, on the dense workloads.

A dense training step (forward, d loss / d parameters, update) multiplies matrices
three times per layer (two for the first layer, whose d loss / d input is not
needed). No implementation can run the step faster than those products alone at
the fastest product this machine has: this script times each of them best-of
(numpy's BLAS and diy_nn's ``gemm``-crate product, the faster of the two per
product, the fixed cost of a Python call taken off), sums them over one run of
``--samples`` samples, and sets that floor beside each framework's best time for
the same run (diy_nn through ``Optim.step``, torch eager, jax.jit of the whole
step; ``training_frameworks.py`` and ``training_jax.py``, as in
``bench_training.py``).

Best-of times, not medians: on a shared machine the median moves with the other
tenants, and the floor is about what the core can do. The last two columns set
diy_nn's time per step beyond the products beside what diy_nn / best-peer <= 0.5
would leave for it: the ratio is out of reach when that is below zero (the floor
alone is over half the best peer's time), and nearly so when what it leaves per step
for everything else is a few microseconds.

    python benches/bench_floor.py [--workloads mlp,mlp_f64,autoencoder,ecg]
        [--threads 1] [--samples 640] [--seconds 2]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
from collections.abc import Callable
from typing import Any


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workloads", default="mlp,mlp_f64,autoencoder,ecg")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--samples", type=int, default=640)
    p.add_argument("--seconds", type=float, default=2.0, help="per timing (best of its runs)")
    return p.parse_args()


ARGS = parse()
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "RAYON_NUM_THREADS"):
    os.environ[var] = str(ARGS.threads)  # before numpy, torch or jax start their pools

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import training_workloads as tw  # noqa: E402
from diy_nn import _core  # noqa: E402
from training_frameworks import diy_setup, torch_setup  # noqa: E402


def best(f: Callable[[], Any], seconds: float) -> float:
    """The fastest of the calls of ``f`` in ``seconds`` (after one warm-up call)."""
    f()
    fastest, start = float("inf"), time.perf_counter()
    while time.perf_counter() - start < seconds:
        t = time.perf_counter()
        f()
        fastest = min(fastest, time.perf_counter() - t)
    return fastest


def product_shapes(w: tw.Workload, n: int) -> list[tuple[int, int, int]]:
    """``(m, k, q)`` of each product of one training step of batch ``n``."""
    widths = [(spec[1], spec[2]) for spec in w.layers if spec[0] == "linear"]
    if len(widths) != sum(1 for spec in w.layers if spec[0] not in ("tanh", "sigmoid", "relu")):
        raise SystemExit(f"{w.name}: not a dense chain (only Linear and activations are timed)")
    shapes = []
    for i, (a, b) in enumerate(widths):
        shapes += [(n, a, b), (a, n, b)] + ([(n, b, a)] if i else [])  # Y = XW, dW, dX
    return shapes


def floor_s(w: tw.Workload, samples: int, seconds: float) -> float:
    """Seconds of the products of one run over ``samples``, each at its fastest."""
    dt, rng = np.dtype(w.dtype), np.random.default_rng(0)
    one = np.ones((1, 1), dt)
    call = {"numpy": lambda a, b: a @ b, "diy_nn": _core.matmul}
    fixed = {lib: best(lambda f=f: f(one, one), seconds / 4) for lib, f in call.items()}
    batches = [w.batch] * (samples // w.batch) + ([samples % w.batch] if samples % w.batch else [])
    total = 0.0
    for n in sorted(set(batches)):
        for m, k, q in product_shapes(w, n):
            ab = rng.random((m, k)).astype(dt), rng.random((k, q)).astype(dt)
            each = [
                best(lambda f=f, ab=ab: f(*ab), seconds / 8) - fixed[lib] for lib, f in call.items()
            ]
            total += max(min(each), 0.0) * batches.count(n)
    return total


def main() -> None:
    setups: dict[str, Any] = {"diy_nn": diy_setup, "torch": torch_setup}
    if importlib.util.find_spec("jax") is None:  # training_jax imports it only when called
        print("jax skipped: not installed (pip install -e '.[bench]')")
    else:
        import training_jax

        training_jax.configure(ARGS.threads)
        setups["jax"] = training_jax.jax_setup
    import torch

    torch.set_num_threads(ARGS.threads)
    import diy_nn

    diy_nn.set_num_threads(ARGS.threads)
    print(f"{ARGS.threads} thread(s), {ARGS.samples} samples per run, best-of ms")
    print("rest: microseconds per step beyond the products, diy_nn's now and what")
    print("diy/peer <= 0.5 leaves for it (the activations, loss, update and every call)")
    head = f"{'workload':16}{'floor':>8}" + "".join(f"{k:>9}" for k in setups)
    print(head + f"{'diy/floor':>11}{'best peer':>11}{'rest':>8}{'0.5 leaves':>12}")
    for name in ARGS.workloads.split(","):
        w = tw.replace(tw.WORKLOADS[name], samples=ARGS.samples)
        x, y = tw.make_data(w, ARGS.samples)
        times = {k: best(setup(w, x, y), ARGS.seconds) for k, setup in setups.items()}
        floor = floor_s(w, ARGS.samples, ARGS.seconds)
        peer = min((k for k in times if k != "diy_nn"), key=times.__getitem__)
        row = f"{name:16}{floor * 1e3:8.3f}" + "".join(f"{t * 1e3:9.3f}" for t in times.values())
        per_step = 1e6 / w.steps(ARGS.samples)
        rest, left = (times["diy_nn"] - floor) * per_step, (0.5 * times[peer] - floor) * per_step
        print(row + f"{times['diy_nn'] / floor:11.2f}{peer:>11}{rest:8.1f}{left:12.1f}")


if __name__ == "__main__":
    main()
