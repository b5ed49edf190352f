"""The ``Module`` base class, with the course's method names."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np

from .dtype import resolve_dtype

__all__ = ["Module"]

# Bumped whenever a parameter or gradient attribute of any module is assigned:
# the cached ``(name, parameter, gradient)`` lists of the optimizers and of the
# fused dense chains are rebuilt when it moved.
_version = 0


def params_version() -> int:
    """A number that changes whenever a parameter or gradient attribute is assigned."""
    return _version


def _set(module: Module, name: str, value: object) -> None:
    """Assigns a parameter or gradient attribute as is, and bumps the version."""
    global _version
    _version += 1
    object.__setattr__(module, name, value)


class Module:
    """A layer that computes its own forward and backward pass.

    Gradients are of the *summed* per-sample loss and accumulate until
    ``zero_grad()``. Parameters are listed in ``_param_names`` with their
    gradients in ``_grad_names`` (for ``Linear``: ``_parameters``/``_gradient``
    and ``_bias``/``_grad_bias``). Assigning a parameter (``layer._parameters =
    W``, as course scripts do) stores a copy in the module's dtype, so training
    never writes into an array the caller still holds.
    """

    _param_names: ClassVar[tuple[str, ...]] = ("_parameters",)
    _grad_names: ClassVar[tuple[str, ...]] = ("_gradient",)
    # The course's attribute names, set from the two tuples above.
    _parameters: Any
    _gradient: Any
    _bias: Any
    _grad_bias: Any

    def __init__(self) -> None:
        for name in self._param_names + self._grad_names:
            _set(self, name, None)

    def __setattr__(self, name: str, value: object) -> None:
        if name in self._param_names:
            if value is not None:
                dtype = self.dtype or np.asarray(value).dtype
                value = np.array(value, dtype=resolve_dtype(dtype), copy=True)
            _set(self, name, value)
        elif name in self._grad_names:
            _set(self, name, value)
        else:
            object.__setattr__(self, name, value)

    # --- the course API -------------------------------------------------------
    def forward(self, X: np.ndarray) -> np.ndarray:
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
        for name, param, grad in self.named_parameters():
            if grad is not None and grad.shape == param.shape and grad.dtype == param.dtype:
                grad.fill(0)
            else:
                module, attr = self._locate_grad(name)
                _set(module, attr, np.zeros_like(param))

    def update_parameters(self, gradient_step: float = 1e-3) -> None:
        """Plain gradient step: ``parameter -= gradient_step * gradient``."""
        for _, param, grad in self.named_parameters():
            param -= gradient_step * grad

    def __call__(self, X: np.ndarray) -> np.ndarray:
        return self.forward(X)

    # --- parameters, uniformly ------------------------------------------------
    def children(self) -> list[tuple[str, Module]]:
        """Sub-modules with their names (none for a plain layer)."""
        return []

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
        """Yields ``(name, parameter, gradient)`` for every parameter, children included."""
        for pname, gname in zip(self._param_names, self._grad_names, strict=True):
            param = getattr(self, pname)
            if param is not None:
                yield prefix + pname, param, getattr(self, gname)
        for cname, child in self.children():
            yield from child.named_parameters(f"{prefix}{cname}.")

    def _locate_grad(self, name: str) -> tuple[Module, str]:
        *path, pname = name.split(".")
        module: Module = self
        for part in path:
            module = dict(module.children())[part]
        return module, module._grad_names[module._param_names.index(pname)]

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
                        _set(module, attr, value.astype(dt))
        return self

    def modules(self) -> Iterator[Module]:
        """This module and all its descendants, depth first."""
        yield self
        for _, child in self.children():
            yield from child.modules()

    def n_parameters(self) -> int:
        """The number of scalar parameters."""
        return sum(p.size for _, p, _ in self.named_parameters())

    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"
