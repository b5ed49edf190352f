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
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from . import _core
from ._validation import _CASTABLE_KINDS
from .activation import ReLU, Sigmoid, TanH
from .linear import Linear
from .module import Module

__all__ = ["DenseChain"]

# Activation codes of the kernels: 0 identity, 1 tanh, 2 sigmoid, 3 ReLU.
_CODES: dict[type, int] = {TanH: 1, Sigmoid: 2, ReLU: 3}


class DenseChain:
    """The ``Linear`` layers of a flat list of modules and the activation after each.

    Build it with ``DenseChain.of(layers)``, which returns None when the list
    is not such a chain.
    """

    def __init__(self, linears: list[Linear], codes: list[int]) -> None:
        self.linears = linears
        self.codes = codes

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
        x = X if isinstance(X, np.ndarray) else np.asarray(X)
        if x.ndim != 2 or x.shape[1] != first._parameters.shape[0]:
            return None
        if x.dtype.kind not in _CASTABLE_KINDS:
            return None
        return x if x.dtype == dtype else x.astype(dtype)

    def forward(self, x: np.ndarray) -> list[np.ndarray]:
        """Every layer's output (after its activation) for ``x`` from ``input()``."""
        return _core.dense_forward(
            x,
            [layer._parameters for layer in self.linears],
            [layer._bias for layer in self.linears],
            self.codes,
        )

    def zero_grad(self) -> None:
        """Zeroes every layer's gradients in place (the layer's own method if one does not fit)."""
        for layer in self.linears:
            grad, bgrad = layer._gradient, layer._grad_bias
            param, bias = layer._parameters, layer._bias
            if (
                grad is None
                or grad.shape != param.shape
                or grad.dtype != param.dtype
                or (bias is not None and (bgrad is None or bgrad.shape != bias.shape))
            ):
                layer.zero_grad()
            else:
                grad.fill(0)
                if bias is not None:
                    bgrad.fill(0)

    def backward(
        self, x: np.ndarray, outputs: list[np.ndarray], delta: object, input_delta: bool
    ) -> np.ndarray | None:
        """Adds the gradients into the layers; returns d loss / d x if ``input_delta``."""
        for layer in self.linears:
            grad, bgrad = layer._gradient, layer._grad_bias
            param, bias = layer._parameters, layer._bias
            if (
                grad is None
                or grad.shape != param.shape
                or grad.dtype != param.dtype
                or (bias is not None and (bgrad is None or bgrad.shape != bias.shape))
            ):
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
