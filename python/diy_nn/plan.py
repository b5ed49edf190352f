"""The planner of ``Sequential``: ``plan(layers)`` turns its layers into steps.

A step is one layer run as itself (``LayerStep``), or a run of layers that one
Rust call per direction computes (``DenseRun``: ``Linear`` layers each followed
by at most one elementwise activation the kernels take; ``ConvPool``: a ``Conv1D``/``Conv2D``
followed by the max pooling of its output, with at most one non-decreasing
activation between them). Every step has the same interface:

- ``forward(x, private, exposed) -> (y, kept)``: ``kept`` is what its backward
  needs, owned by the caller (no state in the step). ``private``: nobody else
  holds ``x`` (else the step copies what it keeps of it); ``exposed``: ``y`` goes
  to the user (who may change it in place), so nothing kept aliases it.
- ``backward(kept, delta, grads, input_delta)``: adds d loss / d parameters to
  the gradients if ``grads``; returns d loss / d x if ``input_delta`` (else None).

A fused run computes exactly what its layers compute one by one (the same
kernels); an input it cannot take (another shape, mixed dtypes) goes through
its layers one by one, which raise their usual errors. Only layers of exactly
these classes, without a patched course method, and used once in the network,
are fused; any other layer runs as itself.

Conv → activation → max pool runs as conv → max pool → activation: for a
non-decreasing elementwise ``f``, the maximum of ``f`` over a window is ``f`` of
the window's maximum, ``maxpool(f(c)) = f(maxpool(c))``, so ``ConvPool``
applies ``f`` (the activation layer's own ``forward``/``backward_delta``) to the
pooled output, a quarter of the convolution's for a 2×2 pool. The gradient is
the same too: d loss / d pooled ``z`` is ``f'(z) δ``, which the pool's backward
sends to the window's maximum, where ``f'`` is taken in both orders. Ties: a
window whose values ``f`` maps to one value (ReLU's zeros) sends its gradient
to another position than the layer-by-layer order, but there ``f'`` is 0 (ReLU,
and saturated TanH/Sigmoid, whose derivative comes from the rounded output) or
the same value at positions the pool cannot tell apart (the convolution's own
ties go to the first position in both orders). NaN: the layer-by-layer order
multiplies the zero gradient of the outputs the pool drops by ``f'(NaN)``
(NaN for TanH, Sigmoid, LeakyReLU), which the fused order never computes; so
an input, weight or bias holding NaN or inf (its sum is not finite: one pass)
runs through the layers one by one, and gets torch's NaN. Not with ReLU: its
derivative passes δ at NaN (0 at the outputs the pool drops) and keeps NaN
where it is, so both orders send δ to the same NaN. The activations fused so:
``ReLU``, ``TanH``, ``Sigmoid`` and ``LeakyReLU`` with ``negative_slope >= 0``
(a negative slope makes it decreasing below 0). ReLU and LeakyReLU are
non-decreasing as computed too (the same result, bit for bit); TanH and Sigmoid
are in exact arithmetic, and their float32 roundings (numpy's) step down by one
ulp between a few neighbouring floats (tanh: 1, sigmoid: about 4,800 of the 1.1e9
floats in (0, 20), on an AVX-512 Xeon): a window holding such a pair gives an
output one ulp apart and its gradient at the other of the two. ``Softplus`` is not: its
switch to ``x`` above ``threshold / beta`` steps down by
``log1p(exp(-threshold)) / beta`` (2e-9 for the defaults), so it is not
non-decreasing and the two orders can differ.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from . import _core
from ._validation import _CASTABLE_KINDS, as_float_array
from .activation import LeakyReLU, ReLU, Sigmoid, Softplus, TanH
from .conv import Conv1D, Conv2D
from .linear import Linear
from .loss import BCELoss, CELogSoftMax, CrossEntropyCriterion, Loss, MAELoss, MSELoss
from .module import COURSE_METHODS, Module
from .pooling import MaxPool1D, MaxPool2D

__all__ = ["plan", "Plan", "LayerStep", "DenseRun", "ConvPool", "Step"]

# The dense kernels' activation after each Linear (``_core.dense_forward``...).
_IDENTITY = _core.Activation.Identity
_CODES: dict[type, _core.Activation] = {
    TanH: _core.Activation.TanH,
    Sigmoid: _core.Activation.Sigmoid,
    ReLU: _core.Activation.ReLU,
}
# The smallest Softplus threshold whose derivative the kernels read exactly, to
# rounding, from the output: the error is at most exp(-threshold) (activation.rs).
_SOFTPLUS_EXACT = {np.dtype(np.float32): 17.0, np.dtype(np.float64): 37.0}


def _code(layer: Module) -> Any:
    """The dense kernels' activation for ``layer``, or None if they cannot run it."""
    if not unpatched(layer):
        return None
    if type(layer) is LeakyReLU and layer.negative_slope >= 0:  # its rule then reads y too
        return layer.kernel
    if type(layer) is Softplus and layer.threshold >= min(_SOFTPLUS_EXACT.values()):
        return layer.kernel
    return _CODES.get(type(layer))


