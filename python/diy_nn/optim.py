"""Optimizers: the course's ``Optim``, an abstract ``Optimizer``, ``SGD``, ``Adam``,
and the ``fit``/``predict``/``score`` helpers.

The base ``step(batch_x, batch_y)`` runs forward, loss, backward and calls the
subclass's ``_step(params)`` with every ``(name, parameter, gradient)`` of the
network; parameters are updated in place. Gradients are those of the *summed*
per-sample loss (the course's convention), so learning rates are per sample.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from . import _core
from ._validation import ShapeError, check_positive_int, fmt_shape
from .init import get_rng
from .loss import Loss
from .module import Module

__all__ = [
    "Optimizer",
    "SGD",
    "Adam",
    "Optim",
    "iterate_minibatches",
    "DivergenceError",
    "train",
    "fit",
    "predict",
    "score",
]

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

    The gradients are those of the *summed* per-sample loss of the batch, not of
    its mean (torch's default reduction): a torch learning rate ``lr`` on batches of
    ``N`` samples corresponds to ``eps = lr / N`` here.

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
        _check_number(eps, f"{type(self).__name__}: eps", low=0.0, strict=True)
        self.net, self.loss, self.eps = net, loss, float(eps)
        self.state: dict[str, dict[str, np.ndarray]] = {}
        # The network's output in the last step, or the function that copies it.
        self._last_output: np.ndarray | None = None
        self._output_of: Callable[[], np.ndarray | None] | None = None
        # The net's parameter slots with the (name, parameter, gradient) list
        # read from them, valid while each slot holds those same arrays.
        self._params: tuple[list[tuple[Module, str, str]], list[Any], list[Any]] | None = None

    @property
    def last_output(self) -> np.ndarray | None:
        """The network's output in the last step (copied from a fused step on demand)."""
        if self._output_of is not None:
            self._last_output, self._output_of = self._output_of(), None
        return self._last_output

    @last_output.setter
    def last_output(self, value: np.ndarray | None) -> None:
        self._last_output, self._output_of = value, None

    def step(self, batch_x: np.ndarray, batch_y: np.ndarray) -> float:
        """One forward/backward/update on a batch; returns the batch's mean loss."""
        bx, by = np.asarray(batch_x), np.asarray(batch_y)
        if len(bx) != len(by):
            raise ShapeError(
                f"{type(self).__name__}.step: batch_x and batch_y must have the same number of "
                f"samples, got {fmt_shape(bx.shape)} and {fmt_shape(by.shape)}"
            )
        cost = self._fused_step(bx, by)  # the net's train_step holds its lock
        if cost is not None:
            return cost
        # The net's lock: a forward from another thread waits for the whole step.
        with self.net._guard():
            yhat = self.last_output = self.net.forward(bx)
            costs = self.loss.forward(by, yhat)
            self.net.zero_grad()
            # The gradients only: d loss / d input of the first layer is not needed.
            self.net.backward_update_gradient(bx, self.loss.backward(by, yhat))
            self._step(self.parameters())
        return float(np.mean(costs))

    def _fused_step(self, bx: np.ndarray, by: np.ndarray) -> float | None:
        """The whole step through the net's ``train_step`` hook where the
        optimizer's rule is plain SGD, else None (the base: never)."""
        return None

    def parameters(self) -> list[tuple[str, np.ndarray, np.ndarray]]:
        """The net's ``(name, parameter, gradient)`` list, each parameter once;
        read again when a slot holds another array than last time (a course
        script assigned ``layer._parameters = W``), compared by identity."""
        cached = self._params
        if cached is not None:
            slots, held, params = cached
            for (module, pname, gname), (param, grad) in zip(slots, held, strict=True):
                if getattr(module, pname) is not param or getattr(module, gname) is not grad:
                    break
            else:
                return params
        slots = self.net.parameter_slots()
        held = [(getattr(m, p), getattr(m, g)) for m, p, g in slots]
        params = list(self.net.named_parameters())
        self._params = (slots, held, params)
        return params

    @abstractmethod
    def _step(self, params: Params) -> None:
        """Updates each parameter in place from its gradient."""

    def _buffer(self, name: str, key: str, param: np.ndarray) -> np.ndarray:
        """The zero-initialised buffer ``key`` of parameter ``name`` (e.g. a momentum)."""
        slot = self.state.setdefault(name, {})
        buf = slot.get(key)
        if buf is None or buf.shape != param.shape or buf.dtype != param.dtype:
            buf = slot[key] = np.zeros_like(param)
        return buf


