"""Helpers shared by the experiments: ``fit``'s options, data access, small models and
measures. Training goes through ``diy_nn.fit`` (callbacks, schedules), never a loop here."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np

from .. import data
from ..module import Module
from ..optim import Optimizer
from ..schedule import StepLR
from . import Context, MissingData, Result, register


def fit_options(ctx: Context, desc: str, rng_offset: int = 0) -> dict[str, Any]:
    """The keyword arguments every experiment gives ``diy_nn.fit``: the shuffling's seed
    (derived from the run's seed and ``rng_offset``), the progress bar and its label."""
    return {"seed": ctx.rng(1000 + rng_offset), "verbose": ctx.progress, "desc": desc}


def decay_for_last_quarter(opt: Optimizer, epochs: int) -> list[StepLR]:
    """A ``StepLR`` making the learning rate 10x smaller for the last quarter of
    ``epochs`` (as a callbacks list; empty when there are too few epochs)."""
    at = (3 * epochs) // 4
    return [StepLR(opt, step_size=at, gamma=0.1)] if at >= 1 else []


def usps(ctx: Context, split: str, scale: str = "unit") -> tuple[np.ndarray, np.ndarray]:
    """USPS from ``--data-dir`` or ``$DIY_NN_DATA``; raises ``MissingData`` when absent."""
    try:
        return data.load_usps(ctx.data_dir, split, scale=scale)
    except FileNotFoundError as err:
        raise MissingData(str(err)) from None


def usps_splits(
    ctx: Context, quick_rows: int = 1000
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``Xtr, ytr, Xte, yte`` of USPS; under ``--quick`` the train split keeps
    ``quick_rows`` rows drawn by ``subsample``."""
    Xtr, ytr = usps(ctx, "train")
    Xte, yte = usps(ctx, "test")
    if ctx.quick:
        keep = subsample(ctx, len(Xtr), quick_rows)
        Xtr, ytr = Xtr[keep], ytr[keep]
    return Xtr, ytr, Xte, yte


USPSExperiment = Callable[[Context, np.ndarray, np.ndarray, np.ndarray, np.ndarray], Result]


def on_usps(
    name: str, number: int, title: str
) -> Callable[[USPSExperiment], Callable[[Context], Result]]:
    """``register`` for an experiment that needs USPS and starts from its splits: the
    function gets ``usps_splits(ctx)`` (``Xtr, ytr, Xte, yte``) after the context."""

    def deco(fn: USPSExperiment) -> Callable[[Context], Result]:
        @functools.wraps(fn)
        def run(ctx: Context) -> Result:
            return fn(ctx, *usps_splits(ctx))

        return register(name, number, title, needs=("usps",))(run)

    return deco


def first_of_each_digit(y: np.ndarray) -> np.ndarray:
    """Index of the first row of each label 0..9 in ``y`` (the digits a figure shows)."""
    return np.array([int(np.flatnonzero(y == d)[0]) for d in range(10)])


def ecg(ctx: Context) -> tuple[np.ndarray, np.ndarray]:
    try:
        return data.load_ecg5000(ctx.data_dir)
    except FileNotFoundError as err:
        raise MissingData(str(err)) from None


def subsample(ctx: Context, n: int, k: int, offset: int = 0) -> np.ndarray:
    """Sorted indices of ``min(n, k)`` rows drawn without replacement (seeded)."""
    if k >= n:
        return np.arange(n)
    return np.sort(ctx.rng(2000 + offset).choice(n, k, replace=False))


def mlp(
    sizes: list[int],
    activations: list[type[Module] | None],
    rng: np.random.Generator,
    init: str = "uniform",
) -> Module:
    """``Linear(sizes[0], sizes[1]), activations[0](), Linear(sizes[1], sizes[2]), ...``;
    a ``None`` activation leaves its ``Linear`` without one. The layers draw from ``rng``
    in order."""
    from ..container import Sequential
    from ..linear import Linear

    if len(activations) != len(sizes) - 1:
        raise ValueError(f"mlp: {len(sizes) - 1} layers need as many activations")
    layers: list[Module] = []
    for n_in, n_out, act in zip(sizes[:-1], sizes[1:], activations, strict=True):
        layers.append(Linear(n_in, n_out, init=init, rng=rng))
        if act is not None:
            layers.append(act())
    return Sequential(*layers)


def psnr(clean: np.ndarray, other: np.ndarray, peak: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB over a whole set: ``10 log10(peak² / MSE)``."""
    mse = float(np.mean((np.asarray(clean) - np.asarray(other)) ** 2))
    return float(10 * np.log10(peak**2 / mse)) if mse > 0 else float("inf")


def shift_images(batch: np.ndarray, gen: np.random.Generator, side: int = 16) -> np.ndarray:
    """Moves each ``side x side`` image of ``batch`` by -1, 0 or +1 pixel on each axis (zero fill).

    ``batch`` may be ``(n, side*side)``, ``(n, side*side, 1)`` or ``(n, side, side, 1)``;
    the result has the same shape.
    """
    n = len(batch)
    imgs = batch.reshape(n, side, side)
    padded = np.pad(imgs, ((0, 0), (1, 1), (1, 1)))
    dy, dx = gen.integers(0, 3, n), gen.integers(0, 3, n)
    out = np.empty_like(imgs)
    for a in range(3):
        for b in range(3):
            sel = (dy == a) & (dx == b)
            out[sel] = padded[sel, a : a + side, b : b + side]
    return out.reshape(batch.shape)
