"""The training benchmark's implementations of one workload: diy_nn, torch (eager and
torch.compile) and a plain numpy reference. jax lives in ``training_jax.py``.

Each ``*_setup(w, x, y)`` builds the model and returns ``run()``, which goes once
through ``x`` in batches of ``w.batch``: a training step per batch (gradients of
the *summed* loss, the workload's optimizer rule and learning rate) or, for
inference workloads, a forward pass per batch. Setups raise (``ImportError``,
``NotImplementedError``...) where an implementation cannot run a workload; the
runner reports that as a skip.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from training_workloads import ADAM_BETAS, ADAM_EPS, LR, MOMENTUM, Workload

# --- diy_nn ----------------------------------------------------------------------------


# A workload layer kind -> its class's name in diy_nn and in torch.nn.
_LAYER_CLASSES = {
    "linear": ("Linear", "Linear"),
    "tanh": ("TanH", "Tanh"),
    "sigmoid": ("Sigmoid", "Sigmoid"),
    "relu": ("ReLU", "ReLU"),
    "conv1d": ("Conv1D", "Conv1d"),
    "conv2d": ("Conv2D", "Conv2d"),
    "maxpool1d": ("MaxPool1D", "MaxPool1d"),
    "maxpool2d": ("MaxPool2D", "MaxPool2d"),
    "avgpool2d": ("AvgPool2D", "AvgPool2d"),
    "flatten": ("Flatten", "Flatten"),
}


def _layer(lib: Any, torch_names: bool, layer: tuple[Any, ...]) -> Any:
    """Builds one workload layer from ``lib`` (diy_nn, or torch.nn when ``torch_names``).

    Convolutions take ``(k, c_in, c_out)`` in diy_nn and ``(c_in, c_out, k)`` in torch;
    every other layer takes the workload's arguments as they are.
    """
    kind, a = layer[0], layer[1:]
    cls = getattr(lib, _LAYER_CLASSES[kind][torch_names])
    if kind in ("conv1d", "conv2d"):
        k, cin, cout, stride, padding = a
        sizes = (cin, cout, k) if torch_names else (k, cin, cout)
        return cls(*sizes, stride=stride, padding=padding)
    return cls(*a)


def _forward_per_batch(
    forward: Callable[[np.ndarray], object], x: np.ndarray, batch: int
) -> Callable[[], None]:
    """An inference workload's ``run()``: ``forward`` on each batch of ``x`` in turn."""

    def infer() -> None:
        for i in range(0, len(x), batch):
            forward(x[i : i + batch])

    return infer


def diy_setup(w: Workload, x: np.ndarray, y: np.ndarray) -> Callable[[], None]:
    import diy_nn as dn

    dn.set_default_dtype(np.dtype(w.dtype).type)
    layers = [_layer(dn, False, layer) for layer in w.layers]
    net = dn.Sequential(*layers)
    b = w.batch
    if w.mode == "infer":
        return _forward_per_batch(net.forward, x, b)
    loss = {"ce": dn.CELogSoftMax, "bce": dn.BCELoss, "mae": dn.MAELoss}[w.loss]()
    if w.loop == "course":
        return _diy_course_loop(layers, loss, w, x, y)
    if w.optimizer == "adam":
        opt = dn.Adam(net, loss, eps=LR, betas=ADAM_BETAS, epsilon=ADAM_EPS)
    elif w.optimizer == "momentum":
        opt = dn.SGD(net, loss, eps=LR, momentum=MOMENTUM)
    else:
        opt = dn.Optim(net, loss, eps=LR)

    def epoch() -> None:
        for i in range(0, len(x), b):
            opt.step(x[i : i + b], y[i : i + b])

    return epoch


