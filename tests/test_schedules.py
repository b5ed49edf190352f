"""Issue 14: AdamW and RMSprop step by step against torch.optim, and the learning-rate
schedules of diy_nn.schedule against torch.optim.lr_scheduler."""

from __future__ import annotations

import warnings

import diy_nn as nn
import numpy as np
import pytest
from diy_nn import schedule
from parity import require_torch, small_mlp, train_beside_torch

OPTIMIZERS = {
    "adamw-default": (
        lambda net, loss: nn.AdamW(net, loss),
        lambda T, p: T.optim.AdamW(p),
    ),
    "adamw": (
        lambda net, loss: nn.AdamW(net, loss, eps=0.01, betas=(0.8, 0.99), weight_decay=0.1),
        lambda T, p: T.optim.AdamW(p, lr=0.01, betas=(0.8, 0.99), weight_decay=0.1),
    ),
    "rmsprop-default": (
        lambda net, loss: nn.RMSprop(net, loss),
        lambda T, p: T.optim.RMSprop(p),
    ),
    "rmsprop-momentum-wd": (
        lambda net, loss: nn.RMSprop(
            net, loss, eps=0.005, alpha=0.9, epsilon=1e-6, momentum=0.9, weight_decay=0.01
        ),
        lambda T, p: T.optim.RMSprop(
            p, lr=0.005, alpha=0.9, eps=1e-6, momentum=0.9, weight_decay=0.01
        ),
    ),
    "rmsprop-centered": (
        lambda net, loss: nn.RMSprop(net, loss, eps=0.003, centered=True, momentum=0.5),
        lambda T, p: T.optim.RMSprop(p, lr=0.003, centered=True, momentum=0.5),
    ),
}


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_optimizer_matches_torch_over_20_steps(name):
    net, tnet = train_beside_torch(*OPTIMIZERS[name], steps=20, batches=5, size=8)
    for i in (0, 2):
        np.testing.assert_allclose(
            net[i]._parameters, tnet[i].weight.detach().numpy().T, rtol=0, atol=1e-8
        )
        np.testing.assert_allclose(net[i]._bias, tnet[i].bias.detach().numpy(), rtol=0, atol=1e-8)
    moved = np.abs(net[0]._parameters - small_mlp()[0]._parameters).max()
    assert moved > 1e-3  # the 20 steps did move the parameters


@pytest.mark.parametrize(
    "make, error, match",
    [
        (lambda n, l: nn.Adam(n, l, betas="ab"), TypeError, "betas must be a pair"),
        (lambda n, l: nn.Adam(n, l, betas=(0.9,)), TypeError, "betas must be a pair"),
        (lambda n, l: nn.Adam(n, l, betas=(0.9, "x")), TypeError, "real numbers"),
        (lambda n, l: nn.AdamW(n, l, betas=(float("nan"), 0.9)), ValueError, "betas"),
        (lambda n, l: nn.AdamW(n, l, weight_decay=-1), ValueError, "weight_decay"),
        (lambda n, l: nn.RMSprop(n, l, alpha=1.0), ValueError, "alpha"),
        (lambda n, l: nn.RMSprop(n, l, momentum=-0.1), ValueError, "momentum"),
        (lambda n, l: nn.RMSprop(n, l, epsilon=0), ValueError, "epsilon"),
        (lambda n, l: nn.RMSprop(n, l, centered=1), TypeError, "centered"),
    ],
)
def test_optimizer_arguments_are_checked(make, error, match):
    with pytest.raises(error, match=match):
        make(small_mlp(), nn.MSELoss())


# --- schedules ------------------------------------------------------------------------------
SCHEDULES = {
    "step": (
        lambda o: schedule.StepLR(o, step_size=7, gamma=0.5),
        lambda T, o: T.optim.lr_scheduler.StepLR(o, step_size=7, gamma=0.5),
    ),
    "step-default": (
        lambda o: schedule.StepLR(o, 3),
        lambda T, o: T.optim.lr_scheduler.StepLR(o, 3),
    ),
    "exponential": (
        lambda o: schedule.ExponentialLR(o, 0.93),
        lambda T, o: T.optim.lr_scheduler.ExponentialLR(o, 0.93),
    ),
    "cosine": (
        lambda o: schedule.CosineAnnealingLR(o, T_max=50),
        lambda T, o: T.optim.lr_scheduler.CosineAnnealingLR(o, T_max=50),
    ),
    "cosine-restarts-eta": (  # past T_max the cosine goes back up
        lambda o: schedule.CosineAnnealingLR(o, T_max=9, eta_min=0.01),
        lambda T, o: T.optim.lr_scheduler.CosineAnnealingLR(o, T_max=9, eta_min=0.01),
    ),
}


