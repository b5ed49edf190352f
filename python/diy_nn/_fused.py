"""Fused training path of ``Sequential``: a chain of ``Linear`` layers, each
followed by at most one ``TanH``/``Sigmoid``/``ReLU``, runs forward and
backward in one Rust call per direction (``_core.dense_forward`` /
``_core.dense_backward``).

It is an implementation detail: the results are those of the layers run one
by one (the same formulas; float32 activations within a few ulp), the
gradients land in each ``Linear``'s own ``_gradient``/``_grad_bias`` arrays,
and anything the chain cannot take (another layer type, mixed dtypes, an
input of the wrong shape) goes through the layer-by-layer path, which also
raises the usual errors.

``train_step`` goes further for the optimizers' plain SGD: forward, loss,
its gradient, backward and the update in one call (``_core.DenseTrainer``,
whose buffers are kept between steps), for the losses in ``_LOSS_CODES``.

``ConvPool`` does the same for a ``Conv1D``/``Conv2D`` followed by the max
pooling of its output (``_core.conv2d_maxpool`` and its backward): the
convolution's output is never written out whole, only a few samples at a
time in a buffer that stays in cache.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from . import _core
from ._validation import _CASTABLE_KINDS
from .activation import ReLU, Sigmoid, TanH
from .conv import Conv1D, Conv2D
from .linear import Linear
from .loss import BCELoss, CELogSoftMax, CrossEntropyCriterion, Loss, MAELoss, MSELoss
from .module import Module, params_version
from .pooling import MaxPool1D, MaxPool2D

__all__ = ["DenseChain", "ConvPool"]

# Activation codes of the kernels: 0 identity, 1 tanh, 2 sigmoid, 3 ReLU.
_CODES: dict[type, int] = {TanH: 1, Sigmoid: 2, ReLU: 3}
# Loss codes of ``DenseTrainer.step``; the last two take class indices too.
_LOSS_CODES: dict[type, int] = {
    MSELoss: 0,
    MAELoss: 1,
    BCELoss: 2,
    CELogSoftMax: 3,
    CrossEntropyCriterion: 4,
}


class DenseChain:
    """The ``Linear`` layers of a flat list of modules and the activation after each.

    Build it with ``DenseChain.of(layers)``, which returns None when the list
    is not such a chain.
    """

    def __init__(self, linears: list[Linear], codes: list[int]) -> None:
        self.linears = linears
        self.codes = codes
        self.trainer = _core.DenseTrainer()
        # (params_version(), weights, biases, weight grads, bias grads), or None
        # for mixed dtypes, rebuilt when a parameter or gradient is reassigned.
        self._arrays: tuple[int, tuple[list, ...] | None] | None = None

    @classmethod
    def of(cls, layers: Sequence[Module]) -> DenseChain | None:
        linears: list[Linear] = []
        codes: list[int] = []
        for layer in layers:
            kind = type(layer)
            if kind is Linear:
                linears.append(layer)  # type: ignore[arg-type]
                codes.append(0)
            elif kind in _CODES and linears and codes[-1] == 0:
                codes[-1] = _CODES[kind]
            else:
                return None
        return cls(linears, codes) if linears else None

    def input(self, X: object) -> np.ndarray | None:
        """``X`` in the parameters' dtype if the chain can take it, else None."""
        first = self.linears[0]
        dtype = first._parameters.dtype
        for layer in self.linears:
            if layer._parameters.dtype != dtype or (
                layer._bias is not None and layer._bias.dtype != dtype
            ):
                return None
        return _cast(X, first._parameters)

    def forward(self, x: np.ndarray) -> list[np.ndarray]:
        """Every layer's output (after its activation) for ``x`` from ``input()``."""
        return _core.dense_forward(
            x,
            [layer._parameters for layer in self.linears],
            [layer._bias for layer in self.linears],
            self.codes,
        )

    def arrays(self) -> tuple[list, ...] | None:
        """Weights, biases, gradients and bias gradients (created if missing);
        None when the layers do not share one dtype."""
        if self._arrays is None or self._arrays[0] != params_version():
            for layer in self.linears:
                if not _grads_fit(layer):
                    layer.zero_grad()
            dtype = self.linears[0]._parameters.dtype
            same = all(
                a is None or a.dtype == dtype
                for layer in self.linears
                for a in (layer._parameters, layer._bias, layer._gradient, layer._grad_bias)
            )
            lists = (
                [layer._parameters for layer in self.linears],
                [layer._bias for layer in self.linears],
                [layer._gradient for layer in self.linears],
                [layer._grad_bias if layer._bias is not None else None for layer in self.linears],
            )
            self._arrays = (params_version(), lists if same else None)
        return self._arrays[1]

    def train_step(self, X: np.ndarray, Y: np.ndarray, loss: Loss, lr: float) -> float | None:
        """One plain SGD step (``p -= lr * grad``) on the batch ``(X, Y)`` for
        ``loss``, in one call; returns the mean cost, or None when the step
        does not fit the fused path (the general one then runs, and raises)."""
        code = _LOSS_CODES.get(type(loss))
        arrays = self.arrays() if code is not None else None
        # ``arrays()`` checked that every parameter has the first weight's dtype.
        x = _cast(X, arrays[0][0]) if arrays is not None else None
        if code is None or arrays is None or x is None:
            return None
        k = arrays[0][-1].shape[1]
        if code >= 3 and Y.ndim == 1 and Y.dtype.kind in "iu":
            target = Y.astype(np.int64, copy=False)
        elif Y.shape == (len(x), k) and Y.dtype.kind in _CASTABLE_KINDS:
            target = Y if Y.dtype == x.dtype else Y.astype(x.dtype)
        else:
            return None
        try:
            weights, biases, grads, grad_biases = arrays
            return self.trainer.step(
                x, target, weights, biases, self.codes, grads, grad_biases, code, lr
            )
        except ValueError:  # e.g. a class index out of range, checked before any write
            return None

    def zero_grad(self) -> None:
        """Zeroes every layer's gradients in place (the layer's own method if one does not fit)."""
        for layer in self.linears:
            if not _grads_fit(layer):
                layer.zero_grad()
            else:
                layer._gradient.fill(0)
                if layer._bias is not None:
                    layer._grad_bias.fill(0)

    def backward(
        self, x: np.ndarray, outputs: list[np.ndarray], delta: object, input_delta: bool
    ) -> np.ndarray | None:
        """Adds the gradients into the layers; returns d loss / d x if ``input_delta``."""
        for layer in self.linears:
            if not _grads_fit(layer):
                layer.zero_grad()
        d = delta if isinstance(delta, np.ndarray) else np.asarray(delta)
        if d.dtype != x.dtype:
            d = d.astype(x.dtype)
        return _core.dense_backward(
            x,
            outputs,
            [layer._parameters for layer in self.linears],
            [layer._bias for layer in self.linears],
            self.codes,
            [layer._gradient for layer in self.linears],
            [layer._grad_bias if layer._bias is not None else None for layer in self.linears],
            d,
            input_delta,
        )


