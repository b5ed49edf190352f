"""Optimizers: the course's ``Optim``, an abstract ``Optimizer``, ``SGD``, ``Adam``,
``AdamW`` and ``RMSprop``. The training helpers (``fit``, ``train``, ``evaluate``,
``predict``, ``predict_proba``, ``score``, the callbacks) live in ``training.py`` and
are importable from here too.

The base ``step(batch_x, batch_y)`` runs forward, loss, backward and calls the
subclass's ``_step(params)`` with every ``(name, parameter, gradient)`` of the
network; parameters are updated in place. Gradients are those of the *summed*
per-sample loss (the course's convention), so learning rates are per sample.

Example:
    >>> opt = SGD(net, MSELoss(), eps=1e-2, momentum=0.9)  # or Adam(net, loss, eps=1e-3),
    >>> # AdamW(net, loss, weight_decay=1e-2), RMSprop(net, loss, eps=1e-2, momentum=0.9)
    >>> opt.step(batch_x, batch_y)  # doctest: +SKIP
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
    "AdamW",
    "RMSprop",
    "Optim",
    "iterate_minibatches",
]

Params = Sequence[tuple[str, np.ndarray, np.ndarray]]


def iterate_minibatches(
    n: int, batch_size: int, shuffle: bool = True, rng: None | int | np.random.Generator = None
):
    """Yields index arrays of at most ``batch_size`` covering ``range(n)`` once."""
    batch_size = check_positive_int(batch_size, "iterate_minibatches: batch_size")
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
        # ``_update``'s slot lists: for one parameter list and buffer keys, per dtype
        # ``[param, grad, *buffers]`` lists, and the parameters it updates on copies.
        self._slots: tuple[Any, tuple[str, ...], list[Any], list[Any]] | None = None

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
        # The net's lock: a forward from another thread waits for the whole step.
        with self.net._guard():
            cost = self._fused_step(bx, by)
            if cost is not None:
                return cost
            yhat = self.last_output = self.net.forward(bx)
            costs = self.loss.forward(by, yhat)
            self.net.zero_grad()
            # The gradients only: d loss / d input of the first layer is not needed.
            self.net.backward_update_gradient(bx, self.loss.backward(by, yhat))
            self._step(self.parameters())
        return float(np.mean(costs))

    def _fused_step(self, bx: np.ndarray, by: np.ndarray) -> float | None:
        """The step through the net's one-call ``train_step`` hook when it has one
        for this batch and loss (else None): plain SGD updates inside it, any other
        rule by ``_step`` on the gradients it wrote."""
        plain = self._plain_sgd()
        cost = self.net.train_step(bx, by, self.loss, self.eps if plain else None)
        if cost is None:
            return None
        self._output_of = self.net.train_step_output
        if not plain:
            self._step(self.parameters())
        return cost

    def _plain_sgd(self) -> bool:
        """Whether the rule is ``p -= eps * grad`` with ``_step`` not replaced."""
        return False

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
            buf = slot[key] = np.zeros(param.shape, param.dtype)
        return buf

    def _update(self, hyper: dict[str, Any], keys: tuple[str, ...], params: Params) -> None:
        """Every parameter updated by the Rust rule of ``hyper`` (``_core.optim_update``:
        one call per dtype) with its state buffers ``keys``. A parameter the kernel
        cannot take as it is (not C-contiguous, a gradient of another layout or
        dtype) is updated through contiguous copies."""
        cached = self._slots
        if cached is None or cached[0] is not params or cached[1] != keys:
            groups: dict[np.dtype, list[list[Any]]] = {}
            staged = []
            for name, param, grad in params:
                slot = [param, grad, *(self._buffer(name, key, param) for key in keys)]
                groups.setdefault(param.dtype, []).append(slot)
                if grad is not None and not _fits(param, grad):
                    staged.append((slot, param, grad))
            cached = self._slots = (params, keys, list(groups.values()), staged)
        if not cached[3]:  # every pair as it is: the kernel calls alone
            for slots in cached[2]:
                _core.optim_update(hyper, slots)
            return
        for slot, param, grad in cached[3]:
            slot[0], slot[1] = np.ascontiguousarray(param), np.ascontiguousarray(grad, param.dtype)
        for slots in cached[2]:
            _core.optim_update(hyper, slots)
        for slot, param, _ in cached[3]:
            if slot[0] is not param:
                param[...] = slot[0]


def _fits(param: np.ndarray, grad: np.ndarray) -> bool:
    """Whether ``_core.optim_update`` takes the pair as it is (with C-order buffers)."""
    return (
        grad.dtype == param.dtype
        and param.flags.c_contiguous
        and param.flags.writeable
        and grad.flags.c_contiguous
    )


def _hyper(
    rule: _core.Rule,
    lr: float,
    mu: float = 0.0,
    wd: float = 0.0,
    b1: float = 0.0,
    b2: float = 0.0,
    eps: float = 0.0,
    t: float = 1.0,
) -> dict[str, Any]:
    """``_core.optim_update``'s hyper-parameters (one dict literal: built every step)."""
    return {"rule": rule, "lr": lr, "mu": mu, "wd": wd, "b1": b1, "b2": b2, "eps": eps, "t": t}


