"""Parameter initialisations, selectable per layer and seedable.

Each initialiser takes ``(shape, fan_in, fan_out, rng)`` and returns a float64
array; the layer casts it to its dtype.

- ``"uniform"`` (default): U(-1/sqrt(fan_in), 1/sqrt(fan_in)), as torch's ``nn.Linear``.
- ``"rand"``: the report's ``2 * (rand - 0.5)``, i.e. U(-1, 1).
- ``"xavier"``: Glorot uniform, U(±sqrt(6 / (fan_in + fan_out))).
- ``"he"``: He normal, N(0, 2 / fan_in).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ._validation import check_n_elements
from .dtype import get_default_dtype, resolve_dtype

__all__ = ["INITIALISERS", "get_rng", "manual_seed", "initialise", "weight_and_bias"]

Initialiser = Callable[[tuple[int, ...], int, int, np.random.Generator], np.ndarray]

_GLOBAL_RNG = np.random.default_rng()


def manual_seed(seed: int) -> None:
    """Seeds the generator that layers created without ``rng=`` draw from."""
    global _GLOBAL_RNG
    _GLOBAL_RNG = np.random.default_rng(seed)


def get_rng(rng: None | int | np.random.Generator = None) -> np.random.Generator:
    """``rng`` as a Generator: None → the global one, an int → a new seeded one."""
    if rng is None:
        return _GLOBAL_RNG
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        return np.random.default_rng(int(rng))
    raise TypeError(f"rng must be None, an int seed or a numpy Generator, got {rng!r}")


def _uniform(shape: tuple[int, ...], fan_in: int, fan_out: int, rng: np.random.Generator):
    bound = 1.0 / np.sqrt(max(fan_in, 1))
    return rng.uniform(-bound, bound, shape)


def _rand(shape: tuple[int, ...], fan_in: int, fan_out: int, rng: np.random.Generator):
    return 2.0 * (rng.random(shape) - 0.5)


def _xavier(shape: tuple[int, ...], fan_in: int, fan_out: int, rng: np.random.Generator):
    bound = np.sqrt(6.0 / max(fan_in + fan_out, 1))
    return rng.uniform(-bound, bound, shape)


def _he(shape: tuple[int, ...], fan_in: int, fan_out: int, rng: np.random.Generator):
    return rng.normal(0.0, np.sqrt(2.0 / max(fan_in, 1)), shape)


INITIALISERS: dict[str, Initialiser] = {
    "uniform": _uniform,
    "rand": _rand,
    "xavier": _xavier,
    "he": _he,
}


def initialise(
    init: str | Initialiser,
    shape: tuple[int, ...],
    fan_in: int,
    fan_out: int,
    rng: None | int | np.random.Generator,
    dtype: np.dtype,
) -> np.ndarray:
    """Draws a parameter of ``shape`` with the named (or given) initialiser."""
    check_n_elements(shape, "init: a parameter")
    if isinstance(init, str):
        if init not in INITIALISERS:
            raise ValueError(f"init must be one of {sorted(INITIALISERS)}, got {init!r}")
        init = INITIALISERS[init]
    return np.asarray(init(shape, fan_in, fan_out, get_rng(rng)), dtype=dtype)


def weight_and_bias(
    init: str | Initialiser,
    shape: tuple[int, ...],
    fan_in: int,
    fan_out: int,
    rng: None | int | np.random.Generator,
    dtype: object,
    bias: bool,
) -> tuple[np.ndarray, np.ndarray | None]:
    """A layer's weight of ``shape`` and, when ``bias``, its bias of ``(shape[-1],)``.

    Both in ``dtype`` (None: the default dtype). The weight is drawn by ``init``;
    the bias U(-1/sqrt(fan_in), 1/sqrt(fan_in)) as torch's, or zeros under ``"he"``.
    """
    dt = resolve_dtype(dtype if dtype is not None else get_default_dtype())
    weight = initialise(init, shape, fan_in, fan_out, rng, dt)
    if not bias:
        return weight, None
    bias_init = "uniform" if init != "he" else (lambda s, fi, fo, r: np.zeros(s))
    return weight, initialise(bias_init, (shape[-1],), fan_in, fan_out, rng, dt)
