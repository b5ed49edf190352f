"""diy_nn: neural networks by hand.

Every layer writes its own forward and backward pass (no autograd), with the
course's API (``forward``, ``backward_update_gradient``, ``backward_delta``,
``update_parameters``, ``zero_grad``), on Rust kernels.
"""

from . import (
    _core,
    schedule,  # diy_nn.schedule.StepLR...
)
from ._buildinfo import warn_if_unoptimized as _warn_if_unoptimized
from ._core import ShapeError, get_num_threads, set_num_threads
from .activation import (
    LeakyReLU,
    LogSoftMax,
    ReLU,
    Sigmoid,
    Sigmoide,
    SoftMax,
    Softplus,
    TanH,
    Threshold,
)
from .batchnorm import BatchNorm1D
from .container import AutoEncoder, Sequential, Sequentiel
from .conv import Conv1D, Conv2D
from .dropout import Dropout
from .dtype import get_default_dtype, set_default_dtype
from .gradcheck import GradcheckError, gradcheck
from .init import manual_seed
from .linear import Linear
from .loss import (
    ABSLoss,
    BCELoss,
    CELogSoftMax,
    CrossEntropyCriterion,
    CrossEntropyLoss,
    HingeLoss,
    Loss,
    MAELoss,
    MSELoss,
    NLLLoss,
    one_hot,
)
from .module import Module
from .optim import SGD, Adam, AdamW, Optim, Optimizer, RMSprop
from .pooling import AvgPool1D, AvgPool2D, MaxPool1D, MaxPool2D
from .reshape import Flatten
from .serialization import load, save
from .training import (
    Callback,
    DivergenceError,
    EarlyStopping,
    LambdaCallback,
    evaluate,
    fit,
    predict,
    predict_proba,
    score,
    train,
)

__version__ = "0.1.0"

_warn_if_unoptimized(_core.debug_build)

__all__ = [
    "ABSLoss",
    "Adam",
    "AdamW",
    "RMSprop",
    "Callback",
    "EarlyStopping",
    "LambdaCallback",
    "DivergenceError",
    "evaluate",
    "predict_proba",
    "AutoEncoder",
    "AvgPool1D",
    "AvgPool2D",
    "BCELoss",
    "CELogSoftMax",
    "Conv1D",
    "Conv2D",
    "CrossEntropyCriterion",
    "CrossEntropyLoss",
    "Flatten",
    "GradcheckError",
    "HingeLoss",
    "LeakyReLU",
    "Softplus",
    "BatchNorm1D",
    "Dropout",
    "Linear",
    "LogSoftMax",
    "Loss",
    "MAELoss",
    "MSELoss",
    "MaxPool1D",
    "MaxPool2D",
    "Module",
    "NLLLoss",
    "Optim",
    "Optimizer",
    "ReLU",
    "SGD",
    "Sequential",
    "Sequentiel",
    "ShapeError",
    "Sigmoid",
    "Sigmoide",
    "SoftMax",
    "TanH",
    "Threshold",
    "fit",
    "get_default_dtype",
    "get_num_threads",
    "gradcheck",
    "load",
    "manual_seed",
    "one_hot",
    "predict",
    "save",
    "schedule",
    "score",
    "set_default_dtype",
    "set_num_threads",
    "train",
]
