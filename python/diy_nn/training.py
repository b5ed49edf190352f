"""Training helpers: ``fit`` with callbacks, ``train`` (the report's epoch loop),
``evaluate``, ``predict``, ``predict_proba``, ``score``, and the callbacks
``Callback``, ``LambdaCallback`` and ``EarlyStopping``.

``fit`` puts the network in training mode (``Module.train()``) for its steps and in
evaluation mode for its validation pass; ``evaluate``, ``predict``,
``predict_proba`` and ``score`` run in evaluation mode. Each puts back the modes
the modules had before (``Dropout``, ``BatchNorm1D`` behave differently in each).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from ._validation import ShapeError, check_positive_int, fmt_shape
from .init import get_rng
from .loss import Loss
from .module import Module
from .optim import Optimizer, _check_number, iterate_minibatches

__all__ = [
    "Callback",
    "LambdaCallback",
    "EarlyStopping",
    "DivergenceError",
    "fit",
    "train",
    "evaluate",
    "predict",
    "predict_proba",
    "score",
]

BatchTransform = Callable[[np.ndarray, np.random.Generator], np.ndarray]


class DivergenceError(FloatingPointError):
    """Training stopped: the loss became NaN or infinite (the message names the epoch)."""


# --- modes --------------------------------------------------------------------------------
@contextlib.contextmanager
def mode(net: Module, training: bool) -> Iterator[Module]:
    """Runs the block with ``net`` (and its descendants) in training or evaluation mode,
    then puts back each module's own mode."""
    saved = [(m, m.training) for m in net.modules()]
    net.train(training)
    try:
        yield net
    finally:
        for m, was in saved:
            m.training = was


# --- argument checks ----------------------------------------------------------------------
def _array(a: object, who: str, what: str) -> np.ndarray:
    arr = np.asarray(a)
    if arr.ndim == 0:
        raise ShapeError(
            f"{who}: {what} must be an array with one sample per row (samples on the first "
            f"axis), got a 0-d value {a!r}"
        )
    return arr


def _check_data(who: str, X: object, Y: object, what: str = "X and Y") -> None:
    """Refuses 0-d, empty or unequal-length ``X``/``Y`` with a message naming ``who``."""
    x_name, y_name = what.split(" and ")
    x, y = _array(X, who, x_name), _array(Y, who, y_name)
    if len(x) != len(y):
        raise ShapeError(
            f"{who}: {what} must have the same length (number of samples), "
            f"got {len(x)} and {len(y)}"
        )
    if len(x) == 0:
        raise ValueError(
            f"{who}: {x_name} holds no samples (shape {fmt_shape(x.shape)}); expected at least one"
        )


# --- callbacks ----------------------------------------------------------------------------
class Callback:
    """Base of ``fit``'s callbacks; every hook does nothing unless overridden.

    Any object with some of these methods works as a callback; this class only
    gives the others. ``fit`` calls ``set_optimizer(opt)`` first (when present),
    then ``on_train_begin(logs)``, for each epoch ``on_epoch_begin(epoch, logs)``,
    ``on_batch_end(batch, logs)`` after each step (``logs``: ``batch``, ``size``,
    ``loss``), ``on_epoch_end(epoch, logs)`` with the epoch's ``loss``, ``accuracy``,
    ``val_loss``, ``val_accuracy`` (those measured), and ``on_train_end(logs)`` with
    the last epoch's. Setting ``stop_training = True`` stops ``fit`` after the
    current batch.
    """

    stop_training: bool = False
    optimizer: Any = None  # the Optimizer, set by set_optimizer (or the schedule's own)

    def set_optimizer(self, opt: Optimizer) -> None:
        self.optimizer = opt

    def on_train_begin(self, logs: dict[str, float]) -> None:
        pass

    def on_epoch_begin(self, epoch: int, logs: dict[str, float]) -> None:
        pass

    def on_batch_end(self, batch: int, logs: dict[str, float]) -> None:
        pass

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
        pass

    def on_train_end(self, logs: dict[str, float]) -> None:
        pass


