"""How the Rust extension was built: a debug build is warned about once, at import."""

from __future__ import annotations

import warnings
from collections.abc import Callable

__all__ = ["UnoptimizedBuildWarning", "warn_if_unoptimized"]


class UnoptimizedBuildWarning(RuntimeWarning):
    """The extension was compiled without optimisation: training runs tens of times slower."""


def warn_if_unoptimized(debug_build: Callable[[], bool]) -> bool:
    """Warns (once per process, at ``import diy_nn``) when ``debug_build()`` is true.

    Returns whether it was one. ``maturin develop`` builds the release profile
    (``[tool.maturin] profile`` in ``pyproject.toml``); a debug build comes from
    ``maturin develop --profile dev`` or ``cargo build`` without ``--release``.
    """
    if not debug_build():
        return False
    warnings.warn(
        "diy_nn: the Rust extension was built without optimisation (a debug build); "
        "its kernels run 30 to 90 times slower. Rebuild it with `maturin develop --release` "
        "(or `make build`)",
        UnoptimizedBuildWarning,
        stacklevel=3,
    )
    return True