def _check_number(value: object, name: str, low: float, strict: bool = False) -> float:
    """Checks a real hyper-parameter ``> low`` (``strict``) or ``>= low``; returns it as float."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    if not np.isfinite(value) or value < low or (strict and value == low):
        sign = ">" if strict else ">="
        raise ValueError(f"{name} must be a finite number {sign} {low}, got {value}")
    return float(value)


def _check_betas(betas: object, name: str) -> tuple[float, float]:
    """Checks Adam's ``betas``: two real numbers in [0, 1); returns them as floats."""
    items = list(betas) if isinstance(betas, (tuple, list, np.ndarray)) else None
    if items is None or len(items) != 2:
        raise TypeError(f"{name} must be a pair of numbers in [0, 1), got {betas!r}")
    out = []
    for b in items:
        if isinstance(b, bool) or not isinstance(b, (int, float, np.integer, np.floating)):
            raise TypeError(f"{name} must be a pair of real numbers in [0, 1), got {betas!r}")
        if not 0 <= b < 1:  # NaN fails too
            raise ValueError(f"{name} must be two numbers in [0, 1), got {betas!r}")
        out.append(float(b))
    return out[0], out[1]


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
        n_iter = n_iter if n_iter is not None else maxIter
        if self.X is not None:  # the report's form: its loop's arguments are checked now
            from .training import _check_data

            _check_data("SGD", self.X, self.Y)
            batch_size = check_positive_int(batch_size, "SGD: batch_size")
            n_iter = check_positive_int(n_iter, "SGD: maxIter (n_iter), the number of epochs")
        self.batch_size, self.n_iter = batch_size, n_iter
        self.shuffle, self.rng = shuffle, rng

    def _plain_sgd(self) -> bool:
        # no momentum, no decay, ``_step`` not replaced (on the class or the instance)
        if self.weight_decay or self.momentum or type(self)._step is not SGD._step:
            return False
        return "_step" not in self.__dict__

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(eps={self.eps}, momentum={self.momentum}, "
            f"weight_decay={self.weight_decay}, nesterov={self.nesterov})"
        )

    def _step(self, params: Params) -> None:
        rule = _core.Rule.Nesterov if self.nesterov else _core.Rule.Sgd
        hyper = _hyper(rule, self.eps, mu=self.momentum, wd=self.weight_decay)
        self._update(hyper, ("momentum",) if self.momentum else (), params)

    def update(self) -> list[float]:
        """Runs the epochs on the data given to the constructor; returns each epoch's mean loss."""
        if self.X is None or self.Y is None:
            raise ValueError("SGD.update: this SGD holds no data; build it as SGD(net, loss, X, Y)")
        from .training import train

        return train(self, self.X, self.Y, self.batch_size, self.n_iter, self.shuffle, self.rng)