# The losses of ``_core.DenseTrainer.step``; the cross-entropies take class indices too.
_LOSS_CODES: dict[type, _core.LossKind] = {
    MSELoss: _core.LossKind.MSE,
    MAELoss: _core.LossKind.MAE,
    BCELoss: _core.LossKind.BCE,
    CELogSoftMax: _core.LossKind.CrossEntropy,
    CrossEntropyCriterion: _core.LossKind.LogSoftmaxNLL,
}
_INDEX_LOSSES = (_core.LossKind.CrossEntropy, _core.LossKind.LogSoftmaxNLL)
# Per loss class: its code, and whether it also takes class indices.
_LOSS_KINDS = {cls: (code, code in _INDEX_LOSSES) for cls, code in _LOSS_CODES.items()}


def unpatched(module: object) -> bool:
    """Whether no course method is replaced on the instance (``lin.forward = stub``)."""
    return COURSE_METHODS.isdisjoint(module.__dict__)


def _is(layer: Module, cls: type) -> bool:
    """``layer`` is exactly a ``cls`` with its class's methods: the kernels may stand in."""
    return type(layer) is cls and unpatched(layer)


class LayerStep:
    """One layer run as itself: its own ``forward``, ``backward``,
    ``backward_update_gradient`` or ``backward_delta``, on the input it got."""

    def __init__(self, layer: Module) -> None:
        self.layer = layer
        self.layers = [layer]

    def forward(self, x: Any, private: bool, exposed: bool) -> tuple[Any, Any]:
        if not private and isinstance(x, np.ndarray):
            x = x.copy()
        y = self.layer.forward(x)
        if exposed and isinstance(y, np.ndarray) and np.may_share_memory(y, x):
            y = y.copy()  # a view of the kept input (Flatten): the user's own array
        return y, x

    def backward(self, kept: Any, delta: Any, grads: bool, input_delta: bool) -> Any:
        layer = self.layer
        if grads and input_delta:
            return layer.backward(kept, delta)
        if grads:
            layer.backward_update_gradient(kept, delta)
            return None
        return layer.backward_delta(kept, delta)

    def __repr__(self) -> str:
        return f"LayerStep({self.layer!r})"


class _ByLayer(list):
    """What a fused run keeps when it ran its layers one by one: their inputs."""


