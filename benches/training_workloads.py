"""The training benchmark's workloads: layer lists shared by every implementation.

A workload is a network (a tuple of layer specs), an input shape, a loss, a
batch size, a dtype, how diy_nn drives it (``Optim.step`` or the per-layer
course loop), the optimizer rule and the number of samples one timed run goes
through. Layer specs, channels last:

    ("linear", in, out) | ("tanh",) | ("sigmoid",) | ("relu",)
    | ("conv1d", k, cin, cout, stride, padding) | ("conv2d", k, cin, cout, stride, padding)
    | ("maxpool1d", k, s) | ("maxpool2d", k, s) | ("avgpool2d", k, s) | ("flatten",)

Workloads are grouped in suites (``SUITES``) so that one group can be run alone.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

N_SAMPLES = 7291  # the USPS training set: the five original workloads train one epoch of it
LR = 1e-4
MOMENTUM = 0.9
ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8

Layers = tuple[tuple[Any, ...], ...]


@dataclass(frozen=True)
class Workload:
    name: str
    title: str
    layers: Layers
    input_shape: tuple[int, ...]  # one sample, channels last
    loss: str  # "ce" (on logits), "bce", "mae"; unused for inference
    batch: int
    n_classes: int = 10
    dtype: str = "float32"
    loop: str = "optim"  # diy_nn's driver: "optim" (Optim/SGD/Adam.step) or "course"
    optimizer: str = "sgd"  # "sgd", "momentum" (SGD, momentum 0.9) or "adam"
    mode: str = "train"  # "train" (forward, loss, gradient, update) or "infer" (forward)
    samples: int = N_SAMPLES  # samples per timed run (one epoch of the workload's data)

    def steps(self, samples: int) -> int:
        """Steps (batches) in a run over ``samples`` samples."""
        return -(-samples // self.batch)


def _mlp(*sizes: int, act: str = "tanh", last: str | None = None) -> Layers:
    layers: list[tuple[Any, ...]] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=False)):
        layers.append(("linear", a, b))
        if i < len(sizes) - 2:
            layers.append((act,))
    if last:
        layers.append((last,))
    return tuple(layers)


def out_shape(layers: Layers, input_shape: tuple[int, ...]) -> tuple[int, ...]:
    """The shape of one sample after ``layers``."""
    shape = input_shape
    for layer in layers:
        kind = layer[0]
        if kind == "linear":
            shape = (layer[2],)
        elif kind in ("conv1d", "conv2d"):
            k, _, cout, s, p = layer[1:]
            shape = (*((n + 2 * p - k) // s + 1 for n in shape[:-1]), cout)
        elif kind in ("maxpool1d", "maxpool2d", "avgpool2d"):
            k, s = layer[1:]
            shape = (*((n - k) // s + 1 for n in shape[:-1]), shape[-1])
        elif kind == "flatten":
            shape = (int(np.prod(shape)),)
    return shape


def _cnn(
    input_shape: tuple[int, ...],
    channels: tuple[int, ...],
    k: int,
    padding: int,
    stride: int = 1,
    pool: str | None = "maxpool2d",
    pool_first: bool = False,
    hidden: int | None = None,
) -> Layers:
    """conv -> ReLU -> pool blocks (or conv -> pool -> ReLU), flatten, [Linear -> ReLU], Linear."""
    layers: list[tuple[Any, ...]] = []
    cin = input_shape[-1]
    for cout in channels:
        layers.append(("conv2d", k, cin, cout, stride, padding))
        block = [("relu",), (pool, 2, 2)] if pool else [("relu",)]
        layers.extend(reversed(block) if pool_first else block)
        cin = cout
    layers.append(("flatten",))
    width = out_shape(tuple(layers), input_shape)[0]
    if hidden:
        layers += [("linear", width, hidden), ("relu",)]
        width = hidden
    layers.append(("linear", width, 10))
    return tuple(layers)


# --- the five original workloads (the course's models, USPS-shaped, float32) ----------

BASE = (
    Workload("mlp", "MLP 256-128-64-10 TanH, CE, b=100", _mlp(256, 128, 64, 10), (256,), "ce", 100),
    Workload(
        "autoencoder",
        "AE 256-100-10-100-256, BCE, b=10",
        _mlp(256, 100, 10, 100, 256, last="sigmoid"),
        (256,),
        "bce",
        10,
    ),
    Workload(
        "cnn2d",
        "Conv2D(3,1,32)-MaxPool2D-FC, CE, b=100",
        (
            ("conv2d", 3, 1, 32, 1, 0),
            ("maxpool2d", 2, 2),
            ("flatten",),
            ("linear", 1568, 100),
            ("relu",),
            ("linear", 100, 10),
        ),
        (16, 16, 1),
        "ce",
        100,
    ),
    Workload(
        "cnn1d",
        "Conv1D(3,1,32)-MaxPool1D-FC, CE, b=100",
        (
            ("conv1d", 3, 1, 32, 1, 0),
            ("maxpool1d", 2, 2),
            ("flatten",),
            ("linear", 4064, 100),
            ("relu",),
            ("linear", 100, 10),
        ),
        (256, 1),
        "ce",
        100,
    ),
    Workload(
        "ecg",
        "ECG AE 140-32-16-8-16-32-140, MAE, b=32",
        _mlp(140, 32, 16, 8, 16, 32, 140, last="sigmoid"),
        (140,),
        "mae",
        32,
    ),
)
_BY_NAME = {w.name: w for w in BASE}


def _f64(w: Workload) -> Workload:
    return replace(w, name=f"{w.name}_f64", title=f"{w.title}, f64", dtype="float64")


def _course(w: Workload) -> Workload:
    return replace(w, name=f"{w.name}_course", title=f"{w.title}, course loop", loop="course")


def _opt(w: Workload, rule: str) -> Workload:
    label = {"momentum": "SGD momentum 0.9", "adam": "Adam"}[rule]
    return replace(w, name=f"{w.name}_{rule}", title=f"{w.title}, {label}", optimizer=rule)


# --- issue 16: two-conv 28x28 CNN, both activation orders ------------------------------

CNN28 = (
    Workload(
        "cnn28",
        "28x28 2x[conv3 p1-ReLU-maxpool] 16,32 ch, CE, b=64",
        _cnn((28, 28, 1), (16, 32), 3, 1),
        (28, 28, 1),
        "ce",
        64,
    ),
    Workload(
        "cnn28_poolfirst",
        "28x28 2x[conv3 p1-maxpool-ReLU] 16,32 ch, CE, b=64",
        _cnn((28, 28, 1), (16, 32), 3, 1, pool_first=True),
        (28, 28, 1),
        "ce",
        64,
    ),
)

# --- issue 18: CIFAR-sized conv nets and wide dense nets ------------------------------

_CIFAR_IN = (32, 32, 3)
_CIFAR_RUN = 640  # 10 steps of batch 64 per timed run


def _cifar(name: str, title: str, layers: Layers) -> Workload:
    return Workload(name, f"32x32x3 {title}, b=64", layers, _CIFAR_IN, "ce", 64, samples=_CIFAR_RUN)


CIFAR = (
    _cifar("cifar3", "conv3 p1-ReLU-maxpool 32,64", _cnn(_CIFAR_IN, (32, 64), 3, 1)),
    _cifar(
        "cifar3_avg",
        "conv3 p1-ReLU-avgpool 32,64",
        _cnn(_CIFAR_IN, (32, 64), 3, 1, pool="avgpool2d"),
    ),
    _cifar(
        "cifar3_poolfirst",
        "conv3 p1-maxpool-ReLU 32,64",
        _cnn(_CIFAR_IN, (32, 64), 3, 1, pool_first=True),
    ),
    _cifar("cifar5", "conv5 p2-ReLU-maxpool 32,64", _cnn(_CIFAR_IN, (32, 64), 5, 2)),
    _cifar("cifar7", "conv7 p2-ReLU-maxpool 32,64", _cnn(_CIFAR_IN, (32, 64), 7, 2)),
    _cifar(
        "cifar3_s2",
        "conv3 s2 p1-ReLU 32,64, no pool",
        _cnn(_CIFAR_IN, (32, 64), 3, 1, 2, pool=None),
    ),
    _cifar("cifar3_odd", "conv3 p1-ReLU-maxpool 17,33", _cnn(_CIFAR_IN, (17, 33), 3, 1)),
)

_WIDE = _mlp(784, 512, 512, 512, 10, act="relu")
DENSE = (
    Workload(
        "mlp512_b1024",
        "MLP 784-512-512-512-10 ReLU, CE, b=1024",
        _WIDE,
        (784,),
        "ce",
        1024,
        samples=4096,
    ),
    Workload(
        "mlp512_b128",
        "MLP 784-512-512-512-10 ReLU, CE, b=128",
        _WIDE,
        (784,),
        "ce",
        128,
        samples=1024,
    ),
)

INFER = (
    Workload(
        "infer_mlp512_b1",
        "MLP 784-512-512-512-10 ReLU forward, b=1",
        _WIDE,
        (784,),
        "ce",
        1,
        mode="infer",
        samples=500,
    ),
    Workload(
        "infer_conv1d",
        "Conv1D(9, 8->16) forward, L=1000, b=32",
        (("conv1d", 9, 8, 16, 1, 0),),
        (1000, 8),
        "ce",
        32,
        mode="infer",
        samples=32 * 40,
    ),
)


def _with_f64(ws: tuple[Workload, ...]) -> tuple[Workload, ...]:
    return tuple(v for w in ws for v in (w, _f64(w)))


_CIFAR3 = CIFAR[0]
_B128 = DENSE[1]
SUITES: dict[str, tuple[Workload, ...]] = {
    # the original five, float32 (the default)
    "base": BASE,
    # issue 16
    "f64": tuple(_f64(w) for w in BASE),
    "course": tuple(_course(_BY_NAME[n]) for n in ("mlp", "autoencoder", "cnn2d")),
    "cnn28": CNN28,
    "optim": tuple(_opt(w, r) for w in (_BY_NAME["mlp"], CNN28[0]) for r in ("momentum", "adam")),
    # issue 18, each net in float32 and float64
    "cifar": _with_f64(CIFAR),
    "dense": _with_f64(DENSE),
    "issue18_loops": (
        _course(_CIFAR3),
        _course(CIFAR[5]),
        _course(DENSE[0]),
        _course(_B128),
        *(_opt(w, r) for w in (_CIFAR3, _B128) for r in ("momentum", "adam")),
    ),
    "infer": _with_f64(INFER),
}
WORKLOADS: dict[str, Workload] = {w.name: w for ws in SUITES.values() for w in ws}
SUITES["all"] = tuple(WORKLOADS.values())


def flops_per_sample(w: Workload) -> float:
    """Multiply-adds x 2 of one sample's forward (+ backward: d weights, d input except
    for the first layer, when training)."""
    shape = w.input_shape
    total = 0.0
    for i, layer in enumerate(w.layers):
        kind = layer[0]
        passes = 1 if w.mode == "infer" else 2 if i == 0 else 3
        if kind == "linear":
            total += passes * 2 * layer[1] * layer[2]
        elif kind in ("conv1d", "conv2d"):
            k, cin, cout = layer[1:4]
            spatial = out_shape((layer,), shape)[:-1]
            total += passes * 2 * int(np.prod(spatial)) * k ** len(spatial) * cin * cout
        shape = out_shape((layer,), shape)
    return total


def make_data(w: Workload, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Inputs in [0, 1) (channels last, the workload's dtype) and targets: class indices
    or the inputs."""
    rng = np.random.default_rng(0)
    x = rng.random((n, *w.input_shape), dtype=np.dtype(w.dtype).type)
    if w.loss == "ce":
        return x, rng.integers(0, w.n_classes, n).astype(np.int64)
    return x, x.reshape(n, -1).copy()
