"""Timing shared by the kernel benchmarks: seconds per call of a callable."""

from __future__ import annotations

import time
from collections.abc import Callable


def per_call(f: Callable[[], object], budget: float = 0.02, max_calls: int = 1 << 16) -> float:
    """Seconds per call of ``f``, over a batch of calls lasting about ``budget``.

    One warm-up call, then batches of ``n`` calls: ``n`` doubles while a batch is
    short (under an eighth of the budget), then scales to fill the budget;
    ``max_calls`` caps ``n`` for calls too fast to fill it.
    """
    f()
    n = 1
    while True:
        start = time.perf_counter()
        for _ in range(n):
            f()
        t = time.perf_counter() - start
        if t >= budget or n >= max_calls:
            return t / n
        n *= 2 if t < budget / 8 else 1
        if t >= budget / 8:
            n = max(n, int(n * budget / max(t, 1e-9)))