def _one_dtype(params: Params) -> bool:
    """Whether every parameter and gradient exists and has one float dtype."""
    if not params:
        return False
    dtype = params[0][1].dtype
    return all(p.dtype == dtype and g is not None and g.dtype == dtype for _, p, g in params)


def _check_number(value: object, name: str, low: float, strict: bool = False) -> float:
    """Checks a real hyper-parameter ``> low`` (``strict``) or ``>= low``; returns it as float."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    if not np.isfinite(value) or value < low or (strict and value == low):
        sign = ">" if strict else ">="
        raise ValueError(f"{name} must be a finite number {sign} {low}, got {value}")
    return float(value)


class SGD(Optimizer):
    """Stochastic gradient descent, with optional momentum and weight decay (torch's rule).

    ``g = gradient + weight_decay * parameter``; with momentum,
    ``v = momentum * v + g`` and ``parameter -= eps * v`` (``nesterov``:
    ``parameter -= eps * (g + momentum * v)``); without, ``parameter -= eps * g``.

    Two ways to build it:

    - ``SGD(net, loss, eps)``: an optimizer; call ``step(batch_x, batch_y)``.
    - ``SGD(net, loss, X, Y, batch_size=..., maxIter=..., eps=...)`` (the report's
      form): it also holds the data, and ``update()`` runs ``maxIter`` epochs of
      shuffled mini-batches and returns the mean loss of each epoch.

    Args:
        net, loss: the network and the ``Loss``.
        X, Y, batch_size, maxIter: the report's data and loop (optional).
        eps: the learning rate.
        momentum: in [0, 1) (default 0).
        weight_decay: L2 penalty coefficient >= 0 (default 0).
        nesterov: Nesterov momentum (needs ``momentum > 0``).

    Example:
        >>> opt = SGD(net, MSELoss(), eps=1e-2, momentum=0.9)
        >>> opt.step(batch_x, batch_y)  # doctest: +SKIP
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
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
    ) -> None:
        if isinstance(X, (int, float, np.number)):  # SGD(net, loss, eps)
            eps, X = float(X), None
        super().__init__(net, loss, eps)
        self.momentum = _check_number(momentum, "SGD: momentum", low=0.0)
        if self.momentum >= 1:
            raise ValueError(f"SGD: momentum must be in [0, 1), got {momentum}")
        self.weight_decay = _check_number(weight_decay, "SGD: weight_decay", low=0.0)
        if nesterov and self.momentum == 0:
            raise ValueError("SGD: nesterov=True needs a momentum > 0, got momentum=0")
        self.nesterov = bool(nesterov)
        self.X = None if X is None else np.asarray(X)
        self.Y = None if Y is None else np.asarray(Y)
        if (self.X is None) != (self.Y is None):
            raise ValueError("SGD: give both X and Y, or neither")
        self.batch_size, self.n_iter = batch_size, n_iter if n_iter is not None else maxIter
        self.shuffle, self.rng = shuffle, rng

    def _fused_step(self, bx: np.ndarray, by: np.ndarray) -> float | None:
        # Plain SGD (no momentum, no decay, ``_step`` not replaced): the net's
        # one-call step if it has one for this batch and loss.
        if self.weight_decay or self.momentum or type(self)._step is not SGD._step:
            return None
        if "_step" in self.__dict__:
            return None
        cost = self.net.train_step(bx, by, self.loss, self.eps)
        if cost is not None:
            self._output_of = self.net.train_step_output
        return cost

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(eps={self.eps}, momentum={self.momentum}, "
            f"weight_decay={self.weight_decay}, nesterov={self.nesterov})"
        )

    def _step(self, params: Params) -> None:
        if not (self.weight_decay or self.momentum) and _one_dtype(params):
            # Plain SGD: every ``param -= eps * grad`` in one kernel call.
            _core.sgd_update([p for _, p, _ in params], [g for _, _, g in params], self.eps)
            return
        for name, param, grad in params:
            g = grad + self.weight_decay * param if self.weight_decay else grad
            if self.momentum:
                v = self._buffer(name, "momentum", param)
                v *= self.momentum
                v += g
                g = g + self.momentum * v if self.nesterov else v
            param -= self.eps * g

    def update(self) -> list[float]:
        """Runs the epochs on the data given to the constructor; returns each epoch's mean loss."""
        if self.X is None or self.Y is None:
            raise ValueError("SGD.update: this SGD holds no data; build it as SGD(net, loss, X, Y)")
        return train(self, self.X, self.Y, self.batch_size, self.n_iter, self.shuffle, self.rng)