class _Fused:
    """A run of layers with one kernel call per direction (subclasses: ``_input``,
    ``_forward``, ``_backward``), or its layers one by one for an input the
    kernel cannot take."""

    layers: list[Module]

    def _input(self, X: Any) -> np.ndarray | None:
        raise NotImplementedError

    def _forward(self, x: np.ndarray, exposed: bool) -> tuple[np.ndarray, Any]:
        raise NotImplementedError

    def _backward(self, kept: Any, delta: np.ndarray, grads: bool, input_delta: bool) -> Any:
        raise NotImplementedError

    def forward(self, X: Any, private: bool, exposed: bool) -> tuple[Any, Any]:
        x = self._input(X)
        if x is None:
            kept = _ByLayer()
            for i, layer in enumerate(self.layers):
                step = LayerStep(layer)
                X, k = step.forward(X, private or i > 0, exposed and i == len(self.layers) - 1)
                kept.append(k)
            return X, kept
        if x is X and not private:
            x = x.copy()  # the caller may change X in place before the backward pass
        return self._forward(x, exposed)

    def backward(self, kept: Any, delta: Any, grads: bool, input_delta: bool) -> Any:
        if type(kept) is _ByLayer:
            for i in reversed(range(len(self.layers))):
                step = LayerStep(self.layers[i])
                delta = step.backward(kept[i], delta, grads, input_delta or i > 0)
            return delta
        name = f"{type(self.layers[-1]).__name__}.backward: delta"
        d = as_float_array(delta, name, kept[0].dtype)
        return self._backward(kept, d, grads, input_delta)

    def __repr__(self) -> str:
        inner = ", ".join(repr(layer) for layer in self.layers)
        return f"{type(self).__name__}({inner})"