def _torch_opt(torch, lr: float):
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_schedule_matches_torch_over_50_steps(name):
    torch = require_torch()
    ours_f, theirs_f = SCHEDULES[name]
    opt = nn.SGD(small_mlp(), nn.MSELoss(), eps=0.1)
    topt = _torch_opt(torch, 0.1)
    ours, theirs = ours_f(opt), theirs_f(torch, topt)
    lrs, tlrs = [opt.eps], [topt.param_groups[0]["lr"]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch: "scheduler.step() before optimizer.step()"
        for _ in range(50):
            lrs.append(ours.step())
            topt.step()
            theirs.step()
            tlrs.append(topt.param_groups[0]["lr"])
    np.testing.assert_allclose(lrs, tlrs, rtol=0, atol=1e-12)
    assert len(set(lrs)) > 2  # it did change the learning rate
    assert opt.eps == lrs[-1] == ours.get_last_lr()


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"factor": 0.5, "patience": 2},
        {"factor": 0.5, "patience": 1, "cooldown": 2, "min_lr": 0.02},
        {"patience": 0, "threshold": 0.05, "threshold_mode": "abs"},
        {"mode": "max", "patience": 2, "factor": 0.3},
    ],
)
def test_reduce_on_plateau_matches_torch_on_a_scripted_metric(kwargs):
    torch = require_torch()
    rng = np.random.default_rng(0)
    # falls, stalls, falls a little, stalls long, noise, a NaN
    metric = np.concatenate(
        [
            np.linspace(1.0, 0.5, 10),
            np.full(6, 0.5),
            [0.49995, 0.4999, 0.45],
            np.full(15, 0.45),
            0.45 + 0.01 * rng.standard_normal(18),
            [np.nan, 0.3],
        ]
    )
    opt = nn.SGD(small_mlp(), nn.MSELoss(), eps=0.1)
    topt = _torch_opt(torch, 0.1)
    ours = schedule.ReduceLROnPlateau(opt, **kwargs)
    theirs = torch.optim.lr_scheduler.ReduceLROnPlateau(topt, **kwargs)
    lrs, tlrs = [], []
    for value in metric:
        lrs.append(ours.step(float(value)))
        theirs.step(float(value))
        tlrs.append(topt.param_groups[0]["lr"])
    np.testing.assert_allclose(lrs, tlrs, rtol=0, atol=1e-12)
    assert len(set(lrs)) > 1


def test_schedules_are_fit_callbacks():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((32, 5))
    Y = X @ rng.standard_normal((5, 3))
    opt = nn.SGD(small_mlp(), nn.MSELoss(), eps=0.01)
    seen = []
    sched = schedule.StepLR(opt, step_size=2, gamma=0.5)
    record = nn.LambdaCallback(on_epoch_begin=lambda e, logs: seen.append(opt.eps))
    nn.fit(opt, X, Y, epochs=5, seed=0, verbose=False, callbacks=[record, sched])
    assert seen == [0.01, 0.01, 0.005, 0.005, 0.0025]
    assert sched.last_epoch == 5
    # ReduceLROnPlateau watches the epoch's loss: a tiny step leaves it on a plateau
    frozen = nn.SGD(small_mlp(), nn.MSELoss(), eps=1e-7)
    plateau = schedule.ReduceLROnPlateau(frozen, factor=0.5, patience=1)
    nn.fit(frozen, X, Y, epochs=6, seed=0, verbose=False, callbacks=[plateau])
    assert frozen.eps < 1e-7
    with pytest.raises(ValueError, match="another optimizer"):
        nn.fit(frozen, X, Y, epochs=1, verbose=False, callbacks=[sched])


@pytest.mark.parametrize(
    "make, error",
    [
        (lambda o: schedule.StepLR(o, 0), ValueError),
        (lambda o: schedule.StepLR(o, 2, gamma=-1), ValueError),
        (lambda o: schedule.ExponentialLR(o, float("nan")), ValueError),
        (lambda o: schedule.CosineAnnealingLR(o, 2.5), TypeError),
        (lambda o: schedule.ReduceLROnPlateau(o, factor=1.0), ValueError),
        (lambda o: schedule.ReduceLROnPlateau(o, mode="up"), ValueError),
        (lambda o: schedule.StepLR("opt", 2), TypeError),
    ],
)
def test_schedule_arguments_are_checked(make, error):
    with pytest.raises(error):
        make(nn.SGD(small_mlp(), nn.MSELoss(), eps=0.1))