class LambdaCallback(Callback):
    """A callback made of functions: ``LambdaCallback(on_epoch_end=lambda e, logs: ...)``.

    Each keyword (``on_train_begin``, ``on_epoch_begin``, ``on_batch_end``,
    ``on_epoch_end``, ``on_train_end``) takes the hook's arguments; a function that
    returns True stops training.
    """

    _HOOKS = ("on_train_begin", "on_epoch_begin", "on_batch_end", "on_epoch_end", "on_train_end")

    def __init__(self, **hooks: Callable[..., Any]) -> None:
        unknown = sorted(set(hooks) - set(self._HOOKS))
        if unknown:
            raise TypeError(f"LambdaCallback: unknown hook(s) {unknown}; expected {self._HOOKS}")
        for name, fn in hooks.items():
            if not callable(fn):
                raise TypeError(f"LambdaCallback: {name} must be callable, got {fn!r}")
            setattr(self, name, self._wrap(fn))

    def _wrap(self, fn: Callable[..., Any]) -> Callable[..., None]:
        def hook(*args: Any) -> None:
            if fn(*args) is True:
                self.stop_training = True

        return hook


class EarlyStopping(Callback):
    """Stops ``fit`` after ``patience`` epochs without an improvement of the monitored
    value by more than ``min_delta``; ``restore_best`` puts back the parameters of the
    best epoch at the end (when the last epoch was not the best).

    Args:
        monitor: a key of the epoch's logs; None: ``val_loss`` when there is
            validation data, else ``loss``.
        patience: epochs to wait (>= 1).
        min_delta: the least decrease that counts as an improvement (>= 0).
        restore_best: put back the best epoch's parameters.
    """

    def __init__(
        self,
        monitor: str | None = None,
        patience: int = 10,
        min_delta: float = 0.0,
        restore_best: bool = True,
    ) -> None:
        self.monitor = monitor
        self.patience = check_positive_int(patience, "EarlyStopping: patience")
        self.min_delta = _check_number(min_delta, "EarlyStopping: min_delta", low=0.0)
        self.restore_best = bool(restore_best)
        self.stop_training = False
        self.best, self.waited = np.inf, 0
        self.best_params: list[np.ndarray] | None = None

    def on_train_begin(self, logs: dict[str, float]) -> None:
        self.best, self.waited, self.best_params = np.inf, 0, None
        self.stop_training = False

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
        key = self.monitor or ("val_loss" if "val_loss" in logs else "loss")
        if key not in logs:
            raise KeyError(f"EarlyStopping: no {key!r} in the epoch's logs {sorted(logs)}")
        if logs[key] < self.best - self.min_delta:
            self.best, self.waited = logs[key], 0
            if self.restore_best and self.optimizer is not None:
                self.best_params = [p.copy() for _, p, _ in self.optimizer.net.named_parameters()]
        else:
            self.waited += 1
            if self.waited >= self.patience:
                self.stop_training = True

    def on_train_end(self, logs: dict[str, float]) -> None:
        if self.best_params is not None and self.waited > 0 and self.optimizer is not None:
            _restore(self.optimizer.net, self.best_params)


def _call(callbacks: Sequence[object], hook: str, *args: Any) -> bool:
    """Calls ``hook`` on every callback that has it; whether one asks to stop."""
    for cb in callbacks:
        fn = getattr(cb, hook, None)
        if fn is not None:
            fn(*args)
    return any(getattr(cb, "stop_training", False) for cb in callbacks)


def _restore(net: Module, saved: list[np.ndarray]) -> None:
    for (_, p, _), s in zip(net.named_parameters(), saved, strict=True):
        p[...] = s


# --- labels and decisions -----------------------------------------------------------------
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


def _outputs(net: Module, X: np.ndarray, size: int) -> Iterator[tuple[slice, np.ndarray]]:
    """``net.forward`` on consecutive batches of ``size`` rows, with their slices."""
    for i in range(0, len(X), size):
        sl = slice(i, i + size)
        yield sl, net.forward(X[sl])


def _batch_size(batch_size: int | None, n: int, who: str) -> int:
    if batch_size is None:
        return max(n, 1)
    return check_positive_int(batch_size, f"{who}: batch_size")