class DenseRun(_Fused):
    """``Linear`` layers each followed by at most one ``TanH``/``Sigmoid``/``ReLU``,
    ``LeakyReLU`` (``negative_slope >= 0``) or ``Softplus`` (a large enough ``threshold``).

    Forward ``y_i = act_i(y_{i-1} W_i + b_i)`` in one ``_core.dense_forward``
    call; backward (``_core.dense_backward``), from ``δ`` = d loss / d y_i:
    ``δ' = δ ⊙ act_i'``, ``∂L/∂W_i = y_{i-1}ᵀ δ'``, ``∂L/∂b_i = Σₙ δ'``,
    ``δ_{i-1} = δ' W_iᵀ``. It keeps the input and every ``y_i``. ``train_step``
    runs a whole plain-SGD step in one call (``_core.DenseTrainer``).
    """

    def __init__(self, layers: Sequence[Module], linears: list[Linear], codes: list[Any]) -> None:
        self.layers = list(layers)
        self.linears = linears
        self.codes = codes
        self._trainer: Any = None
        # The smallest threshold of its Softplus layers (their exactness depends on the dtype).
        softplus = [c for c in codes if isinstance(c, tuple) and c[0] == _core.Activation.Softplus]
        self._softplus = min((c[2] for c in softplus), default=np.inf)
        # The arrays given to the trainer in the last step: per layer, then as
        # the trainer's four lists; reused while every layer still holds those
        # same arrays (compared by identity, so a reassigned one is seen).
        self._held: list[tuple[Any, ...]] = []
        self._lists: tuple[list, list, list, list] | None = None

    @classmethod
    def of(cls, layers: Sequence[Module]) -> DenseRun | None:
        """The run of ``layers``, or None when they are not such a run."""
        linears: list[Linear] = []
        codes: list[Any] = []  # an Activation, or a tuple with its parameters
        for layer in layers:
            if _is(layer, Linear):
                linears.append(layer)  # type: ignore[arg-type]
                codes.append(_IDENTITY)
            elif codes and codes[-1] == _IDENTITY and _code(layer) is not None:
                codes[-1] = _code(layer)
            else:
                return None
        return cls(layers, linears, codes) if linears else None

    def _input(self, X: Any) -> np.ndarray | None:
        """``X`` in the parameters' dtype if the run can take it, else None."""
        dtype = self.linears[0]._parameters.dtype
        if not self._softplus_exact(dtype):
            return None
        for layer in self.linears:
            if layer._parameters.dtype != dtype or (
                layer._bias is not None and layer._bias.dtype != dtype
            ):
                return None
        return _cast(X, self.linears[0]._parameters)

    def _softplus_exact(self, dtype: np.dtype) -> bool:
        """Whether the kernels read every Softplus derivative exactly in ``dtype``."""
        return self._softplus >= _SOFTPLUS_EXACT.get(dtype, np.inf)

    def _forward(self, x: np.ndarray, exposed: bool) -> tuple[np.ndarray, Any]:
        outputs = _core.dense_forward(
            x,
            [layer._parameters for layer in self.linears],
            [layer._bias for layer in self.linears],
            self.codes,
        )
        y = outputs[-1]
        if exposed:
            outputs[-1] = y.copy()  # the backward pass reads it; the user may change y
        return y, (x, outputs)

    def _backward(self, kept: Any, delta: np.ndarray, grads: bool, input_delta: bool) -> Any:
        x, outputs = kept
        if grads:
            gws, gbs = [], []
            for layer in self.linears:
                _fit_grads(layer)
                gws.append(layer._gradient)
                gbs.append(layer._grad_bias if layer._bias is not None else None)
        else:  # d input only: the gradients go to scratch arrays
            gws = [np.zeros_like(m._parameters) for m in self.linears]
            gbs = [None if m._bias is None else np.zeros_like(m._bias) for m in self.linears]
        return _core.dense_backward(
            x,
            outputs,
            [layer._parameters for layer in self.linears],
            [layer._bias for layer in self.linears],
            self.codes,
            gws,
            gbs,
            delta,
            input_delta,
        )

    def train_step(self, X: Any, Y: Any, loss: Loss, lr: float | None) -> float | None:
        """One plain SGD step (``p -= lr * grad``; ``lr`` None: the gradients only)
        on ``(X, Y)`` for ``loss`` in one call; the mean cost, or None when the step
        does not fit the kernel (the general path then runs, and raises its usual errors)."""
        kind = _LOSS_KINDS.get(type(loss))
        if kind is None or not COURSE_LOSS.isdisjoint(loss.__dict__):
            return None
        arrays = self._step_arrays()  # every parameter and gradient of one dtype
        if arrays is None:
            return None
        ws = arrays[0]
        if self._softplus < np.inf and not self._softplus_exact(ws[0].dtype):
            return None
        x = _cast(X, ws[0])
        if x is None:
            return None
        code, takes_indices = kind
        if takes_indices and Y.ndim == 1 and Y.dtype.kind in "iu":
            target = Y.astype(np.int64, copy=False)
        elif Y.shape == (len(x), ws[-1].shape[1]) and Y.dtype.kind in _CASTABLE_KINDS:
            target = Y if Y.dtype is x.dtype or Y.dtype == x.dtype else Y.astype(x.dtype)
        else:
            return None
        trainer = self._trainer
        if trainer is None:
            trainer = self._trainer = _core.DenseTrainer()
        try:
            return trainer.step(
                x, target, ws, arrays[1], self.codes, arrays[2], arrays[3], code, lr
            )
        except ValueError:  # e.g. a class index out of range, checked before any write
            return None

    def train_step_output(self) -> np.ndarray | None:
        """A copy of the output in the last ``train_step`` that ran, or None."""
        return None if self._trainer is None else self._trainer.output()

    def _step_arrays(self) -> tuple[list, list, list, list] | None:
        """Weights, biases, weight and bias gradients (created where missing);
        None when they do not share one dtype."""
        for layer, w, b, gw, gb in self._held:
            if (
                layer._parameters is not w
                or layer._bias is not b
                or layer._gradient is not gw
                or layer._grad_bias is not gb
            ):
                break
        else:
            if self._held:
                return self._lists
        for layer in self.linears:
            _fit_grads(layer)
        held = [(m, m._parameters, m._bias, m._gradient, m._grad_bias) for m in self.linears]
        dtype = held[0][1].dtype
        if any(a is not None and a.dtype != dtype for entry in held for a in entry[1:]):
            self._held, self._lists = [], None
            return None
        self._held = held
        self._lists = (
            [w for _, w, _, _, _ in held],
            [b for _, _, b, _, _ in held],
            [gw for _, _, _, gw, _ in held],
            [gb if b is not None else None for _, _, b, _, gb in held],
        )
        return self._lists