class Adam(Optimizer):
    """Adam (Kingma & Ba), torch's rule, with optional (L2) weight decay.

    Args:
        net, loss: the network and the ``Loss``.
        eps: the learning rate (the course's name; torch's ``lr``), default 1e-3.
        betas: decay rates of the first and second moment estimates.
        epsilon: added to the denominator (torch's ``eps``), default 1e-8.
        weight_decay: L2 penalty coefficient added to the gradient (None: the class's
            default, 0).
    """

    def __init__(
        self,
        net: Module,
        loss: Loss,
        eps: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        epsilon: float = 1e-8,
        weight_decay: float | None = None,
    ) -> None:
        super().__init__(net, loss, eps)
        name = type(self).__name__
        self.betas = _check_betas(betas, f"{name}: betas")
        self.epsilon = _check_number(epsilon, f"{name}: epsilon", low=0.0, strict=True)
        wd = self._default_weight_decay if weight_decay is None else weight_decay
        self.weight_decay = _check_number(wd, f"{name}: weight_decay", low=0.0)
        self.t = 0

    def _step(self, params: Params) -> None:
        self.t += 1
        (b1, b2), rule = self.betas, _core.Rule.AdamW if self._decoupled else _core.Rule.Adam
        hyper = _hyper(rule, self.eps, 0.0, self.weight_decay, b1, b2, self.epsilon, float(self.t))
        self._update(hyper, ("m", "v"), params)

    _decoupled = False  # AdamW's weight decay (True) or an L2 term in the gradient
    _default_weight_decay = 0.0

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(eps={self.eps}, betas={self.betas}, "
            f"epsilon={self.epsilon}, weight_decay={self.weight_decay})"
        )


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter), torch's ``AdamW`` rule.

    Each step first shrinks every parameter, ``p *= 1 - eps * weight_decay``, then
    takes Adam's step on the plain gradient (``Adam``'s ``weight_decay`` instead adds
    ``weight_decay * p`` to the gradient, which the moments then rescale).

    Args:
        net, loss: the network and the ``Loss``.
        eps: the learning rate (torch's ``lr``), default 1e-3.
        betas: decay rates of the first and second moment estimates, in [0, 1).
        epsilon: added to the denominator (torch's ``eps``), default 1e-8.
        weight_decay: the decoupled decay coefficient >= 0 (None: the default, 1e-2 as torch).
    """

    _decoupled = True
    _default_weight_decay = 1e-2  # torch's


class RMSprop(Optimizer):
    """RMSprop (Hinton), torch's rule.

    ``g = gradient + weight_decay * p``; ``s = alpha s + (1 - alpha) g²``; with
    ``centered``, ``a = alpha a + (1 - alpha) g`` and the denominator is
    ``sqrt(s - a²) + epsilon``, else ``sqrt(s) + epsilon``; then with momentum
    ``b = momentum b + g / denominator`` and ``p -= eps * b``, without
    ``p -= eps * g / denominator``.

    Args:
        net, loss: the network and the ``Loss``.
        eps: the learning rate (torch's ``lr``), default 1e-2.
        alpha: the decay of the squared-gradient average, in [0, 1) (default 0.99).
        epsilon: added to the denominator (torch's ``eps``), default 1e-8.
        momentum: in [0, 1) (default 0).
        weight_decay: L2 penalty coefficient >= 0 added to the gradient (default 0).
        centered: divide by an estimate of the gradient's variance instead.
    """

    def __init__(
        self,
        net: Module,
        loss: Loss,
        eps: float = 1e-2,
        alpha: float = 0.99,
        epsilon: float = 1e-8,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        centered: bool = False,
    ) -> None:
        super().__init__(net, loss, eps)
        self.alpha = _check_number(alpha, "RMSprop: alpha", low=0.0)
        self.momentum = _check_number(momentum, "RMSprop: momentum", low=0.0)
        for key, value in (("alpha", self.alpha), ("momentum", self.momentum)):
            if value >= 1:
                raise ValueError(f"RMSprop: {key} must be in [0, 1), got {value}")
        self.epsilon = _check_number(epsilon, "RMSprop: epsilon", low=0.0, strict=True)
        self.weight_decay = _check_number(weight_decay, "RMSprop: weight_decay", low=0.0)
        if not isinstance(centered, (bool, np.bool_)):
            raise TypeError(f"RMSprop: centered must be a bool, got {centered!r}")
        self.centered = bool(centered)

    def _step(self, params: Params) -> None:
        rule = _core.Rule.Centered if self.centered else _core.Rule.RmsProp
        hyper = _hyper(
            rule, self.eps, self.momentum, self.weight_decay, b2=self.alpha, eps=self.epsilon
        )
        keys = ("square_avg", "grad_avg")[: 1 + self.centered] + ("momentum",) * (self.momentum > 0)
        self._update(hyper, keys, params)

    def __repr__(self) -> str:
        return f"RMSprop(eps={self.eps}, alpha={self.alpha}, momentum={self.momentum})"


class Optim(SGD):
    """The course's ``Optim(net, loss, eps)``: ``step(batch_x, batch_y)`` does it all.

    Plain SGD on the gradient of the *summed* loss of the batch (``eps = lr / N``
    for a torch ``lr`` with its mean reduction).
    """

    def __init__(self, net: Module, loss: Loss, eps: float = 1e-3) -> None:
        super().__init__(net, loss, eps=eps)


def __getattr__(name: str) -> Any:
    """The training helpers, importable from here as before (``from diy_nn.optim import fit``)."""
    from . import training

    if name in training.__all__:
        return getattr(training, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