def _diy_course_loop(
    layers: list[Any], loss: Any, w: Workload, x: np.ndarray, y: np.ndarray
) -> Callable[[], None]:
    """The course's way to train: ``forward`` through each layer, then from the last
    layer back, per layer ``zero_grad``, ``backward_update_gradient``, ``backward_delta``
    (not for the first layer: its input needs no gradient, as in the other frameworks)
    and ``update_parameters``."""
    if w.optimizer != "sgd":
        raise NotImplementedError("the course loop updates with plain SGD only")
    b = w.batch

    def epoch() -> None:
        for i in range(0, len(x), b):
            h, yb = x[i : i + b], y[i : i + b]
            inputs = []
            for layer in layers:
                inputs.append(h)
                h = layer.forward(h)
            loss.forward(yb, h)
            delta = loss.backward(yb, h)
            for j in range(len(layers) - 1, -1, -1):
                layer = layers[j]
                layer.zero_grad()
                layer.backward_update_gradient(inputs[j], delta)
                if j:
                    delta = layer.backward_delta(inputs[j], delta)
                layer.update_parameters(LR)

    return epoch


# --- torch -----------------------------------------------------------------------------


def _torch_model(w: Workload) -> Any:
    import torch
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(*(_layer(nn, True, layer) for layer in w.layers))
    return model.to(getattr(torch, w.dtype))


def _torch_setup(
    w: Workload, x: np.ndarray, y: np.ndarray, compile: bool = False
) -> Callable[[], None]:
    import torch
    from torch import nn

    model = _torch_model(w)
    # torch is channels first: (N, C, L) and (N, C, H, W).
    tx = torch.from_numpy(np.ascontiguousarray(np.moveaxis(x, -1, 1)) if x.ndim > 2 else x)
    ty = torch.from_numpy(y)
    b = w.batch
    if w.mode == "infer":
        fwd = torch.compile(model, dynamic=False) if compile else model

        def infer() -> None:
            with torch.inference_mode():
                for i in range(0, len(tx), b):
                    fwd(tx[i : i + b])

        return infer
    loss = {
        "ce": nn.CrossEntropyLoss(reduction="sum"),
        "bce": nn.BCELoss(reduction="sum"),
        "mae": nn.L1Loss(reduction="sum"),
    }[w.loss]
    params = model.parameters()
    if w.optimizer == "adam":
        opt: torch.optim.Optimizer = torch.optim.Adam(params, lr=LR, betas=ADAM_BETAS, eps=ADAM_EPS)
    else:
        opt = torch.optim.SGD(params, lr=LR, momentum=MOMENTUM if w.optimizer == "momentum" else 0)

    def forward_loss(xb: Any, yb: Any) -> Any:
        return loss(model(xb), yb)

    # torch.compile: the forward and the loss in one graph, its backward built by
    # AOTAutograd; the optimizer step stays eager (foreach kernels).
    step_loss = torch.compile(forward_loss, dynamic=False) if compile else forward_loss

    def epoch() -> None:
        for i in range(0, len(tx), b):
            opt.zero_grad()
            step_loss(tx[i : i + b], ty[i : i + b]).backward()
            opt.step()

    return epoch


def torch_setup(w: Workload, x: np.ndarray, y: np.ndarray) -> Callable[[], None]:
    return _torch_setup(w, x, y)


def torch_compile_setup(w: Workload, x: np.ndarray, y: np.ndarray) -> Callable[[], None]:
    import torch

    if not hasattr(torch, "compile"):
        raise ImportError(f"torch {torch.__version__} has no torch.compile")
    return _torch_setup(w, x, y, compile=True)


# --- plain numpy: the straightforward reference ----------------------------------------


