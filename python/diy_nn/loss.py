"""Losses: ``forward(y, yhat)`` gives one cost per sample, ``backward`` d cost / d yhat."""

from __future__ import annotations

import math

import numpy as np

from . import _core
from ._validation import ShapeError, as_float_array, fmt_shape, is_float_array
from .dtype import get_default_dtype, resolve_dtype

__all__ = [
    "Loss",
    "MSELoss",
    "MAELoss",
    "ABSLoss",
    "BCELoss",
    "CrossEntropyLoss",
    "CELogSoftMax",
    "NLLLoss",
    "HingeLoss",
    "CrossEntropyCriterion",
    "one_hot",
]


class Loss:
    """Base of the losses, with the course's method names.

    ``forward(y, yhat)`` returns the cost of each sample, shape ``(N,)``;
    ``backward(y, yhat)`` returns d cost / d yhat, the shape of ``yhat``. The
    gradient a network receives is that of the *sum* of the per-sample costs.
    """

    def forward(self, y: np.ndarray, yhat: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def backward(self, y: np.ndarray, yhat: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def __call__(self, y: np.ndarray, yhat: np.ndarray) -> np.ndarray:
        return self.forward(y, yhat)

    def _pair(self, y: np.ndarray, yhat: np.ndarray, op: str) -> tuple[np.ndarray, np.ndarray]:
        """Checks ``yhat`` (N, ...) and a ``y`` of the same shape; casts both to one float dtype."""
        if (
            is_float_array(yhat)
            and type(y) is np.ndarray
            and y.dtype is yhat.dtype
            and y.shape == yhat.shape
            and yhat.ndim
        ):
            return y, yhat  # what the checks below give, without building their messages
        name = f"{type(self).__name__}.{op}"
        yhat_arr = np.asarray(yhat)
        dtype = (
            yhat_arr.dtype if yhat_arr.dtype in (np.float32, np.float64) else get_default_dtype()
        )
        yhat_arr = as_float_array(yhat_arr, f"{name}: yhat", dtype, min_ndim=1)
        y_arr = as_float_array(y, f"{name}: y", dtype)
        if y_arr.shape != yhat_arr.shape:
            raise ShapeError(
                f"{name}: y must have the shape of yhat {fmt_shape(yhat_arr.shape)}, "
                f"got {fmt_shape(y_arr.shape)}"
            )
        return y_arr, yhat_arr

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def _per_sample(values: np.ndarray) -> np.ndarray:
    """Sums every axis but the batch axis."""
    return values.reshape(values.shape[0], math.prod(values.shape[1:])).sum(axis=1)


class MSELoss(Loss):
    """Squared error per sample: ``||y - yhat||²`` (summed over features).

    torch counterpart: ``nn.MSELoss(reduction="none")(yhat, y).sum(1)``.

    Backward: ``∂L/∂yhat = 2 (yhat - y)``.

    Shape: ``y``, ``yhat``: ``(N, d)`` (or ``(N,)``); forward ``(N,)``;
    backward the shape of ``yhat``.
    """

    def forward(self, y: np.ndarray, yhat: np.ndarray) -> np.ndarray:
        y, yhat = self._pair(y, yhat, "forward")
        diff = y - yhat
        diff *= diff
        return _per_sample(diff)

    def backward(self, y: np.ndarray, yhat: np.ndarray) -> np.ndarray:
        y, yhat = self._pair(y, yhat, "backward")
        grad = yhat - y
        grad *= 2
        return grad


class MAELoss(Loss):
    """Absolute error per sample: ``sum |y - yhat|`` (the report's ``ABSLoss``).

    torch counterpart: ``nn.L1Loss(reduction="none")(yhat, y).sum(1)``.

    Backward: ``∂L/∂yhat = sign(yhat - y)`` (0 where they are equal, as torch).

    Shape: ``y``, ``yhat``: ``(N, d)`` (or ``(N,)``); forward ``(N,)``.

    Example:
        >>> MAELoss().forward(np.array([[1.0, 2.0]]), np.array([[0.0, 4.0]]))
        array([3.])
    """

    def forward(self, y: np.ndarray, yhat: np.ndarray) -> np.ndarray:
        y, yhat = self._pair(y, yhat, "forward")
        return _per_sample(np.abs(y - yhat))

    def backward(self, y: np.ndarray, yhat: np.ndarray) -> np.ndarray:
        y, yhat = self._pair(y, yhat, "backward")
        return np.sign(yhat - y)


ABSLoss = MAELoss  # the report's name

# torch's BCELoss clamps each log at -100 so that log(0) never reaches the cost,
# and divides its gradient by max(yhat (1 - yhat), 1e-12).
_LOG_FLOOR = -100.0
_BCE_GRAD_FLOOR = 1e-12


def _clamped_log(x: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        out = np.log(x)
    return np.maximum(out, _LOG_FLOOR, out=out)


class BCELoss(Loss):
    """Binary cross-entropy per sample: ``-sum(y log(yhat) + (1 - y) log(1 - yhat))``.

    ``yhat`` are probabilities (after a ``Sigmoid``). Each log is clamped at
    -100 and the gradient's denominator at 1e-12, as torch does, so a saturated
    output never gives ``inf`` or ``nan``.

    Backward: ``∂L/∂yhat = (yhat - y) / max(yhat (1 - yhat), 1e-12)``.

    torch counterpart: ``nn.BCELoss(reduction="none")(yhat, y).sum(1)``.

    Shape: ``y``, ``yhat``: ``(N, d)`` (or ``(N,)``), ``y`` in [0, 1]; forward ``(N,)``.

    Example:
        >>> BCELoss().forward(np.array([[1.0]]), np.array([[0.5]])).round(4)
        array([0.6931])
    """

    def forward(self, y: np.ndarray, yhat: np.ndarray) -> np.ndarray:
        y, yhat = self._pair(y, yhat, "forward")
        with np.errstate(divide="ignore"):  # log(0): clamped below
            log_p, log_q = np.log(yhat), np.log(1 - yhat)
        # -(y log p + (1 - y) log q), in place: the same operations, fewer temporaries
        np.maximum(log_p, _LOG_FLOOR, out=log_p)
        np.maximum(log_q, _LOG_FLOOR, out=log_q)
        log_p *= y
        log_q *= 1 - y
        log_p += log_q
        return -_per_sample(log_p)

    def backward(self, y: np.ndarray, yhat: np.ndarray) -> np.ndarray:
        y, yhat = self._pair(y, yhat, "backward")
        den = 1 - yhat
        den *= yhat
        grad = yhat - y
        grad /= np.maximum(den, _BCE_GRAD_FLOOR, out=den)
        return grad


def one_hot(labels: object, k: int, dtype: object = None) -> np.ndarray:
    """Class indices ``(N,)`` as a one-hot ``(N, k)`` float array.

    Raises ``ValueError`` when a label is not an integer in ``[0, k)``.
    """
    lab = np.asarray(labels)
    if lab.ndim != 1:
        raise ShapeError(f"one_hot: labels must have shape (N,), got {fmt_shape(lab.shape)}")
    if lab.dtype.kind not in "biuf":
        raise TypeError(f"one_hot: labels must be integers, got dtype {lab.dtype}")
    bad = lab[(lab != np.round(lab)) | (lab < 0) | (lab >= k)]
    if bad.size:
        raise ValueError(f"one_hot: labels must be integers in [0, {k}), got {bad[:5]!r}")
    out = np.zeros(
        (lab.shape[0], k), dtype=resolve_dtype(get_default_dtype() if dtype is None else dtype)
    )
    out[np.arange(lab.shape[0]), lab.astype(np.int64)] = 1
    return out


class _ClassLoss(Loss):
    """Base of the classification losses.

    ``yhat`` is ``(N, k)``; ``y`` one-hot ``(N, k)`` or class indices ``(N,)``.
    """

    def _classes(self, y: np.ndarray, yhat: np.ndarray, op: str) -> tuple[np.ndarray, np.ndarray]:
        """Returns ``(one-hot y, yhat)``, both ``(N, k)`` in yhat's float dtype."""
        name = f"{type(self).__name__}.{op}"
        yhat_arr = np.asarray(yhat)
        dtype = (
            yhat_arr.dtype if yhat_arr.dtype in (np.float32, np.float64) else get_default_dtype()
        )
        yhat_arr = as_float_array(yhat_arr, f"{name}: yhat", dtype, ("N", "k"))
        y_arr = np.asarray(y)
        if y_arr.ndim == 1:
            if y_arr.shape[0] != yhat_arr.shape[0]:
                raise ShapeError(
                    f"{name}: y (class indices) must have shape ({yhat_arr.shape[0]},), "
                    f"got {fmt_shape(y_arr.shape)}"
                )
            return one_hot(y_arr, yhat_arr.shape[1], dtype), yhat_arr
        return self._pair(y_arr, yhat_arr, op)


class CrossEntropyLoss(_ClassLoss):
    """Cross-entropy on probabilities (after ``SoftMax``): ``-sum_j y_j log(yhat_j)``.

    The log is clamped at -100 (as torch's ``BCELoss``) and the gradient
    ``-y / yhat`` uses ``yhat`` floored at the dtype's smallest normal number, so
    a zero probability never gives ``inf`` or ``nan`` in the cost.

    Backward: ``∂L/∂yhat = -y / yhat``.

    torch counterpart: ``F.nll_loss(torch.log(yhat), y, reduction="none")``.

    Shape: ``yhat``: ``(N, k)``; ``y``: one-hot ``(N, k)`` or indices ``(N,)``; forward ``(N,)``.

    Example:
        >>> CrossEntropyLoss().forward(np.array([1]), np.array([[0.5, 0.5]])).round(4)
        array([0.6931])
    """

    def forward(self, y: np.ndarray, yhat: np.ndarray) -> np.ndarray:
        y, yhat = self._classes(y, yhat, "forward")
        return -(y * _clamped_log(yhat)).sum(axis=1)

    def backward(self, y: np.ndarray, yhat: np.ndarray) -> np.ndarray:
        y, yhat = self._classes(y, yhat, "backward")
        return -y / np.maximum(yhat, np.finfo(yhat.dtype).tiny)


class NLLLoss(_ClassLoss):
    """Negative log-likelihood on log-probabilities (after ``LogSoftMax``): ``-sum_j y_j yhat_j``.

    A class whose target is 0 adds nothing, so a ``-inf`` log-probability of
    another class gives a finite cost (as torch's index form).

    Backward: ``∂L/∂yhat = -y``.

    torch counterpart: ``nn.NLLLoss(reduction="none")``.

    Shape: ``yhat``: ``(N, k)``; ``y``: one-hot ``(N, k)`` or indices ``(N,)``; forward ``(N,)``.

    Example:
        >>> NLLLoss().forward(np.array([0]), np.log(np.array([[0.25, 0.75]]))).round(4)
        array([1.3863])
    """

    def forward(self, y: np.ndarray, yhat: np.ndarray) -> np.ndarray:
        y, yhat = self._classes(y, yhat, "forward")
        with np.errstate(invalid="ignore"):  # 0 * -inf, discarded by the where
            return -np.where(y == 0, 0, y * yhat).sum(axis=1)

    def backward(self, y: np.ndarray, yhat: np.ndarray) -> np.ndarray:
        y, _ = self._classes(y, yhat, "backward")
        return -y


class CELogSoftMax(_ClassLoss):
    """Cross-entropy on logits, fused and stable: ``logsumexp(yhat) - sum_j y_j yhat_j``.

    Runs on the ``cross_entropy`` Rust kernel (row max subtracted first).

    Backward: ``∂L/∂yhat = softmax(yhat) Σ_j y_j - y``.

    torch counterpart: ``nn.CrossEntropyLoss(reduction="none")`` (indices or
    class probabilities as targets).

    Shape: ``yhat``: ``(N, k)`` logits; ``y``: one-hot ``(N, k)`` or indices ``(N,)``;
    forward ``(N,)``.

    Example:
        >>> CELogSoftMax().forward(np.array([0]), np.zeros((1, 2))).round(4)
        array([0.6931])
    """

    def _target(self, y: np.ndarray, yhat: np.ndarray, op: str) -> tuple[np.ndarray, np.ndarray]:
        if type(y) is np.ndarray and is_float_array(yhat) and yhat.ndim == 2:
            if y.ndim == 1 and y.dtype.kind in "iu" and len(y) == len(yhat):
                # Integer class indices: the kernel checks that each is in [0, k).
                return y.astype(np.int64, copy=False), yhat
            if y.dtype is yhat.dtype and y.shape == yhat.shape:
                return y, yhat  # one-hot (or class probabilities) as the checks below give
        y_arr = np.asarray(y)
        y1h, logits = self._classes(y_arr, yhat, op)  # validates both
        target = y1h if y_arr.ndim == 2 else y_arr.astype(np.int64)
        return target, logits

    def forward(self, y: np.ndarray, yhat: np.ndarray) -> np.ndarray:
        return _core.cross_entropy(*self._target(y, yhat, "forward")[::-1])

    def backward(self, y: np.ndarray, yhat: np.ndarray) -> np.ndarray:
        return _core.cross_entropy_backward(*self._target(y, yhat, "backward")[::-1])


class CrossEntropyCriterion(_ClassLoss):
    """``LogSoftMax`` followed by ``NLLLoss``, on logits (the stable form of softmax + CE).

    The two steps run one after the other on the ``log_softmax`` kernel; the
    gradient is chained through them. Gives the values of ``CELogSoftMax``.

    Backward: ``∂L/∂yhat = softmax(yhat) Σ_j y_j - y`` (NLL's ``-y`` through
    log-softmax's backward).

    torch counterpart: ``F.nll_loss(F.log_softmax(yhat, -1), y, reduction="none")``.

    Shape: ``yhat``: ``(N, k)`` logits; ``y``: one-hot ``(N, k)`` or indices ``(N,)``;
    forward ``(N,)``.

    Example:
        >>> CrossEntropyCriterion().forward(np.array([1]), np.zeros((1, 4))).round(4)
        array([1.3863])
    """

    def __init__(self) -> None:
        self.nll = NLLLoss()

    def forward(self, y: np.ndarray, yhat: np.ndarray) -> np.ndarray:
        y, logits = self._classes(y, yhat, "forward")
        return self.nll.forward(y, _core.log_softmax(logits))

    def backward(self, y: np.ndarray, yhat: np.ndarray) -> np.ndarray:
        y, logits = self._classes(y, yhat, "backward")
        logp = _core.log_softmax(logits)
        return _core.log_softmax_backward(logp, self.nll.backward(y, logp))


class HingeLoss(_ClassLoss):
    """Hinge loss, binary or multi-class.

    - Binary: ``y`` in {-1, +1} with the shape of ``yhat`` (``(N,)`` or ``(N, d)``):
      ``sum max(0, margin - y yhat)`` per sample.
    - Multi-class (``yhat (N, k)``, ``y`` one-hot ``(N, k)`` or indices ``(N,)``):
      ``sum_{j != c} max(0, margin - yhat_c + yhat_j) / k``, torch's ``MultiMarginLoss``.

    Args:
        margin: the margin (default 1).

    torch counterpart: ``nn.MultiMarginLoss(margin=margin, reduction="none")`` (multi-class);
    ``torch.relu(margin - y * yhat).sum(1)`` (binary).

    Example:
        >>> HingeLoss().forward(np.array([1.0, -1.0]), np.array([0.5, -2.0]))
        array([0.5, 0. ])
    """

    def __init__(self, margin: float = 1.0) -> None:
        if isinstance(margin, bool) or not isinstance(margin, (int, float, np.number)):
            raise TypeError(f"HingeLoss: margin must be a real number, got {margin!r}")
        if not np.isfinite(margin) or margin < 0:
            raise ValueError(f"HingeLoss: margin must be a finite number >= 0, got {margin}")
        self.margin = float(margin)

    def _binary(self, y: np.ndarray, yhat: np.ndarray) -> bool:
        y_arr, yhat_arr = np.asarray(y), np.asarray(yhat)
        if y_arr.shape == yhat_arr.shape and np.all(np.abs(y_arr) == 1):
            return True
        if yhat_arr.ndim == 2 and yhat_arr.shape[1] >= 2:
            return False
        raise ValueError(
            f"HingeLoss: binary labels must be -1 or +1 with the shape of yhat "
            f"{fmt_shape(yhat_arr.shape)}; got shape {fmt_shape(y_arr.shape)}, values "
            f"{np.unique(y_arr)[:5]!r}"
        )

    def _multi_terms(self, y: np.ndarray, yhat: np.ndarray, op: str):
        y1h, s = self._classes(y, yhat, op)
        true = (s * y1h).sum(axis=1, keepdims=True)
        terms = np.maximum(self.margin - true + s, 0) * (1 - y1h)
        return y1h, terms, s.shape[1]

    def forward(self, y: np.ndarray, yhat: np.ndarray) -> np.ndarray:
        if self._binary(y, yhat):
            y, yhat = self._pair(y, yhat, "forward")
            return _per_sample(np.maximum(self.margin - y * yhat, 0))
        _, terms, k = self._multi_terms(y, yhat, "forward")
        return terms.sum(axis=1) / k

    def backward(self, y: np.ndarray, yhat: np.ndarray) -> np.ndarray:
        if self._binary(y, yhat):
            y, yhat = self._pair(y, yhat, "backward")
            return -y * (self.margin - y * yhat > 0)
        y1h, terms, k = self._multi_terms(y, yhat, "backward")
        active = (terms > 0).astype(terms.dtype)
        return (active - y1h * active.sum(axis=1, keepdims=True)) / k

    def __repr__(self) -> str:
        return f"HingeLoss(margin={self.margin})"