COURSE_LOSS = frozenset({"forward", "backward"})


def _monotone(layer: Module) -> bool:
    """``layer`` is a non-decreasing elementwise activation that commutes with max
    pooling (see the module's docstring), with its class's methods."""
    if type(layer) is LeakyReLU:
        return unpatched(layer) and layer.negative_slope >= 0
    return type(layer) in (ReLU, TanH, Sigmoid) and unpatched(layer)


class ConvPool(_Fused):
    """A convolution and the max pooling of its output, one Rust call per direction;
    with an activation between them, that activation on the pooled output.

    Forward: ``y = maxpool(conv(x))`` without writing the convolution's whole
    output (``_core.conv2d_maxpool``); it keeps the input and each maximum's
    position (``max_pool2d``'s argmax). Backward: ``δ`` goes to the maximum of each window
    (``δ_conv``), then ``∂L/∂W = Σ x-patchᵀ δ_conv``, ``∂L/∂b = Σ δ_conv`` and
    ``∂L/∂x`` is the transposed convolution of ``δ_conv`` (``conv2d_maxpool_backward``).
    With an activation ``f`` (``[conv, f, pool]``): ``y = f(maxpool(conv(x)))``; it
    also keeps ``z = maxpool(conv(x))``, and ``δ`` becomes ``f'(z) δ`` first.
    """

    _PAIRS: dict[type, type] = {Conv1D: MaxPool1D, Conv2D: MaxPool2D}

    def __init__(
        self, conv: Conv1D | Conv2D, pool: MaxPool1D | MaxPool2D, act: Module | None = None
    ) -> None:
        self.conv, self.pool, self.act = conv, pool, act
        self.layers = [conv, pool] if act is None else [conv, act, pool]
        # ReLU needs no finiteness check: both orders agree on NaN (see above)
        self._check = act is not None and type(act) is not ReLU
        name = "conv2d" if isinstance(conv, Conv2D) else "conv1d"
        self._kernel = getattr(_core, name + "_maxpool")
        self._kernel_backward = getattr(_core, name + "_maxpool_backward")

    @classmethod
    def of(cls, layers: Sequence[Module]) -> ConvPool | None:
        """``[Conv1D, MaxPool1D]`` or ``[Conv2D, MaxPool2D]``, or either with a
        non-decreasing activation between the two, else None."""
        if len(layers) not in (2, 3) or not all(unpatched(m) for m in layers):
            return None
        conv, pool = layers[0], layers[-1]
        act = layers[1] if len(layers) == 3 else None
        if cls._PAIRS.get(type(conv)) is not type(pool) or not (act is None or _monotone(act)):
            return None
        return cls(conv, pool, act)  # type: ignore[arg-type]

    def _input(self, X: Any) -> np.ndarray | None:
        """``X`` in the convolution's dtype if the pair can take it, else None."""
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
        if any(n < pool.k_size for n in spatial) or any(
            n + 2 * conv.padding < conv.k_size for n in x.shape[1:-1]
        ):
            return None
        x = x if x.dtype == dtype else x.astype(dtype)
        if self._check and not all(
            a is None or np.isfinite(a.sum()) for a in (x, conv._parameters, conv._bias)
        ):
            return None  # NaN or inf (or a sum too large): the layers' order, see above
        return x

    def _forward(self, x: np.ndarray, exposed: bool) -> tuple[np.ndarray, Any]:
        conv, pool = self.conv, self.pool
        z, argmax = self._kernel(
            x, conv._parameters, conv._bias, conv.stride, conv.padding, pool.k_size, pool.stride
        )
        if self.act is None:
            return z, (x, argmax)
        return self.act.forward(z), (x, argmax, z)

    def _backward(self, kept: Any, delta: np.ndarray, grads: bool, input_delta: bool) -> Any:
        x, argmax, conv, pool = kept[0], kept[1], self.conv, self.pool
        if self.act is not None:
            delta = self.act.backward_delta(kept[2], delta)
        if grads:
            _fit_grads(conv)
            gw, gb = conv._gradient, conv._grad_bias if conv._bias is not None else None
        else:
            gw = np.zeros_like(conv._parameters)
            gb = None if conv._bias is None else np.zeros_like(conv._bias)
        return self._kernel_backward(
            x, conv._parameters, delta, argmax, gw, gb, conv.stride, conv.padding,
            pool.k_size, pool.stride, input_delta,
        )  # fmt: skip


