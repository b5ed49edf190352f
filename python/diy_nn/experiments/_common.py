"""Helpers shared by the experiments: a training loop with a progress bar, data access."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from tqdm.auto import tqdm

from .. import data
from ..loss import Loss
from ..module import Module
from ..optim import Optimizer, iterate_minibatches
from . import Context, MissingData


def fit(
    ctx: Context,
    opt: Optimizer,
    X: np.ndarray,
    Y: np.ndarray,
    epochs: int,
    batch_size: int,
    desc: str,
    rng_offset: int = 0,
    on_epoch: Callable[[int], dict[str, float] | None] | None = None,
    augment: Callable[[np.ndarray, np.random.Generator], np.ndarray] | None = None,
    decay_at: int | None = None,
) -> list[float]:
    """``epochs`` passes of shuffled mini-batch ``opt.step``; returns each epoch's mean loss.

    ``on_epoch(epoch)`` may return values to show in the progress bar; ``augment(batch,
    rng)`` transforms each training batch; from epoch ``decay_at`` on the step is 10x smaller.
    """
    gen = ctx.rng(1000 + rng_offset)
    history: list[float] = []
    bar = tqdm(
        range(epochs), desc=desc, leave=False, disable=not ctx.progress, unit="ep", mininterval=1
    )
    for epoch in bar:
        if decay_at is not None and epoch == decay_at:
            opt.eps *= 0.1
        total = 0.0
        for idx in iterate_minibatches(len(X), batch_size, True, gen):
            bx = X[idx] if augment is None else augment(X[idx], gen)
            total += opt.step(bx, Y[idx]) * len(idx)
        history.append(total / len(X))
        shown = {"loss": f"{history[-1]:.4g}"}
        if on_epoch is not None:
            extra = on_epoch(epoch)
            if extra:
                shown.update({k: f"{v:.4g}" for k, v in extra.items()})
        bar.set_postfix(shown)
    return history


def mean_loss(net: Module, loss: Loss, X: np.ndarray, Y: np.ndarray, batch: int = 2048) -> float:
    """The mean per-sample loss of ``net`` on ``(X, Y)``, in batches."""
    total = 0.0
    for start in range(0, len(X), batch):
        sl = slice(start, start + batch)
        total += float(np.sum(loss.forward(Y[sl], net.forward(X[sl]))))
    return total / len(X)


def predict(net: Module, X: np.ndarray, batch: int = 2048) -> np.ndarray:
    """``net.forward`` in batches, concatenated."""
    return np.concatenate([net.forward(X[s : s + batch]) for s in range(0, len(X), batch)])


def one_hot(y: np.ndarray, k: int) -> np.ndarray:
    out = np.zeros((len(y), k))
    out[np.arange(len(y)), y] = 1.0
    return out


def usps(ctx: Context, split: str, scale: str = "unit") -> tuple[np.ndarray, np.ndarray]:
    """USPS from ``--data-dir`` or ``$DIY_NN_DATA``; raises ``MissingData`` when absent."""
    try:
        return data.load_usps(ctx.data_dir, split, scale=scale)
    except FileNotFoundError as err:
        raise MissingData(str(err)) from None


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
    activations: list[type[Module]],
    rng: np.random.Generator,
    init: str = "uniform",
) -> Module:
    """``Linear(sizes[0], sizes[1]), activations[0](), Linear(sizes[1], sizes[2]), ...``."""
    from ..container import Sequential
    from ..linear import Linear

    if len(activations) != len(sizes) - 1:
        raise ValueError(f"mlp: {len(sizes) - 1} layers need as many activations")
    layers: list[Module] = []
    for n_in, n_out, act in zip(sizes[:-1], sizes[1:], activations, strict=True):
        layers += [Linear(n_in, n_out, init=init, rng=rng), act()]
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
