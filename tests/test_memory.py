"""Issue 7: 100,000 training steps of a small model do not grow the resident set."""

from __future__ import annotations

import os

import diy_nn as nn
import numpy as np
import pytest

PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc (Linux)")
def test_many_steps_do_not_grow_memory():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((2, 3)), rng.standard_normal((2, 1))
    net = nn.Sequential(nn.Linear(3, 2, rng=0), nn.TanH(), nn.Linear(2, 1, rng=1))
    loss = nn.MSELoss()
    opt = nn.SGD(net, loss, eps=1e-3)
    for _ in range(2000):  # warm up caches and allocator pools
        opt.step(x, y)
    start = _rss()
    for i in range(100_000):
        opt.step(x, y)
        if i == 50_000:
            mid = _rss()
    end = _rss()
    growth = end - start
    assert growth < 8 * 2**20, f"RSS grew by {growth / 2**20:.1f} MiB over 100,000 steps"
    assert end - mid < 4 * 2**20
    assert all(np.all(np.isfinite(p)) for _, p, _ in net.named_parameters())
