"""Model files: a model's parameters in safetensors format (never pickle).

Tensor names and layouts are those of the matching torch model, so that
``torch_model.load_state_dict(safetensors.torch.load_file(path))`` works:

- a parameter's path keeps the children's names (``Sequential`` indices:
  ``"0"``, ``"1"``...; ``AutoEncoder``: ``"encoder"``/``"decoder"``);
- ``_parameters`` is saved as ``weight``, ``_bias`` as ``bias``;
- weights are saved in torch's layout: ``Linear`` ``(in, out)`` → ``(out, in)``,
  ``Conv1D`` ``(k, in, out)`` → ``(out, in, k)``, ``Conv2D`` ``(kh, kw, in, out)``
  → ``(out, in, kh, kw)``.

- a ``Linear`` right after a ``Flatten`` of a convolution's feature map has
  its input rows reordered: our channels-last ``Flatten`` orders features
  ``(L, C)`` (or ``(H, W, C)``), torch's channels-first one ``(C, L)``, so the
  same file gives the same outputs in both libraries.

Files are written to a temporary file in the target directory and renamed
into place, so a crash never leaves a half-written model file.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from .conv import _ConvNd
from .linear import Linear
from .module import Module
from .reshape import Flatten

__all__ = ["save", "load", "state_dict", "load_state_dict"]

_NAMES = {"_parameters": "weight", "_bias": "bias"}
# ours -> torch axis order, by the weight's number of dimensions
_TO_TORCH = {2: (1, 0), 3: (2, 1, 0), 4: (3, 2, 0, 1)}


def _leaves(model: Module, prefix: str = "") -> list[tuple[str, Module]]:
    """The leaf modules with their parameter-name prefixes, in forward order."""
    children = model.children()
    if not children:
        return [(prefix, model)]
    return [leaf for name, c in children for leaf in _leaves(c, f"{prefix}{name}.")]


def _flattened_channels(model: Module) -> dict[str, int]:
    """``{weight name: C}`` for each Linear fed by a Flatten of a C-channel feature map."""
    channels: int | None = None  # of the feature map flowing at this point
    pending: int | None = None  # set by a Flatten of a feature map
    found = {}
    for prefix, leaf in _leaves(model):
        if isinstance(leaf, _ConvNd):
            channels, pending = leaf.chan_out, None
        elif isinstance(leaf, Flatten):
            pending, channels = channels, None
        elif isinstance(leaf, Linear):
            if pending is not None and pending > 1:
                found[prefix + "_parameters"] = pending
            channels = pending = None
    return found


def _rows_to_torch(w: np.ndarray, c: int) -> np.ndarray:
    """Reorders a Linear weight's input rows from ``(L, C)`` to torch's ``(C, L)``."""
    f, out = w.shape
    return w.reshape(f // c, c, out).transpose(1, 0, 2).reshape(f, out)


def _rows_to_ours(w: np.ndarray, c: int) -> np.ndarray:
    f, out = w.shape
    return w.reshape(c, f // c, out).transpose(1, 0, 2).reshape(f, out)


def _torch_name(name: str) -> str:
    *path, attr = name.split(".")
    return ".".join([*path, _NAMES.get(attr, attr.lstrip("_"))])


def _to_torch(attr: str, a: np.ndarray) -> np.ndarray:
    axes = _TO_TORCH.get(a.ndim) if attr == "_parameters" else None
    return np.ascontiguousarray(a.transpose(axes) if axes else a)


def _to_ours(attr: str, a: np.ndarray) -> np.ndarray:
    axes = _TO_TORCH.get(a.ndim) if attr == "_parameters" else None
    return a.transpose(np.argsort(axes)) if axes else a


def state_dict(model: Module) -> dict[str, np.ndarray]:
    """The model's parameters as ``{torch name: array in torch layout}`` (copies)."""
    flattened = _flattened_channels(model)
    out = {}
    for name, p, _ in model.named_parameters():
        if name in flattened and p.shape[0] % flattened[name] == 0:
            p = _rows_to_torch(p, flattened[name])
        out[_torch_name(name)] = _to_torch(name.rsplit(".", 1)[-1], p)
    return out


def load_state_dict(model: Module, tensors: dict[str, np.ndarray], source: str = "") -> None:
    """Copies ``tensors`` (torch names and layouts) into the model's parameters, in place.

    Raises:
        ValueError: a parameter of the model has no tensor, a tensor matches no
            parameter, or a tensor's shape or dtype differs from its parameter's;
            the message names the tensors. Nothing is written then.
    """
    where = f" in {source}" if source else ""
    params = {_torch_name(name): (name, p) for name, p, _ in model.named_parameters()}
    missing = sorted(set(params) - set(tensors))
    unexpected = sorted(set(tensors) - set(params))
    if missing:
        names = ", ".join(repr(n) for n in missing)
        raise ValueError(f"load: the model's tensor(s) {names} are missing{where}")
    if unexpected:
        names = ", ".join(repr(n) for n in unexpected)
        raise ValueError(f"load: tensor(s) {names}{where} match no parameter of the model")
    flattened = _flattened_channels(model)
    values = {}
    for tname, (name, p) in params.items():
        t = tensors[tname]
        value = _to_ours(name.rsplit(".", 1)[-1], t)
        if name in flattened and value.shape == p.shape and p.shape[0] % flattened[name] == 0:
            value = _rows_to_ours(value, flattened[name])
        if value.shape != p.shape:
            expected = _to_torch(name.rsplit(".", 1)[-1], p).shape
            raise ValueError(
                f"load: tensor {tname!r}{where} has shape {tuple(t.shape)}, "
                f"the model expects {tuple(expected)}"
            )
        if value.dtype != p.dtype:
            raise ValueError(
                f"load: tensor {tname!r}{where} has dtype {value.dtype}, the model's is "
                f"{p.dtype} (cast the model with model.to({value.dtype.name}) first)"
            )
        values[tname] = value
    for tname, (_, p) in params.items():  # all checked: now write
        p[...] = values[tname]


def save(model: Module, path: str | os.PathLike[str]) -> None:
    """Writes the model's parameters to ``path`` (safetensors, torch names and layouts).

    Example:
        >>> save(net, "net.safetensors")  # doctest: +SKIP
    """
    from safetensors.numpy import save as st_save

    data = st_save(state_dict(model), metadata={"format": "pt", "library": "diy_nn"})
    target = Path(path)
    fd, tmp = tempfile.mkstemp(dir=target.parent or ".", prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load(model: Module, path: str | os.PathLike[str]) -> Module:
    """Loads parameters saved by ``save`` (or by torch) into ``model``; returns it.

    The model must have the same architecture: names, shapes and dtypes are
    checked and a mismatch raises an error naming the tensor.

    Example:
        >>> load(Sequential(Linear(2, 4), TanH()), "net.safetensors")  # doctest: +SKIP
    """
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        tensors = load_file(str(path))
    except SafetensorError as e:  # truncated, corrupted or hand-crafted: never executed
        raise ValueError(f"load: {path} is not a valid safetensors model file ({e})") from None
    load_state_dict(model, tensors, source=str(path))
    return model
