"""Issue 7: training survives Ctrl-C and stops on a diverging loss."""

from __future__ import annotations

import diy_nn as nn
import numpy as np
import pytest
from diy_nn.optim import DivergenceError


def _net_and_data(seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((64, 3))
    Y = X @ rng.standard_normal((3, 1))
    net = nn.Sequential(nn.Linear(3, 4, rng=1), nn.TanH(), nn.Linear(4, 1, rng=2))
    return net, X, Y


def test_keyboard_interrupt_returns_history_and_consistent_parameters():
    net, X, Y = _net_and_data()
    opt = nn.SGD(net, nn.MSELoss(), eps=1e-2)
    step, calls = opt.step, {"n": 0}
    snapshots = []

    def interrupting_step(bx, by):
        calls["n"] += 1
        if calls["n"] == 1 + 3 * 8:  # first step of epoch 4 (8 batches of 8 per epoch)
            snapshots.append([p.copy() for _, p, _ in net.named_parameters()])
        if calls["n"] == 3 * 8 + 5:  # in the middle of epoch 4, after a half update
            _, p, _ = next(iter(net.named_parameters()))
            p += 1000.0  # as if interrupted between two parameter updates
            raise KeyboardInterrupt
        return step(bx, by)

    opt.step = interrupting_step
    hist = nn.fit(opt, X, Y, epochs=10, batch_size=8, seed=0, verbose=False)
    assert len(hist["loss"]) == 3  # the complete epochs
    for (_, p, g), (shape, saved) in zip(
        net.named_parameters(),
        [(s.shape, s) for s in snapshots[0]],
        strict=True,
    ):
        assert p.shape == shape and g.shape == shape
        assert np.all(np.isfinite(p))
        np.testing.assert_array_equal(p, saved)  # the state after epoch 3, not half-updated
    assert np.all(np.isfinite(net.forward(X)))


def test_nan_loss_stops_with_the_epoch_named():
    net, X, Y = _net_and_data()
    opt = nn.SGD(net, nn.MSELoss(), eps=1e-2)
    Y = Y.copy()
    Y[40] = np.nan  # batch 6 of each epoch
    with pytest.raises(FloatingPointError, match=r"nan at epoch 1") as info:
        nn.fit(opt, X, Y, epochs=5, batch_size=8, shuffle=False, verbose=False)
    assert isinstance(info.value, DivergenceError)
    assert all(np.all(np.isfinite(p)) for _, p, _ in net.named_parameters())


def test_divergence_names_a_later_epoch():
    net, X, Y = _net_and_data()
    opt = nn.SGD(net, nn.MSELoss(), eps=1e-2)
    step, calls = opt.step, {"n": 0}

    def step_then_inf(bx, by):
        calls["n"] += 1
        return float("inf") if calls["n"] == 2 * 8 + 3 else step(bx, by)

    opt.step = step_then_inf
    with pytest.raises(DivergenceError, match=r"inf at epoch 3 \(after 2 complete epochs\)"):
        nn.fit(opt, X, Y, epochs=5, batch_size=8, verbose=False)
