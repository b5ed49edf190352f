"""Containers: ``Sequential`` (alias ``Sequentiel``) and ``AutoEncoder``."""

from __future__ import annotations

import contextlib
import weakref
from collections import OrderedDict
from typing import Any, ClassVar

import numpy as np

from .module import COURSE_METHODS, Module
from .plan import DenseRun, Plan, Step, plan, unpatched

__all__ = ["Sequential", "Sequentiel", "AutoEncoder"]


class _Kept:
    """What a forward pass keeps for the backward pass: the input it was given,
    each step's own state, the plan it ran, and a weak reference to its output
    (the record is dropped when that output is)."""

    __slots__ = ("input", "states", "steps", "output")

    def __init__(self, input: object, states: list[Any], steps: list[Step]) -> None:
        self.input, self.states, self.steps = input, states, steps
        self.output: weakref.ref | None = None


_Plan = tuple[
    list[Step], list[dict[str, Any]], list[int], DenseRun | None, list[Module], list[bool]
]


class Sequential(Module):
    """Modules applied one after the other: ``y = f_n(... f_1(x))``.

    Args:
        *modules: the layers in order, or a single ``OrderedDict`` of named layers.

    Backward is the chain rule over the steps in reverse: from ``δ`` = d loss
    / d y, each step adds its parameters' gradients and passes back
    ``δ ← (∂f_i/∂x_i)ᵀ δ``; ``backward`` returns d loss / d x.

    The steps come from ``diy_nn.plan.plan`` (``steps()`` shows them; nested
    plain ``Sequential`` s opened): a run of ``Linear`` + activation layers, or
    a ``Conv`` + ``MaxPool`` pair, is one Rust call per direction.

    ``forward`` keeps what backward needs (copied where the caller could change
    it in place) until its output is deleted; ``backward(input, delta)`` with
    that input object gives the gradients at the values the forward saw, with
    another it runs the forward again. Forward and training steps hold a lock.

    Example:
        >>> net = Sequential(Linear(2, 4), TanH(), Linear(4, 1), Sigmoid())
    """

    _param_names = ()
    _grad_names = ()
    _transient: ClassVar[frozenset[str]] = frozenset({"_lock", "_plan", "_kept", "_release"})
    _plan: Plan | None = None  # built on first use
    _kept: _Kept | None = None

    def __init__(self, *modules: Module | OrderedDict[str, Module]) -> None:
        super().__init__()
        self._named = _named(modules)

    def children(self) -> list[tuple[str, Module]]:
        return list(self._named)

    @property
    def layers(self) -> list[Module]:
        return [m for _, m in self._named]

    def steps(self) -> list[Step]:
        """The steps ``forward`` runs: ``plan()`` of the layers, nested plain
        ``Sequential`` s opened; planned again when a course method is patched."""
        return self._planned().steps

    def _planned(self) -> Plan:
        if self._plan is None or not self._plan.current():
            self._plan = _plan_of(self)
        return self._plan

    def forward(self, X: np.ndarray) -> np.ndarray:
        with self._guard():
            y, self._kept = self._forward(X)
            with contextlib.suppress(TypeError):  # not an array: kept until the next forward
                self._kept.output = weakref.ref(y, _releaser(self))
            return y

    def _forward(self, X: Any) -> tuple[Any, _Kept]:
        steps, states, x = self.steps(), [], X
        for i, step in enumerate(steps):
            x, state = step.forward(x, i > 0, i == len(steps) - 1)
            states.append(state)
        return x, _Kept(X, states, steps)

    def _backward(self, input: Any, delta: Any, grads: bool, input_delta: bool) -> Any:
        with self._guard():
            kept = self._kept
            if kept is None or kept.input is not input or kept.steps is not self.steps():
                kept = self._forward(input)[1]
            steps, states = kept.steps, kept.states
            for i in reversed(range(len(steps))):
                delta = steps[i].backward(states[i], delta, grads, input_delta or i > 0)
            return delta

    def backward(self, input: np.ndarray, delta: np.ndarray) -> np.ndarray:
        """Updates every layer's gradients and returns d loss / d input, in one pass."""
        return self._backward(input, delta, grads=True, input_delta=True)

    def backward_update_gradient(self, input: np.ndarray, delta: np.ndarray) -> None:
        """Updates every layer's gradients; d loss / d input of the first layer is not computed."""
        self._backward(input, delta, grads=True, input_delta=False)

    def backward_delta(self, input: np.ndarray, delta: np.ndarray) -> np.ndarray:
        """Returns d loss / d input; the gradients are left as they are."""
        return self._backward(input, delta, grads=False, input_delta=True)

    def train_step(self, X: np.ndarray, Y: np.ndarray, loss: Any, lr: float | None) -> float | None:
        """One Rust call when the layers are one dense run and the kernel has ``loss``
        (``plan.DenseRun.train_step``): the SGD step with ``lr``, only the gradients with None."""
        with self._guard():
            run = self._planned().fast
            cost = run.train_step(X, Y, loss, lr) if run is not None else None
            if cost is not None and self._kept is not None:
                self._kept = None  # what the forward kept is stale: the parameters moved
            return cost

    def train_step_output(self) -> np.ndarray | None:
        run = self._plan.fast if self._plan is not None else None
        return run.train_step_output() if run is not None else None

    def __len__(self) -> int:
        return len(self._named)

    def __getitem__(self, index: int | str | slice) -> Module:
        if isinstance(index, slice):
            return Sequential(OrderedDict(self._named[index]))
        if isinstance(index, str):
            return dict(self._named)[index]
        return self._named[index][1]

    def __iter__(self):
        return iter(self.layers)

    def __repr__(self) -> str:
        body = "\n".join(f"  ({name}): {m!r}".replace("\n", "\n  ") for name, m in self._named)
        return f"{type(self).__name__}(\n{body}\n)  # {self.n_parameters():,} parameters"