# --- inference ----------------------------------------------------------------------------
def predict(
    net: Module,
    X: np.ndarray,
    batch_size: int | None = None,
    threshold: float = 0.5,
    labels: tuple[int, int] = (0, 1),
) -> np.ndarray:
    """Class predictions of ``net`` on ``X``, shape ``(N,)``, in evaluation mode.

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
    X = _array(X, "predict", "X")
    size = _batch_size(batch_size, len(X), "predict")
    with mode(net, False):
        outs = [out for _, out in _outputs(net, X, size)]
        out = np.concatenate(outs) if outs else net.forward(X)
    return _decide(out, threshold, labels)


def _last_leaf(net: Module) -> Module:
    leaf = net
    for m in net.modules():
        if not m.children():
            leaf = m
    return leaf


def predict_proba(net: Module, X: np.ndarray, batch_size: int | None = None) -> np.ndarray:
    """Class probabilities of ``net`` on ``X``, shape ``(N, k)``, in evaluation mode.

    Several outputs: a net ending in ``SoftMax`` gives its outputs as they are, one
    ending in ``LogSoftMax`` their exponential, any other the softmax of its outputs
    (logits). One output: ``[1 - p, p]`` with ``p`` the output of a final ``Sigmoid``,
    else the sigmoid of the output (a logit).

    Example:
        >>> predict_proba(net, X).sum(axis=1)  # doctest: +SKIP
        array([1., 1., ...])
    """
    from . import functional as F
    from .activation import LogSoftMax, Sigmoid, SoftMax

    X = _array(X, "predict_proba", "X")
    size = _batch_size(batch_size, len(X), "predict_proba")
    with mode(net, False):
        outs = [out for _, out in _outputs(net, X, size)]
    out = np.concatenate(outs) if outs else np.zeros((0, 1))
    last = _last_leaf(net)
    if out.ndim == 2 and out.shape[1] > 1:
        if isinstance(last, SoftMax):
            return out
        if isinstance(last, LogSoftMax):
            return np.exp(out)
        shifted = out - out.max(axis=1, keepdims=True)
        e = np.exp(shifted)
        return e / e.sum(axis=1, keepdims=True)
    p = out.reshape(len(out))
    if not isinstance(last, Sigmoid):
        p = F.sigmoid(p)
    return np.stack([1 - p, p], axis=1)


def score(
    net: Module,
    X: np.ndarray,
    Y: np.ndarray,
    batch_size: int | None = None,
    threshold: float | None = None,
) -> float:
    """Accuracy of ``net`` on ``(X, Y)`` in evaluation mode; ``Y`` as indices, one-hot,
    {0, 1} or {-1, +1} (NaN when there are no samples).

    A single output is compared with ``threshold``; by default 0 when the
    labels are in {-1, +1} (a TanH or hinge output), 0.5 otherwise (a Sigmoid
    output): the targets the loss was trained on tell which.
    """
    X, Y = _array(X, "score", "X"), _array(Y, "score", "Y")
    if len(Y) != len(X):
        raise ShapeError(f"score: X and Y must have the same length, got {len(X)} and {len(Y)}")
    if len(Y) == 0:
        return float("nan")
    size = _batch_size(batch_size, len(X), "score")
    with mode(net, False):
        correct = sum(_n_correct(out, Y[sl], threshold) for sl, out in _outputs(net, X, size))
    return correct / len(Y)


def evaluate(
    net: Module, loss: Loss, X: np.ndarray, Y: np.ndarray, batch_size: int | None = None
) -> dict[str, float]:
    """The mean loss of ``net`` on ``(X, Y)``, and its accuracy for class labels, in
    evaluation mode and one forward pass per batch.

    Returns:
        ``{"loss": mean per-sample loss, "accuracy": ...}``; ``accuracy`` (the rule of
        ``score``) only when ``Y`` holds class labels (indices, one-hot, {0, 1}, {-1, +1}).

    Example:
        >>> evaluate(net, CELogSoftMax(), X_test, y_test)  # doctest: +SKIP
        {'loss': 0.21, 'accuracy': 0.94}
    """
    if not isinstance(loss, Loss):
        raise TypeError(f"evaluate: loss must be a diy_nn Loss, got {loss!r}")
    _check_data("evaluate", X, Y)
    X, Y = np.asarray(X), np.asarray(Y)
    size = _batch_size(batch_size, len(X), "evaluate")
    classes = _is_classification(Y)
    total, correct = 0.0, 0
    with mode(net, False):
        for sl, out in _outputs(net, X, size):
            total += float(np.sum(loss.forward(Y[sl], out)))
            if classes:
                correct += _n_correct(out, Y[sl])
    result = {"loss": total / len(X)}
    if classes:
        result["accuracy"] = correct / len(X)
    return result


# --- training -----------------------------------------------------------------------------
def train(
    opt: Optimizer,
    X: np.ndarray,
    Y: np.ndarray,
    batch_size: int,
    n_iter: int,
    shuffle: bool = True,
    rng: None | int | np.random.Generator = None,
) -> list[float]:
    """``n_iter`` epochs of mini-batch steps in training mode; returns each epoch's mean loss."""
    _check_data("train", X, Y)
    X, Y = np.asarray(X), np.asarray(Y)
    batch_size = check_positive_int(batch_size, "train: batch_size")
    n_iter = check_positive_int(n_iter, "train: n_iter (maxIter), the number of epochs")
    gen = get_rng(rng)
    history = []
    with mode(opt.net, True):
        for _ in range(n_iter):
            costs = [
                opt.step(X[idx], Y[idx]) * len(idx)
                for idx in iterate_minibatches(len(X), batch_size, shuffle, gen)
            ]
            history.append(float(np.sum(costs) / len(X)))
    return history


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
    callbacks: Sequence[object] | None = None,
    batch_transform: BatchTransform | None = None,
    desc: str = "fit",
) -> dict[str, list[float]]:
    """Trains ``opt.net`` on ``(X, Y)`` with mini-batches; returns the history.

    The network is in training mode during the steps and in evaluation mode during
    the validation pass; the modes it had are put back at the end.

    Args:
        opt: the optimizer (holds the network and the loss).
        X, Y: training inputs and targets (same length, at least one sample).
        epochs: the most passes over the data.
        batch_size: samples per step.
        shuffle: reshuffle the samples every epoch.
        seed: the shuffling's seed (an int or a Generator; None: the global one).
        validation_data: a pair ``(X_val, Y_val)`` evaluated after every epoch.
        patience: stop after this many epochs without an improvement of at least
            ``min_delta`` of the monitored loss (``val_loss`` when there is
            validation data, else ``loss``); None: never stop early. It adds an
            ``EarlyStopping(None, patience, min_delta, restore_best)`` callback.
        restore_best: on early stopping, put back the best epoch's parameters.
        verbose: show a tqdm progress bar.
        callbacks: objects with any of ``Callback``'s hooks (schedules from
            ``diy_nn.schedule`` are callbacks too); one whose ``stop_training``
            becomes True stops training.
        batch_transform: ``f(batch_x, rng) -> batch_x`` applied to each training
            batch (data augmentation), ``rng`` the shuffling's generator; it must
            keep the number of samples and not modify its input.
        desc: the progress bar's label.

    Ctrl-C (``KeyboardInterrupt``) anywhere in an epoch (steps, validation, callbacks)
    stops training: the parameters go back to those of the last complete epoch and
    the history of the complete epochs is returned.

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

    Example:
        >>> hist = fit(Adam(net, BCELoss(), eps=1e-2), X, y, epochs=50, seed=0, verbose=False)
        >>> hist["loss"][-1] < hist["loss"][0]  # doctest: +SKIP
        True
    """
    from tqdm.auto import tqdm

    if not isinstance(opt, Optimizer):
        raise TypeError(f"fit: opt must be a diy_nn Optimizer, got {opt!r}")
    _check_data("fit", X, Y)
    X, Y = np.asarray(X), np.asarray(Y)
    epochs = check_positive_int(epochs, "fit: epochs")
    batch_size = check_positive_int(batch_size, "fit: batch_size")
    cbs = list(callbacks) if callbacks is not None else []
    if patience is not None:
        patience = check_positive_int(patience, "fit: patience")
        min_delta = _check_number(min_delta, "fit: min_delta", low=0.0)
        cbs.append(EarlyStopping(None, patience, min_delta, restore_best))
    else:
        _check_number(min_delta, "fit: min_delta", low=0.0)
    if batch_transform is not None and not callable(batch_transform):
        raise TypeError(f"fit: batch_transform must be callable, got {batch_transform!r}")
    if validation_data is not None:
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
            got = (
                f"an array of shape {fmt_shape(np.shape(validation_data))}"
                if isinstance(validation_data, np.ndarray)
                else repr(type(validation_data).__name__)
            )
            raise TypeError(f"fit: validation_data must be a pair (X_val, Y_val), got {got}")
        _check_data("fit", *validation_data, what="validation X and validation Y")
        Xv, Yv = (np.asarray(a) for a in validation_data)
    classes = _is_classification(Y)
    gen = get_rng(seed)
    history: dict[str, list[float]] = {
        "loss": [],
        "accuracy": [],
        "val_loss": [],
        "val_accuracy": [],
    }
    for cb in cbs:
        if hasattr(cb, "set_optimizer"):
            cb.set_optimizer(opt)
    net = opt.net
    logs: dict[str, float] = {}
    with mode(net, True):
        _call(cbs, "on_train_begin", logs)
        bar = tqdm(range(epochs), disable=not verbose, desc=desc, unit="epoch")
        try:
            for epoch in bar:
                # the parameters at the end of the last whole epoch: put back when
                # interrupted or diverging, so the model never stays half-updated
                start = [p.copy() for _, p, _ in net.named_parameters()]
                try:
                    stop = _call(cbs, "on_epoch_begin", epoch, {})
                    epoch_logs = _epoch(
                        opt,
                        X,
                        Y,
                        batch_size,
                        shuffle,
                        gen,
                        classes,
                        cbs,
                        epoch,
                        len(history["loss"]),
                        start,
                        batch_transform,
                    )
                    if validation_data is not None:
                        measured = evaluate(net, opt.loss, Xv, Yv, batch_size=max(batch_size, 1024))
                        epoch_logs.update({"val_" + k: v for k, v in measured.items()})
                except KeyboardInterrupt:
                    _restore(net, start)
                    break
                for key, values in history.items():
                    if key in epoch_logs:
                        values.append(epoch_logs[key])
                logs = epoch_logs
                try:
                    stop = _call(cbs, "on_epoch_end", epoch, dict(epoch_logs)) or stop
                except KeyboardInterrupt:
                    break
                bar.set_postfix({k: f"{v:.4g}" for k, v in epoch_logs.items()})
                if stop:
                    break
        finally:
            bar.close()
        _call(cbs, "on_train_end", dict(logs))
    return history


