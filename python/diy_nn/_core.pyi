"""Type stubs of the Rust extension ``diy_nn._core``."""

from typing import Any, ClassVar, final

import numpy as np
from numpy.typing import NDArray

_F = np.float32 | np.float64

__all__ = [
    "Activation",
    "DenseTrainer",
    "LossKind",
    "Rule",
    "ShapeError",
    "__version__",
    "activation",
    "activation_backward",
    "addmm",
    "avg_pool1d",
    "avg_pool1d_backward",
    "avg_pool2d",
    "avg_pool2d_backward",
    "conv1d",
    "conv1d_backward_input",
    "conv1d_backward_weight",
    "conv2d",
    "conv2d_backward_input",
    "conv2d_backward_weight",
    "conv1d_maxpool",
    "conv1d_maxpool_backward",
    "conv2d_maxpool",
    "conv2d_maxpool_backward",
    "cross_entropy",
    "cross_entropy_backward",
    "debug_build",
    "dense_backward",
    "dense_forward",
    "get_num_threads",
    "linear",
    "log_softmax",
    "log_softmax_backward",
    "matmul",
    "max_pool1d",
    "max_pool1d_backward",
    "max_pool2d",
    "max_pool2d_backward",
    "optim_update",
    "set_num_threads",
    "softmax",
    "softmax_backward",
]

__version__: str

class ShapeError(ValueError):
    """An array argument has a shape (or size) the operation cannot take."""

def set_num_threads(n: int) -> None: ...
def get_num_threads() -> int: ...
def debug_build() -> bool: ...
def matmul(a: NDArray[_F], b: NDArray[_F]) -> NDArray[_F]: ...
def addmm(
    out: NDArray[_F], a: NDArray[_F], b: NDArray[_F], alpha: float = 1.0, beta: float = 1.0
) -> None: ...
def linear(x: NDArray[_F], w: NDArray[_F], b: NDArray[_F] | None = None) -> NDArray[_F]: ...

# Convolutions, channels last: x (N, L, Cin) / (N, H, W, Cin), w (K, Cin, Cout) / (K, K, Cin, Cout).
def conv1d(
    x: NDArray[_F], w: NDArray[_F], b: NDArray[_F] | None = None, stride: int = 1, padding: int = 0
) -> NDArray[_F]: ...
def conv1d_backward_input(
    delta: NDArray[_F], w: NDArray[_F], input_len: int, stride: int = 1, padding: int = 0
) -> NDArray[_F]: ...
def conv1d_backward_weight(
    x: NDArray[_F],
    delta: NDArray[_F],
    grad_w: NDArray[_F],
    grad_b: NDArray[_F] | None = None,
    stride: int = 1,
    padding: int = 0,
) -> None: ...
def conv2d(
    x: NDArray[_F], w: NDArray[_F], b: NDArray[_F] | None = None, stride: int = 1, padding: int = 0
) -> NDArray[_F]: ...
def conv2d_backward_input(
    delta: NDArray[_F],
    w: NDArray[_F],
    input_hw: tuple[int, int],
    stride: int = 1,
    padding: int = 0,
) -> NDArray[_F]: ...
def conv2d_backward_weight(
    x: NDArray[_F],
    delta: NDArray[_F],
    grad_w: NDArray[_F],
    grad_b: NDArray[_F] | None = None,
    stride: int = 1,
    padding: int = 0,
) -> None: ...

# A convolution then the max pooling of its output, fused: (pooled y, argmax as in
# max_pool1d/max_pool2d, positions in the convolution's output); the backward adds into
# grad_w and grad_b and returns d loss / d x when input_delta, else None.
def conv1d_maxpool(
    x: NDArray[_F],
    w: NDArray[_F],
    b: NDArray[_F] | None,
    stride: int,
    padding: int,
    k: int,
    pool_stride: int,
) -> tuple[NDArray[_F], NDArray[np.int32]]: ...
def conv1d_maxpool_backward(
    x: NDArray[_F],
    w: NDArray[_F],
    delta: NDArray[_F],
    argmax: NDArray[np.int32],
    grad_w: NDArray[_F],
    grad_b: NDArray[_F] | None,
    stride: int,
    padding: int,
    k: int,
    pool_stride: int,
    input_delta: bool,
) -> NDArray[_F] | None: ...
def conv2d_maxpool(
    x: NDArray[_F],
    w: NDArray[_F],
    b: NDArray[_F] | None,
    stride: int,
    padding: int,
    k: int,
    pool_stride: int,
) -> tuple[NDArray[_F], NDArray[np.int32]]: ...
def conv2d_maxpool_backward(
    x: NDArray[_F],
    w: NDArray[_F],
    delta: NDArray[_F],
    argmax: NDArray[np.int32],
    grad_w: NDArray[_F],
    grad_b: NDArray[_F] | None,
    stride: int,
    padding: int,
    k: int,
    pool_stride: int,
    input_delta: bool,
) -> NDArray[_F] | None: ...