class Adam(Optimizer):
    """Adam (Kingma & Ba), torch's rule, with optional (L2) weight decay.

    Args:
        net, loss: the network and the ``Loss``.
        eps: the learning rate (the course's name; torch's ``lr``), default 1e-3.
        betas: decay rates of the first and second moment estimates.
        epsilon: added to the denominator (torch's ``eps``), default 1e-8.
        weight_decay: L2 penalty coefficient added to the gradient (default 0).

    Example:
        >>> opt = Adam(net, CELogSoftMax(), eps=1e-3)
        >>> opt.step(batch_x, batch_y)  # doctest: +SKIP
    """

    def __init__(
        self,
        net: Module,
        loss: Loss,
        eps: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        epsilon: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(net, loss, eps)
        if len(betas) != 2 or any(not 0 <= b < 1 for b in betas):
            raise ValueError(f"Adam: betas must be two numbers in [0, 1), got {betas!r}")
        self.betas = (float(betas[0]), float(betas[1]))
        self.epsilon = _check_number(epsilon, "Adam: epsilon", low=0.0, strict=True)
        self.weight_decay = _check_number(weight_decay, "Adam: weight_decay", low=0.0)
        self.t = 0

    def _step(self, params: Params) -> None:
        self.t += 1
        b1, b2 = self.betas
        c1, c2 = 1 - b1**self.t, 1 - b2**self.t
        for name, param, grad in params:
            g = grad + self.weight_decay * param if self.weight_decay else grad
            m = self._buffer(name, "m", param)
            v = self._buffer(name, "v", param)
            m *= b1
            m += (1 - b1) * g
            v *= b2
            v += (1 - b2) * g * g
            param -= self.eps * (m / c1) / (np.sqrt(v / c2) + self.epsilon)

    def __repr__(self) -> str:
        return f"Adam(eps={self.eps}, betas={self.betas}, epsilon={self.epsilon})"


class Optim(SGD):
    """The course's ``Optim(net, loss, eps)``: ``step(batch_x, batch_y)`` does it all.

    Plain SGD on the gradient of the *summed* loss of the batch (``eps = lr / N``
    for a torch ``lr`` with its mean reduction).
    """

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


def _is_classification(Y: np.ndarray) -> bool:
    """Whether ``Y`` holds class labels: integer indices, one-hot rows or binary {0,1}/{-1,1}."""
    if Y.dtype.kind in "iub":
        return True
    if Y.size == 0 or not np.all(Y == np.round(Y)):
        return False
    if Y.ndim == 2 and Y.shape[1] > 1:
        return bool(np.all((Y == 0) | (Y == 1)) and np.all(Y.sum(axis=1) == 1))
    return set(np.unique(Y).tolist()) <= {-1.0, 0.0, 1.0}


def _labels(Y: np.ndarray) -> np.ndarray:
    """Class labels ``(N,)`` from indices ``(N,)``/``(N, 1)`` or one-hot ``(N, k)``."""
    Y = np.asarray(Y)
    if Y.ndim == 2 and Y.shape[1] > 1:
        return Y.argmax(axis=1)
    return Y.reshape(len(Y))


def predict(
    net: Module,
    X: np.ndarray,
    batch_size: int | None = None,
    threshold: float = 0.5,
    labels: tuple[int, int] = (0, 1),
) -> np.ndarray:
    """Class predictions of ``net`` on ``X``, shape ``(N,)``.

    Several outputs: the index of the largest. One output (``(N,)`` or
    ``(N, 1)``): ``labels[1]`` where it exceeds ``threshold``, else ``labels[0]``
    (use ``threshold=0, labels=(-1, 1)`` for a TanH/hinge output).

    Args:
        net: the trained network.
        X: the inputs.
        batch_size: forward by batches of this size (default: all at once).
        threshold, labels: the binary rule.

    Example:
        >>> predict(net, X)  # doctest: +SKIP
        array([0, 1, 1, ...])
    """
    X = np.asarray(X)
    size = len(X) if batch_size is None else check_positive_int(batch_size, "predict: batch_size")
    outs = [net.forward(X[i : i + size]) for i in range(0, len(X), max(size, 1))]
    out = np.concatenate(outs) if outs else net.forward(X)
    return _decide(out, threshold, labels)


def _decide(out: np.ndarray, threshold: float, labels: tuple[int, int]) -> np.ndarray:
    """Class predictions from network outputs (argmax, or one output thresholded)."""
    if out.ndim == 2 and out.shape[1] > 1:
        return out.argmax(axis=1)
    return np.where(out.reshape(len(out)) > threshold, labels[1], labels[0])


def _n_correct(out: np.ndarray, Y: np.ndarray, threshold: float | None = None) -> int:
    """How many outputs give the class of ``Y`` (rule of ``score``)."""
    truth = _labels(Y)
    pm = truth.size > 0 and truth.min() < 0
    if threshold is None:
        threshold = 0.0 if pm else 0.5
    return int(np.sum(_decide(out, threshold, (-1, 1) if pm else (0, 1)) == truth))


def score(
    net: Module,
    X: np.ndarray,
    Y: np.ndarray,
    batch_size: int | None = None,
    threshold: float | None = None,
) -> float:
    """Accuracy of ``net`` on ``(X, Y)``; ``Y`` as indices, one-hot, {0, 1} or {-1, +1}.

    A single output is compared with ``threshold``; by default 0 when the
    labels are in {-1, +1} (a TanH or hinge output), 0.5 otherwise (a Sigmoid
    output): the targets the loss was trained on tell which.
    """
    Y = np.asarray(Y)
    if len(Y) != len(X):
        raise ShapeError(f"score: X and Y must have the same length, got {len(X)} and {len(Y)}")
    if len(Y) == 0:
        return float("nan")
    size = len(X) if batch_size is None else check_positive_int(batch_size, "score: batch_size")
    correct = sum(
        _n_correct(net.forward(X[i : i + size]), Y[i : i + size], threshold)
        for i in range(0, len(X), size)
    )
    return correct / len(Y)


class DivergenceError(FloatingPointError):
    """Training stopped: the loss became NaN or infinite (the message names the epoch)."""


def _restore(net: Module, saved: list[np.ndarray]) -> None:
    for (_, p, _), s in zip(net.named_parameters(), saved, strict=True):
        p[...] = s


def _mean_loss(net: Module, loss: Loss, X: np.ndarray, Y: np.ndarray) -> float:
    return float(np.mean(loss.forward(Y, net.forward(X))))


def fit(
    opt: Optimizer,
    X: np.ndarray,
    Y: np.ndarray,
    epochs: int = 100,
    batch_size: int = 32,
    shuffle: bool = True,
    seed: None | int | np.random.Generator = None,
    validation_data: tuple[np.ndarray, np.ndarray] | None = None,
    patience: int | None = None,
    min_delta: float = 0.0,
    restore_best: bool = True,
    verbose: bool = True,
) -> dict[str, list[float]]:
    """Trains ``opt.net`` on ``(X, Y)`` with mini-batches; returns the history.

    Args:
        opt: the optimizer (holds the network and the loss).
        X, Y: training inputs and targets (same length).
        epochs: the most passes over the data.
        batch_size: samples per step.
        shuffle: reshuffle the samples every epoch.
        seed: the shuffling's seed (an int or a Generator; None: the global one).
        validation_data: ``(X_val, Y_val)`` scored after every epoch.
        patience: stop after this many epochs without an improvement of at least
            ``min_delta`` of the monitored loss (``val_loss`` when there is
            validation data, else ``loss``); None: never stop early.
        restore_best: on early stopping, put back the best epoch's parameters.
        verbose: show a tqdm progress bar.

    Ctrl-C (``KeyboardInterrupt``) stops training: the parameters go back to
    those of the last complete epoch and the history so far is returned.

    Raises:
        DivergenceError: (a ``FloatingPointError``) the loss became NaN or inf;
            the message names the epoch, the parameters are those of the last
            complete epoch.

    Returns:
        ``{"loss", "accuracy", "val_loss", "val_accuracy"}``: one value per epoch.
        ``loss`` and ``accuracy`` are running values over the epoch's batches
        (as Keras reports them: no extra pass over the data); the validation
        ones are computed after the epoch. Accuracies only for class labels
        (indices, one-hot, {0, 1}, {-1, +1}), else empty lists.

    Examples:
        >>> hist = fit(Adam(net, BCELoss(), eps=1e-2), X, y, epochs=50, seed=0, verbose=False)
        >>> hist["loss"][-1] < hist["loss"][0]  # doctest: +SKIP
        True
    """
    from tqdm.auto import tqdm

    X, Y = np.asarray(X), np.asarray(Y)
    if len(X) != len(Y):
        raise ShapeError(f"fit: X and Y must have the same length, got {len(X)} and {len(Y)}")
    epochs = check_positive_int(epochs, "fit: epochs")
    batch_size = check_positive_int(batch_size, "fit: batch_size")
    if patience is not None:
        patience = check_positive_int(patience, "fit: patience")
    min_delta = _check_number(min_delta, "fit: min_delta", low=0.0)
    if validation_data is not None:
        Xv, Yv = (np.asarray(a) for a in validation_data)
        if len(Xv) != len(Yv):
            raise ShapeError(
                f"fit: validation X and Y must have the same length, got {len(Xv)} and {len(Yv)}"
            )
    classes = _is_classification(Y)
    gen = get_rng(seed)
    history: dict[str, list[float]] = {
        "loss": [],
        "accuracy": [],
        "val_loss": [],
        "val_accuracy": [],
    }
    best, best_params, waited = np.inf, None, 0
    bar = tqdm(range(epochs), disable=not verbose, desc="fit", unit="epoch")
    for epoch in bar:
        # the parameters at the end of the last whole epoch: put back when
        # interrupted or diverging, so the model never stays half-updated
        start = [p.copy() for _, p, _ in opt.net.named_parameters()]
        total, correct = 0.0, 0
        try:
            for idx in iterate_minibatches(len(X), batch_size, shuffle, gen):
                cost = opt.step(X[idx], Y[idx])
                if not np.isfinite(cost):
                    _restore(opt.net, start)
                    raise DivergenceError(
                        f"fit: the loss became {cost} at epoch {epoch + 1} (after "
                        f"{len(history['loss'])} complete epochs); the parameters are those "
                        "of the last complete epoch. Lower the learning rate or check the "
                        "data for NaN/inf"
                    )
                total += cost * len(idx)
                if classes and opt.last_output is not None:
                    correct += _n_correct(opt.last_output, Y[idx])
        except KeyboardInterrupt:
            _restore(opt.net, start)
            break
        history["loss"].append(total / max(len(X), 1))
        if classes:
            history["accuracy"].append(correct / max(len(X), 1))
        monitored = history["loss"][-1]
        if validation_data is not None:
            history["val_loss"].append(_mean_loss(opt.net, opt.loss, Xv, Yv))
            if classes:
                history["val_accuracy"].append(score(opt.net, Xv, Yv))
            monitored = history["val_loss"][-1]
        bar.set_postfix({k: f"{v[-1]:.4g}" for k, v in history.items() if v})
        if patience is None:
            continue
        if monitored < best - min_delta:
            best, waited = monitored, 0
            if restore_best:
                best_params = [p.copy() for _, p, _ in opt.net.named_parameters()]
        else:
            waited += 1
            if waited >= patience:
                break
    bar.close()
    if best_params is not None and waited > 0:
        for (_, p, _), saved in zip(opt.net.named_parameters(), best_params, strict=True):
            p[...] = saved
    return history