class ConvPool:
    """A convolution and the max pooling of its output, one Rust call per direction.

    Build it with ``ConvPool.of(layers)``, which returns None unless ``layers``
    is ``[Conv1D, MaxPool1D]`` or ``[Conv2D, MaxPool2D]``. It has
    ``DenseChain``'s interface (``input``, ``forward``, ``backward``) so that
    ``Sequential`` runs either kind of fused run the same way.
    """

    _PAIRS: dict[type, type] = {Conv1D: MaxPool1D, Conv2D: MaxPool2D}

    def __init__(self, conv: Conv1D | Conv2D, pool: MaxPool1D | MaxPool2D) -> None:
        self.conv, self.pool = conv, pool
        name = "conv2d" if isinstance(conv, Conv2D) else "conv1d"
        self._forward = getattr(_core, name + "_maxpool")
        self._backward = getattr(_core, name + "_maxpool_backward")

    @classmethod
    def of(cls, layers: Sequence[Module]) -> ConvPool | None:
        if len(layers) != 2 or cls._PAIRS.get(type(layers[0])) is not type(layers[1]):
            return None
        return cls(layers[0], layers[1])  # type: ignore[arg-type]

    def input(self, X: object) -> np.ndarray | None:
        """``X`` in the convolution's dtype if the pair can take it, else None
        (then the layers run one by one, and raise their usual errors)."""
        conv, pool = self.conv, self.pool
        dtype = conv._parameters.dtype
        if conv._bias is not None and conv._bias.dtype != dtype:
            return None
        x = X if isinstance(X, np.ndarray) else np.asarray(X)
        if x.ndim != conv._nd + 2 or x.shape[-1] != conv.chan_in:
            return None
        if x.dtype.kind not in _CASTABLE_KINDS:
            return None
        spatial = conv._out_shape(x.shape)[1:-1]
        if pool.k_size**conv._nd > 256:  # the kernel keeps each maximum's offset in a byte
            return None
        if any(n < pool.k_size for n in spatial) or any(
            n + 2 * conv.padding < conv.k_size for n in x.shape[1:-1]
        ):
            return None
        return x if x.dtype == dtype else x.astype(dtype)

    def forward(self, x: np.ndarray) -> list[np.ndarray]:
        """``[offsets, pooled output]`` for ``x`` from ``input()``: what
        ``backward`` needs (each maximum's offset in its window), then the output."""
        conv, pool = self.conv, self.pool
        y, argmax = self._forward(
            x, conv._parameters, conv._bias, conv.stride, conv.padding, pool.k_size, pool.stride
        )
        return [argmax, y]

    def backward(
        self, x: np.ndarray, outputs: list[np.ndarray], delta: object, input_delta: bool
    ) -> np.ndarray | None:
        """Adds the convolution's gradients; returns d loss / d x if ``input_delta``."""
        conv, pool = self.conv, self.pool
        if not _grads_fit(conv):
            conv.zero_grad()
        d = delta if isinstance(delta, np.ndarray) else np.asarray(delta)
        if d.dtype != x.dtype:
            d = d.astype(x.dtype)
        grad_b = conv._grad_bias if conv._bias is not None else None
        return self._backward(
            x,
            conv._parameters,
            d,
            outputs[0],
            conv._gradient,
            grad_b,
            conv.stride,
            conv.padding,
            pool.k_size,
            pool.stride,
            input_delta,
        )


def _cast(X: object, weight: np.ndarray) -> np.ndarray | None:
    """``X`` as a 2-D input of ``weight``'s layer in its dtype, or None if it cannot be."""
    x = X if isinstance(X, np.ndarray) else np.asarray(X)
    if x.ndim != 2 or x.shape[1] != weight.shape[0] or x.dtype.kind not in _CASTABLE_KINDS:
        return None
    return x if x.dtype == weight.dtype else x.astype(weight.dtype)


def _grads_fit(layer: Module) -> bool:
    """Whether the layer's gradient arrays exist with its parameters' shapes and dtype."""
    grad, bgrad = layer._gradient, layer._grad_bias
    param, bias = layer._parameters, layer._bias
    return not (
        grad is None
        or grad.shape != param.shape
        or grad.dtype != param.dtype
        or (
            bias is not None
            and (bgrad is None or bgrad.shape != bias.shape or bgrad.dtype != bias.dtype)
        )
    )
