"""The ``Module`` base class, with the course's method names."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from itertools import repeat
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from . import _core
from .dtype import resolve_dtype

if TYPE_CHECKING:
    from .summary import ModelSummary

__all__ = ["Module", "COURSE_METHODS"]

# The methods a layer writes (or inherits) to take part in training. A module
# whose class or instance replaces one of them runs as itself in a Sequential.
COURSE_METHODS = frozenset(
    {
        "forward",
        "backward_update_gradient",
        "backward_delta",
        "backward",
        "zero_grad",
        "update_parameters",
    }
)

# ``_core.optim_update``'s hyper-parameters for plain SGD (no momentum, no decay).
_SGD: dict[str, Any] = {"rule": _core.Rule.Sgd, "mu": 0.0, "wd": 0.0, "b1": 0.0, "b2": 0.0,
                        "eps": 0.0, "t": 1.0}  # fmt: skip
_KERNEL_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
_SGD_BY_LR: dict[float, dict[str, Any]] = {}


def _sgd_hyper(lr: float) -> dict[str, Any]:
    """``_SGD`` with ``lr``, kept for the next call (a training loop repeats its rate)."""
    if len(_SGD_BY_LR) >= 16:  # a schedule's rates: keep only the recent ones
        _SGD_BY_LR.clear()
    hyper = _SGD_BY_LR[lr] = {**_SGD, "lr": lr}
    return hyper


def _kernel_fits(slot: list[np.ndarray]) -> bool:
    """Whether ``optim_update`` takes a (parameter, gradient) pair of one dtype as it is."""
    return slot[0].dtype in _KERNEL_DTYPES and all(a.flags.c_contiguous for a in slot)


def _check_init(module: Module) -> None:
    """Raises when ``Module.__init__`` never ran on ``module`` (its parameter and
    gradient names are then missing): a course subclass forgot ``super().__init__()``.
    A check where those names are read, not a ``__getattr__``: a class with one
    pays on every attribute read (CPython then skips its attribute-lookup caches)."""
    names = type(module)._param_names + type(module)._grad_names
    if any(n not in module.__dict__ for n in names):
        cls = type(module).__name__
        raise AttributeError(
            f"{cls} is missing its parameter attributes: {cls}.__init__ must call "
            f"super().__init__() before setting parameters (add it as the first line)"
        )


class Module:
    """A layer that computes its own forward and backward pass.

    Gradients are of the *summed* per-sample loss and accumulate until
    ``zero_grad()``. Parameters are listed in ``_param_names`` with their
    gradients in ``_grad_names``; by default ``_parameters``/``_gradient`` and
    ``_bias``/``_grad_bias``, so a course-style layer that assigns any of these
    four in its ``__init__`` (after ``super().__init__()``) trains them without
    declaring anything. A parameter that is None is not one. Assigning a
    parameter (``layer._parameters = W``, as course scripts do) stores a copy
    in the module's dtype, so training never writes into an array the caller
    still holds.

    A module used at several places of a network (``Sequential(lin, TanH(),
    lin)``) is one set of parameters: ``named_parameters`` lists them once,
    and its gradient is the sum over its uses.
    """

    _param_names: ClassVar[tuple[str, ...]] = ("_parameters", "_bias")
    _grad_names: ClassVar[tuple[str, ...]] = ("_gradient", "_grad_bias")
    # Attributes rebuilt on demand, never copied or pickled (locks, kernel state).
    _transient: ClassVar[frozenset[str]] = frozenset({"_lock"})
    # Training mode (True) or evaluation mode (False), as torch's ``training``:
    # ``Dropout`` and ``BatchNorm1D`` behave differently in each. A class
    # default, so that course-style modules that skip ``__init__`` have it too.
    training: bool = True
    # The course's attribute names, set from the two tuples above.
    _parameters: Any
    _gradient: Any
    _bias: Any
    _grad_bias: Any

    def __init__(self) -> None:
        for name in self._param_names + self._grad_names:
            object.__setattr__(self, name, None)

    def __setattr__(self, name: str, value: object) -> None:
        if name in self._param_names and value is not None:
            _check_init(self)
            dtype = self.dtype or np.asarray(value).dtype
            value = np.array(value, dtype=resolve_dtype(dtype), copy=True)
        object.__setattr__(self, name, value)

    # The course API. ---------------------------------------------------------
    def forward(self, X: np.ndarray) -> np.ndarray:
        """Returns the output for the input ``X`` (the first axis is the batch)."""
        raise NotImplementedError

    def backward_update_gradient(self, input: np.ndarray, delta: np.ndarray) -> None:
        """Adds d loss / d parameters to the gradients; ``delta`` = d loss / d output."""

    def backward_delta(self, input: np.ndarray, delta: np.ndarray) -> np.ndarray:
        """Returns d loss / d input, given ``delta`` = d loss / d output."""
        raise NotImplementedError

    def backward(self, input: np.ndarray, delta: np.ndarray) -> np.ndarray:
        """Both backward passes in one call: update the gradients, return d loss / d input."""
        self.backward_update_gradient(input, delta)
        return self.backward_delta(input, delta)

    def zero_grad(self) -> None:
        """Resets every gradient to zero (in place when the buffer fits)."""
        slots: Any
        if type(self).children is Module.children:  # a leaf: its own slots, no walk
            if not self._param_names:
                return  # nothing to reset (an activation, a pooling)
            slots = zip(repeat(self), self._param_names, self._grad_names)  # noqa: B905
        else:
            slots = self.parameter_slots()
        for module, pname, gname in slots:
            param = getattr(module, pname)
            if param is None:
                continue
            grad = getattr(module, gname)
            if (
                grad is not None
                and grad.shape == param.shape
                and ((gd := grad.dtype) is (pd := param.dtype) or gd == pd)
            ):
                grad.fill(0)
            else:
                object.__setattr__(module, gname, np.zeros_like(param))

    def update_parameters(self, gradient_step: float = 1e-3) -> None:
        """Plain gradient step: ``parameter -= gradient_step * gradient`` (one call of
        the optimizers' SGD rule, ``_core.optim_update``, where every pair is
        C-contiguous float32 or float64 of one dtype; numpy otherwise)."""
        # [parameter, gradient] for each parameter that is not None, in one pass
        slots: list[list[Any]]
        if type(self).children is not Module.children:
            pairs = ([getattr(m, p), getattr(m, g)] for m, p, g in self.parameter_slots())
            slots = [pair for pair in pairs if pair[0] is not None]
        elif self._param_names:  # a leaf: its own slots, no walk
            names = zip(self._param_names, self._grad_names)  # noqa: B905
            slots = [[p, getattr(self, g)] for n, g in names if (p := getattr(self, n)) is not None]
        else:
            slots = []
        if not slots and type(gradient_step) in (float, int):
            return  # nothing to step (an activation, a pooling); other steps go to the check
        try:
            hyper = _SGD_BY_LR.get(gradient_step) or _sgd_hyper(gradient_step)
            _core.optim_update(hyper, slots)
            return
        except (TypeError, ValueError):
            # the kernel checks everything before it writes: numpy steps the gradients,
            # layouts and dtypes it does not take; a wrong shape, or pairs it takes, is
            # a real error
            numpy_takes = all(type(g) is np.ndarray and g.dtype == p.dtype for p, g in slots)
            if numpy_takes and (
                any(p.shape != g.shape for p, g in slots) or all(map(_kernel_fits, slots))
            ):
                raise
        for param, grad in slots:
            param -= gradient_step * grad

    def __call__(self, X: np.ndarray) -> np.ndarray:
        return self.forward(X)

    # The optimizers' hook. ---------------------------------------------------
    def train_step(self, X: np.ndarray, Y: np.ndarray, loss: Any, lr: float | None) -> float | None:
        """One plain-SGD step on the batch ``(X, Y)`` for ``loss`` in one call.

        Forward, loss, backward (the gradients are *written*, not added) and
        ``parameter -= lr * gradient`` (with ``lr`` None, no update: an
        optimizer's own rule follows), returning the batch's mean cost; or
        None, with nothing changed, when this module has no such fast path for
        these arguments (the optimizer then runs forward, ``backward_update_gradient``
        and its own update). The base class never has one.
        """
        return None

    def train_step_output(self) -> np.ndarray | None:
        """A copy of the network's output in the last ``train_step`` that ran, or None."""
        return None

    # Modes. -------------------------------------------------------------------
    def train(self, mode: bool = True) -> Module:
        """Puts this module and all its descendants in training mode (``mode=False``:
        evaluation mode); returns the module, as torch's ``Module.train``."""
        if not isinstance(mode, (bool, np.bool_)):
            raise TypeError(f"{type(self).__name__}.train: mode must be a bool, got {mode!r}")
        for module in self.modules():
            module.training = bool(mode)
        return self

    def eval(self) -> Module:
        """Evaluation mode for this module and its descendants (``train(False)``); returns it."""
        return self.train(False)

    # Parameters, uniformly. --------------------------------------------------
    def children(self) -> list[tuple[str, Module]]:
        """Sub-modules with their names (none for a plain layer)."""
        return []

    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, Module]]:
        """``(name prefix, module)`` for this module and its descendants, depth
        first, each module once (at its first place) however often it is used."""
        seen: set[int] = set()
        stack = [(prefix, self)]
        while stack:
            name, module = stack.pop()
            if id(module) in seen:
                continue
            seen.add(id(module))
            yield name, module
            stack.extend((f"{name}{c}.", m) for c, m in reversed(module.children()))

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
        """Yields ``(name, parameter, gradient)`` for every parameter, children
        included; a module used twice is listed once."""
        for path, module in self.named_modules(prefix):
            for pname, gname in zip(module._param_names, module._grad_names, strict=True):
                try:
                    param = getattr(module, pname)
                    if param is not None:
                        yield path + pname, param, getattr(module, gname)
                except AttributeError:
                    _check_init(module)
                    raise

    def parameter_slots(self) -> list[tuple[Module, str, str]]:
        """``(module, parameter attribute, gradient attribute)`` for every
        declared parameter, set or None, of this module and its descendants
        (each module once)."""
        modules, seen, i = [self], {id(self)}, 0
        while i < len(modules):
            for _, child in modules[i].children():
                if id(child) not in seen:
                    seen.add(id(child))
                    modules.append(child)
            i += 1
        return [(m, p, g) for m in modules for p, g in zip(m._param_names, m._grad_names)]  # noqa: B905

    @property
    def dtype(self) -> np.dtype | None:
        """The dtype of the parameters, or None for a module without any."""
        for _, param, _ in self.named_parameters():
            return param.dtype
        return None

    def to(self, dtype: object) -> Module:
        """Casts every parameter and gradient to ``dtype`` (float32 or float64), in place."""
        dt = resolve_dtype(dtype)
        for module in self.modules():
            for pname, gname in zip(module._param_names, module._grad_names, strict=True):
                for attr in (pname, gname):
                    value = getattr(module, attr)
                    if value is not None:
                        object.__setattr__(module, attr, value.astype(dt))
        return self

    def modules(self) -> Iterator[Module]:
        """This module and all its descendants, depth first, each once."""
        for _, module in self.named_modules():
            yield module

    def n_parameters(self) -> int:
        """The number of scalar parameters (a module used twice counts once)."""
        return sum(p.size for _, p, _ in self.named_parameters())

    def summary(self, input_shape: tuple[int, ...], print_table: bool = True) -> ModelSummary:
        """Prints and returns each layer's output shape and parameters (``diy_nn.summary``)."""
        from .summary import summarize

        return summarize(self, input_shape, print_table)

    # Threads and copies. -----------------------------------------------------
    def _guard(self) -> threading.RLock:
        """The lock held by a training step on this module and by a container's
        forward: a forward from another thread sees the parameters before or
        after a step, never half-written ones. Created on first use."""
        lock = self.__dict__.get("_lock")
        if lock is None:
            lock = self.__dict__.setdefault("_lock", threading.RLock())
        return lock

    def __getstate__(self) -> dict[str, Any]:
        """The attributes without the transient ones (locks, kernel state), for
        ``copy.deepcopy`` and ``pickle``; those are rebuilt on first use."""
        return {k: v for k, v in self.__dict__.items() if k not in self._transient}

    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"