# Pooling, channels last, no padding; argmax is int32 (index along L, or h * W + w).
# The max-pool backward passes take the forward's k and stride, optionally: with them
# delta's shape is checked against the window, and non-overlapping windows take a
# one-pass path.
def max_pool1d(x: NDArray[_F], k: int, stride: int) -> tuple[NDArray[_F], NDArray[np.int32]]: ...
def max_pool1d_backward(
    delta: NDArray[_F],
    argmax: NDArray[np.int32],
    input_len: int,
    k: int | None = None,
    stride: int | None = None,
) -> NDArray[_F]: ...
def avg_pool1d(x: NDArray[_F], k: int, stride: int) -> NDArray[_F]: ...
def avg_pool1d_backward(delta: NDArray[_F], input_len: int, k: int, stride: int) -> NDArray[_F]: ...
def max_pool2d(x: NDArray[_F], k: int, stride: int) -> tuple[NDArray[_F], NDArray[np.int32]]: ...
def max_pool2d_backward(
    delta: NDArray[_F],
    argmax: NDArray[np.int32],
    input_hw: tuple[int, int],
    k: int | None = None,
    stride: int | None = None,
) -> NDArray[_F]: ...
def avg_pool2d(x: NDArray[_F], k: int, stride: int) -> NDArray[_F]: ...
def avg_pool2d_backward(
    delta: NDArray[_F], input_hw: tuple[int, int], k: int, stride: int
) -> NDArray[_F]: ...

# Softmax family along the last axis of (N, k), stable (row max subtracted).
def softmax(x: NDArray[_F]) -> NDArray[_F]: ...
def softmax_backward(y: NDArray[_F], delta: NDArray[_F]) -> NDArray[_F]: ...
def log_softmax(x: NDArray[_F]) -> NDArray[_F]: ...
def log_softmax_backward(y: NDArray[_F], delta: NDArray[_F]) -> NDArray[_F]: ...
def cross_entropy(logits: NDArray[_F], target: NDArray[np.int64] | NDArray[_F]) -> NDArray[_F]: ...
def cross_entropy_backward(
    logits: NDArray[_F], target: NDArray[np.int64] | NDArray[_F]
) -> NDArray[_F]: ...

# Fused training paths (see rust/fused.rs).
@final
class Activation:
    """The activations by name; one with parameters crosses as a tuple:
    ``(LeakyReLU, negative_slope)``, ``(Softplus, beta, threshold)``."""

    Identity: ClassVar[Activation]
    TanH: ClassVar[Activation]
    Sigmoid: ClassVar[Activation]
    ReLU: ClassVar[Activation]
    LeakyReLU: ClassVar[Activation]
    Softplus: ClassVar[Activation]
    def __int__(self) -> int: ...
    def __reduce__(self) -> str: ...

@final
class LossKind:
    """The loss a fused training step ends with."""

    MSE: ClassVar[LossKind]
    MAE: ClassVar[LossKind]
    BCE: ClassVar[LossKind]
    CrossEntropy: ClassVar[LossKind]
    LogSoftmaxNLL: ClassVar[LossKind]
    def __int__(self) -> int: ...
    def __reduce__(self) -> str: ...

_Act = Activation | tuple[Activation, float] | tuple[Activation, float, float]

def activation(x: NDArray[_F], act: _Act) -> NDArray[_F]: ...
def activation_backward(x: NDArray[_F], delta: NDArray[_F], act: _Act) -> NDArray[_F]: ...
def dense_forward(
    x: NDArray[_F],
    weights: list[NDArray[_F]],
    biases: list[NDArray[_F] | None],
    activations: list[_Act],
) -> list[NDArray[_F]]: ...
def dense_backward(
    x: NDArray[_F],
    outputs: list[NDArray[_F]],
    weights: list[NDArray[_F]],
    biases: list[NDArray[_F] | None],
    activations: list[_Act],
    grad_weights: list[NDArray[_F]],
    grad_biases: list[NDArray[_F] | None],
    delta: NDArray[_F],
    input_delta: bool = True,
) -> NDArray[_F] | None: ...

# Optimizer rules (see rust/optim.rs).
@final
class Rule:
    """An optimizer's update rule (torch.optim's)."""

    Sgd: ClassVar[Rule]
    Nesterov: ClassVar[Rule]
    Adam: ClassVar[Rule]
    AdamW: ClassVar[Rule]
    RmsProp: ClassVar[Rule]
    Centered: ClassVar[Rule]
    def __int__(self) -> int: ...

def optim_update(hyper: dict[str, Any], slots: list[list[NDArray[_F]]]) -> None: ...

@final
class DenseTrainer:
    """Whole plain-SGD training steps of a dense chain, one call each."""

    def __init__(self) -> None: ...
    def step(
        self,
        x: NDArray[_F],
        target: NDArray[_F] | NDArray[np.int64],
        weights: list[NDArray[_F]],
        biases: list[NDArray[_F] | None],
        activations: list[_Act],
        grad_weights: list[NDArray[_F]],
        grad_biases: list[NDArray[_F] | None],
        loss: LossKind,
        lr: float | None,
    ) -> float: ...
    def output(self) -> NDArray[_F] | None: ...