def _epoch(
    opt: Optimizer,
    X: np.ndarray,
    Y: np.ndarray,
    batch_size: int,
    shuffle: bool,
    gen: np.random.Generator,
    classes: bool,
    cbs: Sequence[object],
    epoch: int,
    done: int,
    start: list[np.ndarray],
    batch_transform: BatchTransform | None,
) -> dict[str, float]:
    """One pass of ``fit`` over the data; returns the epoch's ``loss`` (and ``accuracy``)."""
    total, correct = 0.0, 0
    for b, idx in enumerate(iterate_minibatches(len(X), batch_size, shuffle, gen)):
        bx = X[idx]
        if batch_transform is not None:
            bx = np.asarray(batch_transform(bx, gen))
            if bx.ndim == 0 or len(bx) != len(idx):
                raise ShapeError(
                    f"fit: batch_transform must return the {len(idx)} samples of the batch, "
                    f"got shape {fmt_shape(bx.shape)}"
                )
        cost = opt.step(bx, Y[idx])
        if not np.isfinite(cost):
            _restore(opt.net, start)
            raise DivergenceError(
                f"fit: the loss became {cost} at epoch {epoch + 1} (after {done} complete "
                "epochs); the parameters are those of the last complete epoch. Lower the "
                "learning rate or check the data for NaN/inf"
            )
        total += cost * len(idx)
        if classes and opt.last_output is not None:
            correct += _n_correct(opt.last_output, Y[idx])
        if cbs and _call(cbs, "on_batch_end", b, {"batch": b, "size": len(idx), "loss": cost}):
            break
    logs = {"loss": total / len(X)}
    if classes:
        logs["accuracy"] = correct / len(X)
    return logs
