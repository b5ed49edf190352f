"""Optimizers: the course's ``Optim``, an abstract ``Optimizer`` and ``SGD``.

The base ``step(batch_x, batch_y)`` runs forward, loss, backward and calls the
subclass's ``_step(params)`` with every ``(name, parameter, gradient)`` of the
network; parameters are updated in place.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np

from ._validation import ShapeError, fmt_shape
from .init import get_rng
from .loss import Loss
from .module import Module

__all__ = ["Optimizer", "SGD", "Optim", "iterate_minibatches"]

Params = Sequence[tuple[str, np.ndarray, np.ndarray]]


def iterate_minibatches(
    n: int, batch_size: int, shuffle: bool = True, rng: None | int | np.random.Generator = None
):
    """Yields index arrays of at most ``batch_size`` covering ``range(n)`` once."""
    order = get_rng(rng).permutation(n) if shuffle else np.arange(n)
    for start in range(0, n, batch_size):
        yield order[start : start + batch_size]


class Optimizer(ABC):
    """A training step on ``net`` for ``loss`` with learning rate ``eps``.

    Args:
        net: the network (any ``Module``).
        loss: the ``Loss``.
        eps: the learning rate (the course's name).
    """

    def __init__(self, net: Module, loss: Loss, eps: float = 1e-3) -> None:
        if not isinstance(net, Module):
            raise TypeError(f"{type(self).__name__}: net must be a diy_nn Module, got {net!r}")
        if not isinstance(loss, Loss):
            raise TypeError(f"{type(self).__name__}: loss must be a diy_nn Loss, got {loss!r}")
        if not np.isfinite(eps) or eps <= 0:
            raise ValueError(f"{type(self).__name__}: eps must be a positive number, got {eps}")
        self.net, self.loss, self.eps = net, loss, float(eps)

    def step(self, batch_x: np.ndarray, batch_y: np.ndarray) -> float:
        """One forward/backward/update on a batch; returns the batch's mean loss."""
        bx, by = np.asarray(batch_x), np.asarray(batch_y)
        if len(bx) != len(by):
            raise ShapeError(
                f"{type(self).__name__}.step: batch_x and batch_y must have the same number of "
                f"samples, got {fmt_shape(bx.shape)} and {fmt_shape(by.shape)}"
            )
        yhat = self.net.forward(bx)
        cost = self.loss.forward(by, yhat)
        self.net.zero_grad()
        self.net.backward(bx, self.loss.backward(by, yhat))
        self._step(list(self.net.named_parameters()))
        return float(np.mean(cost))

    @abstractmethod
    def _step(self, params: Params) -> None:
        """Updates each parameter in place from its gradient."""


class SGD(Optimizer):
    """Stochastic gradient descent: ``parameter -= eps * gradient``.

    Two ways to build it:

    - ``SGD(net, loss, eps)``: an optimizer; call ``step(batch_x, batch_y)``.
    - ``SGD(net, loss, X, Y, batch_size=..., maxIter=..., eps=...)`` (the report's
      form): it also holds the data, and ``update()`` runs ``maxIter`` epochs of
      shuffled mini-batches and returns the mean loss of each epoch.
    """

    def __init__(
        self,
        net: Module,
        loss: Loss,
        X: object = None,
        Y: object = None,
        batch_size: int = 32,
        maxIter: int = 100,
        eps: float = 1e-3,
        shuffle: bool = True,
        rng: None | int | np.random.Generator = None,
        n_iter: int | None = None,
    ) -> None:
        if X is not None and np.ndim(X) == 0:  # SGD(net, loss, eps)
            eps, X = float(X), None  # type: ignore[arg-type]
        super().__init__(net, loss, eps)
        self.X = None if X is None else np.asarray(X)
        self.Y = None if Y is None else np.asarray(Y)
        if (self.X is None) != (self.Y is None):
            raise ValueError("SGD: give both X and Y, or neither")
        self.batch_size, self.n_iter = batch_size, n_iter if n_iter is not None else maxIter
        self.shuffle, self.rng = shuffle, rng

    def _step(self, params: Params) -> None:
        for _, param, grad in params:
            param -= self.eps * grad

    def update(self) -> list[float]:
        """Runs the epochs on the data given to the constructor; returns each epoch's mean loss."""
        if self.X is None or self.Y is None:
            raise ValueError("SGD.update: this SGD holds no data; build it as SGD(net, loss, X, Y)")
        return train(self, self.X, self.Y, self.batch_size, self.n_iter, self.shuffle, self.rng)


class Optim(SGD):
    """The course's ``Optim(net, loss, eps)``: ``step(batch_x, batch_y)`` does it all."""

    def __init__(self, net: Module, loss: Loss, eps: float = 1e-3) -> None:
        super().__init__(net, loss, eps=eps)


def train(
    opt: Optimizer,
    X: np.ndarray,
    Y: np.ndarray,
    batch_size: int,
    n_iter: int,
    shuffle: bool = True,
    rng: None | int | np.random.Generator = None,
) -> list[float]:
    """``n_iter`` epochs of mini-batch steps; returns the mean loss of each epoch."""
    if len(X) != len(Y):
        raise ShapeError(
            f"train: X and Y must have the same number of samples, got {len(X)} and {len(Y)}"
        )
    gen = get_rng(rng)
    history = []
    for _ in range(n_iter):
        costs = [
            opt.step(X[idx], Y[idx]) * len(idx)
            for idx in iterate_minibatches(len(X), batch_size, shuffle, gen)
        ]
        history.append(float(np.sum(costs) / max(len(X), 1)))
    return history