Step = LayerStep | DenseRun | ConvPool


class Plan:
    """The steps of a network with what tells when to plan again: the modules
    they stand for (a patched course method adds a key to a module's
    ``__dict__``, so the sizes of those dicts are compared first, cheaply).
    ``fast`` is the one ``DenseRun`` that does a whole training step, or None."""

    def __init__(self, steps: list[Step], modules: list[Module], fast: DenseRun | None) -> None:
        self.steps, self.modules, self.fast = steps, modules, fast
        self._dicts = [m.__dict__ for m in modules]
        self._sizes = list(map(len, self._dicts))
        self._patched = [not unpatched(m) for m in modules]

    def current(self) -> bool:
        """False when a course method was patched (or a patch removed) since."""
        sizes = list(map(len, self._dicts))
        if sizes == self._sizes:
            return True
        if [not unpatched(m) for m in self.modules] != self._patched:
            return False
        self._sizes = sizes
        return True


def plan(layers: Sequence[Module]) -> list[Step]:
    """The steps that run ``layers`` in order: each ``[Conv, MaxPool]`` pair or
    ``[Conv, non-decreasing activation, MaxPool]`` triple a ``ConvPool``, each
    maximal dense run a ``DenseRun``, any other layer (or one used more than once
    in ``layers``) a ``LayerStep``."""
    uses = Counter(id(layer) for layer in layers)
    steps: list[Step] = []
    i = 0
    while i < len(layers):
        pair = None
        for width in (3, 2):
            group = layers[i : i + width]
            if pair is None and len(group) == width and all(uses[id(m)] == 1 for m in group):
                pair = ConvPool.of(group)
        if pair is not None:
            steps.append(pair)
            i += len(pair.layers)
            continue
        j = i
        while j < len(layers) and uses[id(layers[j])] == 1 and DenseRun.of(layers[i : j + 1]):
            j += 1
        if j > i:
            steps.append(DenseRun.of(layers[i:j]))  # type: ignore[arg-type]
            i = j
        else:
            steps.append(LayerStep(layers[i]))
            i += 1
    return steps


def _cast(X: Any, weight: np.ndarray) -> np.ndarray | None:
    """``X`` as a 2-D input of ``weight``'s layer in its dtype, or None if it cannot be."""
    x = X if isinstance(X, np.ndarray) else np.asarray(X)
    if x.ndim != 2 or x.shape[1] != weight.shape[0]:
        return None
    dtype, want = x.dtype, weight.dtype
    if dtype is want:  # the usual case, without numpy's dtype comparison
        return x
    if dtype.kind not in _CASTABLE_KINDS:
        return None
    return x if dtype == want else x.astype(want)


def _fit_grads(layer: Module) -> None:
    """Makes the layer's gradient arrays exist with its parameters' shapes and dtype."""
    grad, bgrad = layer._gradient, layer._grad_bias
    param, bias = layer._parameters, layer._bias
    if (
        grad is None
        or grad.shape != param.shape
        or grad.dtype != param.dtype
        or (
            bias is not None
            and (bgrad is None or bgrad.shape != bias.shape or bgrad.dtype != bias.dtype)
        )
    ):
        layer.zero_grad()
