"""Type stubs of the Rust extension ``diy_nn._core``."""

import numpy as np
from numpy.typing import NDArray

_F = np.float32 | np.float64

__version__: str

class ShapeError(ValueError):
    """An array argument has a shape (or size) the operation cannot take."""

def set_num_threads(n: int) -> None: ...
def get_num_threads() -> int: ...
def matmul(a: NDArray[_F], b: NDArray[_F]) -> NDArray[_F]: ...
def addmm(
    out: NDArray[_F], a: NDArray[_F], b: NDArray[_F], alpha: float = 1.0, beta: float = 1.0
) -> None: ...
def linear(x: NDArray[_F], w: NDArray[_F], b: NDArray[_F] | None = None) -> NDArray[_F]: ...
