"""Issue 7: kernels called from several Python threads give the serial results."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import diy_nn as nn
import numpy as np
from diy_nn import _core


def _work(seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((16, 12, 3))
    conv = nn.Conv1D(3, 3, 4, rng=seed)
    y = conv.forward(x)
    d = rng.standard_normal(y.shape)
    conv.backward_update_gradient(x, d)
    a, b = rng.standard_normal((40, 30)), rng.standard_normal((30, 20))
    return [
        y,
        conv.backward_delta(x, d),
        conv._gradient.copy(),
        _core.matmul(a, b),
        _core.softmax(a),
        nn.MaxPool1D(2).forward(x),
    ]


def test_threads_give_the_serial_results():
    seeds = list(range(8))
    serial = [_work(s) for s in seeds]
    with ThreadPoolExecutor(max_workers=4) as pool:
        for _ in range(3):
            threaded = list(pool.map(_work, seeds))
            for got, want in zip(threaded, serial, strict=True):
                for g, w in zip(got, want, strict=True):
                    np.testing.assert_array_equal(g, w)


def test_results_are_deterministic_for_a_seed_and_thread_count():
    before = _core.get_num_threads()
    try:
        for n in (1, 2):
            _core.set_num_threads(n)
            runs = [_work(3) for _ in range(3)]
            for other in runs[1:]:
                for g, w in zip(other, runs[0], strict=True):
                    np.testing.assert_array_equal(g, w)
    finally:
        _core.set_num_threads(before if before else 0)