Sequentiel = Sequential  # the course's French name


def _releaser(net: Sequential) -> Any:
    """The callback that drops ``net``'s kept forward state when its output
    dies; it holds ``net`` weakly, so no reference cycle keeps arrays alive."""
    release = net.__dict__.get("_release")
    if release is None:
        me = weakref.ref(net)

        def release(output_ref: weakref.ref) -> None:
            owner = me()
            kept = owner._kept if owner is not None else None
            if kept is not None and kept.output is output_ref:
                owner._kept = None  # type: ignore[union-attr]

        net.__dict__["_release"] = release
    return release


def _plan_of(seq: Sequential) -> Plan:
    """``seq``'s plan; its one-call training step only when neither its class
    nor the instance replaces a course method (or ``steps``)."""
    opened: list[Module] = []
    steps = plan(_leaves(seq, opened))
    methods = (*COURSE_METHODS, "steps", "train_step")
    own = any(getattr(type(seq), m) is not getattr(Sequential, m) for m in methods)
    whole = len(steps) == 1 and isinstance(steps[0], DenseRun) and not own and unpatched(seq)
    modules = [seq, *opened, *(m for s in steps for m in s.layers)]
    return Plan(steps, modules, steps[0] if whole else None)  # type: ignore[arg-type]


def _named(modules: tuple[Any, ...]) -> list[tuple[str, Module]]:
    """``(name, layer)`` pairs from ``Sequential``'s arguments, checked."""
    if len(modules) == 1 and isinstance(modules[0], (OrderedDict, dict)):
        named = list(modules[0].items())
    else:
        named = [(str(i), m) for i, m in enumerate(modules)]
    for name, m in named:
        if not isinstance(m, Module):
            raise TypeError(
                f"Sequential: layer {name!r} must be a diy_nn Module, got {type(m).__name__}"
            )
    return named


def _leaves(seq: Sequential, opened: list[Module]) -> list[Module]:
    """The layers with nested plain, unpatched ``Sequential`` s (and
    ``AutoEncoder`` s) opened; those are appended to ``opened``."""
    leaves: list[Module] = []
    for _, m in seq._named:
        if type(m) in (Sequential, AutoEncoder) and unpatched(m):
            opened.append(m)
            leaves.extend(_leaves(m, opened))  # type: ignore[arg-type]
        else:
            leaves.append(m)
    return leaves


class AutoEncoder(Sequential):
    """An encoder followed by a decoder: ``forward(x) = decode(encode(x))``.

    Args:
        encoder: maps an input to its code (any ``Module``, e.g. a ``Sequential``).
        decoder: maps a code back to the input space.

    The two are its children ``encoder`` and ``decoder`` (parameter names
    ``encoder.0._parameters``..., saved as ``encoder.0.weight``...); training
    goes through the whole chain as for a ``Sequential``: the backward pass is
    the chain rule, the decoder's steps in reverse, then the encoder's
    (d loss / d code = the decoder's d input).

    Example:
        >>> ae = AutoEncoder(Sequential(Linear(256, 10), TanH()),
        ...                  Sequential(Linear(10, 256), Sigmoid()))
        >>> ae.encode(np.zeros((5, 256))).shape
        (5, 10)
    """

    def __init__(self, encoder: Module, decoder: Module) -> None:
        super().__init__(OrderedDict([("encoder", encoder), ("decoder", decoder)]))
        self.encoder, self.decoder = encoder, decoder

    def encode(self, X: np.ndarray) -> np.ndarray:
        """The code of ``X``: ``encoder.forward(X)``."""
        return self.encoder.forward(X)

    def decode(self, Z: np.ndarray) -> np.ndarray:
        """The reconstruction from a code ``Z``: ``decoder.forward(Z)``."""
        return self.decoder.forward(Z)
