"""diy_nn: neural networks by hand.

Every layer writes its own forward and backward pass (no autograd), with the
course's API (``forward``, ``backward_update_gradient``, ``backward_delta``,
``update_parameters``, ``zero_grad``), on Rust kernels.
"""

from ._core import ShapeError, get_num_threads, set_num_threads
from .activation import ReLU, Sigmoid, Sigmoide, TanH, Threshold
from .container import Sequential, Sequentiel
from .dtype import get_default_dtype, set_default_dtype
from .init import manual_seed
from .linear import Linear
from .loss import Loss, MSELoss
from .module import Module
from .optim import SGD, Optim, Optimizer, train

__version__ = "0.1.0"

__all__ = [
    "Linear",
    "Loss",
    "MSELoss",
    "Module",
    "Optim",
    "Optimizer",
    "ReLU",
    "SGD",
    "Sequential",
    "Sequentiel",
    "ShapeError",
    "Sigmoid",
    "Sigmoide",
    "TanH",
    "Threshold",
    "get_default_dtype",
    "get_num_threads",
    "manual_seed",
    "set_default_dtype",
    "set_num_threads",
    "train",
]