class NumpyNet:
    """Explicit forward/backward in numpy, channels last, stride-1 unpadded convs, 2x2
    max pools; updated by plain SGD, SGD with momentum or Adam (torch's rules)."""

    def __init__(self, w: Workload) -> None:
        rng = np.random.default_rng(0)
        self.dtype = np.dtype(w.dtype)
        self.layers: list[dict[str, Any]] = []
        for layer in w.layers:
            kind, args = layer[0], layer[1:]
            if kind in ("conv1d", "conv2d") and tuple(args[3:]) != (1, 0):
                raise NotImplementedError("numpy reference: stride-1 unpadded convs only")
            if kind.startswith(("maxpool", "avgpool")) and (kind[:3] == "avg" or args != (2, 2)):
                raise NotImplementedError("numpy reference: 2x2 max pools only")
            entry: dict[str, Any] = {"kind": kind, "args": args}
            if kind == "linear" or kind.startswith("conv"):
                if kind == "linear":
                    shape, fan_in = (args[0], args[1]), args[0]
                else:
                    k, cin, cout = args[:3]
                    nd = 1 if kind == "conv1d" else 2
                    shape, fan_in = (k,) * nd + (cin, cout), k**nd * cin
                bound = 1 / np.sqrt(fan_in)
                entry["W"] = rng.uniform(-bound, bound, shape).astype(self.dtype)
                entry["b"] = rng.uniform(-bound, bound, shape[-1]).astype(self.dtype)
            self.layers.append(entry)
        self.optimizer, self.t = w.optimizer, 0

    def forward(self, x: np.ndarray) -> np.ndarray:
        for layer in self.layers:
            layer["x"] = x
            kind = layer["kind"]
            if kind == "linear":
                x = x @ layer["W"] + layer["b"]
            elif kind == "tanh":
                x = np.tanh(x)
                layer["y"] = x
            elif kind == "sigmoid":
                x = 1 / (1 + np.exp(-x))
                layer["y"] = x
            elif kind == "relu":
                x = np.maximum(x, 0)
            elif kind == "conv1d":
                W = layer["W"]
                k = W.shape[0]
                lo = x.shape[1] - k + 1
                out = np.empty((x.shape[0], lo, W.shape[-1]), self.dtype)
                out[...] = layer["b"]
                for i in range(k):
                    out += x[:, i : i + lo] @ W[i]
                x = out
            elif kind == "conv2d":
                W = layer["W"]
                k = W.shape[0]
                ho, wo = x.shape[1] - k + 1, x.shape[2] - k + 1
                out = np.empty((x.shape[0], ho, wo, W.shape[-1]), self.dtype)
                out[...] = layer["b"]
                for i in range(k):
                    for j in range(k):
                        out += x[:, i : i + ho, j : j + wo] @ W[i, j]
                x = out
            elif kind == "maxpool1d":  # k == stride == 2
                n, length, c = x.shape
                x = x[:, : length // 2 * 2].reshape(n, length // 2, 2, c).max(axis=2)
            elif kind == "maxpool2d":
                n, h, w, c = x.shape
                x = x[:, : h // 2 * 2, : w // 2 * 2]
                x = x.reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))
            elif kind == "flatten":
                x = x.reshape(x.shape[0], -1)
            layer["out"] = x
        return x

    def backward(self, delta: np.ndarray) -> None:
        for idx in range(len(self.layers) - 1, -1, -1):
            layer = self.layers[idx]
            kind, x = layer["kind"], layer["x"]
            first = idx == 0
            if kind == "linear":
                layer["gW"] = x.T @ delta
                layer["gb"] = delta.sum(axis=0)
                if not first:
                    delta = delta @ layer["W"].T
            elif kind == "tanh":
                delta = delta * (1 - layer["y"] ** 2)
            elif kind == "sigmoid":
                delta = delta * layer["y"] * (1 - layer["y"])
            elif kind == "relu":
                delta = delta * (x > 0)
            elif kind == "conv1d":
                W = layer["W"]
                k, cin, cout = W.shape
                lo = delta.shape[1]
                d2 = delta.reshape(-1, cout)
                layer["gW"] = np.stack([x[:, i : i + lo].reshape(-1, cin).T @ d2 for i in range(k)])
                layer["gb"] = d2.sum(axis=0)
                if not first:
                    dx = np.zeros_like(x)
                    for i in range(k):
                        dx[:, i : i + lo] += delta @ W[i].T
                    delta = dx
            elif kind == "conv2d":
                W = layer["W"]
                k, _, cin, cout = W.shape
                ho, wo = delta.shape[1:3]
                d2 = delta.reshape(-1, cout)
                gW = np.empty_like(W)
                for i in range(k):
                    for j in range(k):
                        gW[i, j] = x[:, i : i + ho, j : j + wo].reshape(-1, cin).T @ d2
                layer["gW"] = gW
                layer["gb"] = d2.sum(axis=0)
                if not first:
                    dx = np.zeros_like(x)
                    for i in range(k):
                        for j in range(k):
                            dx[:, i : i + ho, j : j + wo] += delta @ W[i, j].T
                    delta = dx
            elif kind == "maxpool1d":
                n, length, c = x.shape
                xs = x[:, : length // 2 * 2].reshape(n, length // 2, 2, c)
                mask = xs == layer["out"][:, :, None]
                dx = np.zeros_like(x)
                dx[:, : length // 2 * 2] = (mask * delta[:, :, None]).reshape(n, -1, c)
                delta = dx
            elif kind == "maxpool2d":
                n, h, w, c = x.shape
                h2, w2 = h // 2 * 2, w // 2 * 2
                xs = x[:, :h2, :w2].reshape(n, h // 2, 2, w // 2, 2, c)
                mask = xs == layer["out"][:, :, None, :, None]
                dx = np.zeros_like(x)
                dx[:, :h2, :w2] = (mask * delta[:, :, None, :, None]).reshape(n, h2, w2, c)
                delta = dx
            elif kind == "flatten":
                delta = delta.reshape(x.shape)

    def update(self, lr: float) -> None:
        self.t += 1
        b1, b2 = ADAM_BETAS
        for layer in self.layers:
            for p, g in (("W", "gW"), ("b", "gb")):
                if p not in layer:
                    continue
                param, grad = layer[p], layer[g]
                if self.optimizer == "momentum":
                    v = layer.setdefault("v" + p, np.zeros_like(param))
                    v *= MOMENTUM
                    v += grad
                    param -= lr * v
                elif self.optimizer == "adam":
                    m = layer.setdefault("m" + p, np.zeros_like(param))
                    v = layer.setdefault("v" + p, np.zeros_like(param))
                    m *= b1
                    m += (1 - b1) * grad
                    v *= b2
                    v += (1 - b2) * grad * grad
                    c1, c2 = 1 - b1**self.t, 1 - b2**self.t
                    param -= lr * (m / c1) / (np.sqrt(v / c2) + ADAM_EPS)
                else:
                    param -= lr * grad


def numpy_loss_grad(kind: str, y: np.ndarray, yhat: np.ndarray) -> tuple[float, np.ndarray]:
    """The summed loss and its gradient with respect to ``yhat``."""
    if kind == "ce":
        z = yhat - yhat.max(axis=1, keepdims=True)
        e = np.exp(z)
        s = e.sum(axis=1, keepdims=True)
        rows = np.arange(len(y))
        cost = float(np.sum(np.log(s[:, 0]) - z[rows, y]))
        grad = e / s
        grad[rows, y] -= 1
        return cost, grad
    if kind == "bce":
        p = np.clip(yhat, 1e-7, 1 - 1e-7)
        cost = float(-np.sum(y * np.log(p) + (1 - y) * np.log(1 - p)))
        return cost, (p - y) / (p * (1 - p))
    diff = yhat - y
    return float(np.abs(diff).sum()), np.sign(diff).astype(yhat.dtype)


def numpy_setup(w: Workload, x: np.ndarray, y: np.ndarray) -> Callable[[], None]:
    net = NumpyNet(w)
    b = w.batch
    if w.mode == "infer":
        return _forward_per_batch(net.forward, x, b)

    def epoch() -> None:
        for i in range(0, len(x), b):
            yhat = net.forward(x[i : i + b])
            _, grad = numpy_loss_grad(w.loss, y[i : i + b], yhat)
            net.backward(grad)
            net.update(LR)

    return epoch
