"""Model files: a model's parameters in safetensors format (never pickle).

Tensor names and layouts are those of the matching torch model, so that
``torch_model.load_state_dict(safetensors.torch.load_file(path))`` works:

- a parameter's path keeps the children's names (``Sequential`` indices:
  ``"0"``, ``"1"``...; ``AutoEncoder``: ``"encoder"``/``"decoder"``);
- ``_parameters`` is saved as ``weight``, ``_bias`` as ``bias``;
- weights are saved in torch's layout: ``Linear`` ``(in, out)`` → ``(out, in)``,
  ``Conv1D`` ``(k, in, out)`` → ``(out, in, k)``, ``Conv2D`` ``(kh, kw, in, out)``
  → ``(out, in, kh, kw)``.

- buffers are saved beside the parameters, under their own names, as torch's
  ``state_dict`` does: ``BatchNorm1D``'s ``running_mean``, ``running_var`` and
  ``num_batches_tracked`` (int64, shape ``()``), so that a loaded model gives the
  same outputs in evaluation mode.

- a ``Linear`` right after a ``Flatten`` of a convolution's feature map has
  its input rows reordered: our channels-last ``Flatten`` orders features
  ``(L, C)`` (or ``(H, W, C)``), torch's channels-first one ``(C, L)``, so the
  same file gives the same outputs in both libraries.

Saving writes a temporary file in the target's directory and renames it into
place, so a crash never leaves a half-written model file; loading checks the
file's header (names, shapes, dtypes) before it reads any tensor.
"""

from __future__ import annotations

import errno
import json
import os
import secrets
import stat
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO

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
    return np.array(a.transpose(axes) if axes else a, order="C")  # a copy; keeps 0-d tensors


def _to_ours(attr: str, a: np.ndarray) -> np.ndarray:
    axes = _TO_TORCH.get(a.ndim) if attr == "_parameters" else None
    return a.transpose(np.argsort(axes)) if axes else a


def _buffers(model: Module) -> list[tuple[str, np.ndarray]]:
    """``(our name, array)`` for every buffer (a module's ``_buffer_names``: state
    that is saved but not trained), each module once."""
    return [
        (path + b, getattr(module, b))
        for path, module in model.named_modules()
        for b in getattr(module, "_buffer_names", ())
    ]


def _named_tensors(model: Module) -> list[tuple[str, np.ndarray]]:
    """``(our name, array)`` for every parameter, then every buffer."""
    return [(name, p) for name, p, _ in model.named_parameters()] + _buffers(model)


def state_dict(model: Module) -> dict[str, np.ndarray]:
    """The model's parameters and buffers as ``{torch name: array in torch layout}`` (copies)."""
    flattened = _flattened_channels(model)
    out = {}
    for name, p in _named_tensors(model):
        if name in flattened and p.shape[0] % flattened[name] == 0:
            p = _rows_to_torch(p, flattened[name])
        out[_torch_name(name)] = _to_torch(name.rsplit(".", 1)[-1], p)
    return out


# safetensors dtype codes -> numpy names; float16/bfloat16 are widened on load
_DTYPE_NAMES = {
    "F64": "float64",
    "F32": "float32",
    "F16": "float16",
    "BF16": "bfloat16",
    "I64": "int64",
}
_WIDENED = ("float16", "bfloat16")


def _check_dtype(label: str, model_dtype: np.dtype, tensor: str, where: str) -> None:
    """Refuses a tensor of dtype ``label`` (numpy name or safetensors code) for a
    parameter of ``model_dtype``: float16 and bfloat16 are widened exactly, a
    float32/float64 tensor must match the model (``model.to`` casts it), and
    anything else cannot be loaded."""
    name = _DTYPE_NAMES.get(label, label)
    if name == model_dtype.name or (name in _WIDENED and model_dtype.kind == "f"):
        return
    if model_dtype.kind != "f":  # a counter (num_batches_tracked): its own dtype only
        raise ValueError(
            f"load: tensor {tensor!r}{where} has dtype {label}, diy_nn expects {model_dtype.name}"
        )
    if name in ("float32", "float64"):
        raise ValueError(
            f"load: tensor {tensor!r}{where} has dtype {name}, the model's is "
            f"{model_dtype.name} (cast the model with model.to(np.{name}) first)"
        )
    raise ValueError(
        f"load: tensor {tensor!r}{where} has dtype {label}, which diy_nn cannot load "
        "(it loads float32 and float64, and widens float16 and bfloat16 to the model's dtype)"
    )


def _check(
    model: Module, declared: Mapping[str, tuple[str, tuple[int, ...]]], where: str
) -> dict[str, tuple[str, np.ndarray]]:
    """Checks ``{torch name: (dtype, shape)}`` against the model's parameters.

    Returns ``{torch name: (our name, parameter)}``. Raises ``ValueError`` naming
    the tensors when a parameter has no tensor, a tensor matches no parameter,
    or a shape or dtype cannot be loaded.
    """
    params = {_torch_name(name): (name, p) for name, p in _named_tensors(model)}
    missing = sorted(set(params) - set(declared))
    unexpected = sorted(set(declared) - set(params))
    if missing:
        names = ", ".join(repr(n) for n in missing)
        if set(missing) <= {_torch_name(name) for name, _ in _buffers(model)}:
            raise ValueError(
                f"load: the model's buffer(s) {names} are missing{where}: files written by "
                "diy_nn before it saved BatchNorm1D's running statistics hold the weights "
                "only, and evaluation mode would use wrong statistics; save the trained "
                "model again with diy_nn.save"
            )
        raise ValueError(f"load: the model's tensor(s) {names} are missing{where}")
    if unexpected:
        names = ", ".join(repr(n) for n in unexpected)
        raise ValueError(f"load: tensor(s) {names}{where} match no parameter of the model")
    for tname, (name, p) in params.items():
        dtype, shape = declared[tname]
        expected = _to_torch(name.rsplit(".", 1)[-1], p).shape
        if tuple(shape) != expected:
            raise ValueError(
                f"load: tensor {tname!r}{where} has shape {tuple(shape)}, "
                f"the model expects {tuple(expected)}"
            )
        _check_dtype(dtype, p.dtype, tname, where)
    return params


def load_state_dict(model: Module, tensors: dict[str, np.ndarray], source: str = "") -> None:
    """Copies ``tensors`` (torch names and layouts) into the model's parameters and
    buffers, in place.

    float16 (and bfloat16) tensors are widened to the parameter's dtype.

    Raises:
        ValueError: a parameter or buffer of the model has no tensor (an old
            file without BatchNorm1D's running statistics says so), a tensor
            matches none, or a tensor's shape or dtype differs from its
            parameter's; the message names the tensors. Nothing is written then.
    """
    where = f" in {source}" if source else ""
    declared = {k: (np.asarray(t).dtype.name, np.shape(t)) for k, t in tensors.items()}
    params = _check(model, declared, where)
    flattened = _flattened_channels(model)
    values = {}
    for tname, (name, p) in params.items():
        value = _to_ours(name.rsplit(".", 1)[-1], np.asarray(tensors[tname]))
        if name in flattened and p.shape[0] % flattened[name] == 0:
            value = _rows_to_ours(value, flattened[name])
        values[tname] = value
    for tname, (_, p) in params.items():  # all checked: now write (widening float16)
        p[...] = values[tname]


# --- files --------------------------------------------------------------------------

_TMP_TAG = ".diy_nn-"  # temporary names: .<name>.diy_nn-<pid>-<random>.tmp


def _kind(mode: int) -> str:
    """What a non-regular file is, for messages."""
    kinds = [
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISFIFO, "a named pipe"),
        (stat.S_ISSOCK, "a socket"),
    ]
    return next((word for test, word in kinds if test(mode)), "not a regular file")


def _save_target(shown: str) -> tuple[Path, int | None]:
    """The file ``save`` writes for the path the user gave (a symlink's target,
    so that the link stays) and the mode to keep (the existing file's, as
    ``open`` keeps it), or errors naming ``shown``."""
    if shown == "":
        raise FileNotFoundError(errno.ENOENT, "save: the path is empty", shown)
    target = Path(os.path.realpath(shown))
    try:
        st = target.stat()
    except FileNotFoundError:
        if not target.parent.is_dir():
            raise FileNotFoundError(
                errno.ENOENT, f"save: the directory {str(target.parent)!r} does not exist", shown
            ) from None
        return target, None
    if stat.S_ISDIR(st.st_mode):
        raise IsADirectoryError(errno.EISDIR, "save: the path is a directory", shown)
    if not stat.S_ISREG(st.st_mode):  # never replace a device or a pipe by a file
        raise ValueError(f"save: {shown!r} is {_kind(st.st_mode)}, not a model file")
    return target, stat.S_IMODE(st.st_mode)


def _remove_stale_temps(target: Path) -> None:
    """Removes the temporary files that killed saves of ``target`` left behind:
    those of our naming whose process no longer exists."""
    prefix, mine = f".{target.name}{_TMP_TAG}", os.getpid()
    try:
        entries = list(os.scandir(target.parent))
    except OSError:
        return
    for entry in entries:
        if not (entry.name.startswith(prefix) and entry.name.endswith(".tmp")):
            continue
        pid = entry.name[len(prefix) :].split("-", 1)[0]
        if not pid.isdigit() or int(pid) == mine or _alive(int(pid)):
            continue
        try:
            os.unlink(entry.path)
        except OSError:
            pass  # removed by another save meanwhile, or not ours to remove


def _alive(pid: int) -> bool:
    """Whether process ``pid`` exists (on Windows, assumed: ``os.kill`` would end it)."""
    if os.name == "nt":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, another user's
        return True
    return True


def save(model: Module, path: str | os.PathLike[str]) -> None:
    """Writes the model's parameters to ``path`` (safetensors, torch names and layouts).

    Like ``open(path, "wb")``: a new file's mode follows the umask, an existing
    file keeps its mode, and a symlink stays a link, its target rewritten. The
    bytes go to a temporary file in the same directory, renamed over the target
    once complete (an interrupted save leaves the previous file whole); the
    temporary files of killed saves are removed by the next save of the path.

    Raises:
        FileNotFoundError: ``path`` is empty or its directory does not exist.
        IsADirectoryError: ``path`` is a directory.
        ValueError: ``path`` is a device, a pipe or a socket (left alone).

    Example:
        >>> save(net, "net.safetensors")  # doctest: +SKIP
    """
    from safetensors.numpy import save as st_save

    shown = os.fspath(path)
    target, keep_mode = _save_target(shown)
    data = st_save(state_dict(model), metadata={"format": "pt", "library": "diy_nn"})
    _remove_stale_temps(target)
    tmp = target.with_name(f".{target.name}{_TMP_TAG}{os.getpid()}-{secrets.token_hex(4)}.tmp")
    try:  # 0o666 less the umask, as open() creates files
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
    except OSError as e:
        raise OSError(e.errno, f"save: cannot write to {shown!r}: {e.strerror}", shown) from None
    try:
        if keep_mode is not None:
            os.chmod(tmp, keep_mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _open_model_file(shown: str) -> BinaryIO:
    """Opens ``shown`` for reading after checking it is a regular file (a pipe
    would block, a directory or device is no model file); errors name it."""
    try:
        st = os.stat(shown)
    except FileNotFoundError:
        raise FileNotFoundError(errno.ENOENT, "load: no such file", shown) from None
    if stat.S_ISDIR(st.st_mode):
        raise IsADirectoryError(errno.EISDIR, "load: the path is a directory", shown)
    if not stat.S_ISREG(st.st_mode):
        raise ValueError(f"load: {shown!r} is {_kind(st.st_mode)}, not a model file")
    return open(shown, "rb")


def _read_tensor(
    f: BinaryIO, base: int, entry: dict[str, Any], dtype: np.dtype[Any], shown: str
) -> np.ndarray:
    """The tensor at ``entry`` (a header entry) of ``shown``, open as ``f``, as ``dtype``."""
    begin, end = entry["data_offsets"]
    f.seek(base + begin)
    raw = f.read(end - begin)
    if len(raw) != end - begin:
        raise ValueError(f"load: {shown} changed while it was being read")
    code = entry["dtype"]
    if code == "BF16":  # the upper half of a float32: shift the bits back into place
        bits = np.frombuffer(raw, "<u2").astype(np.uint32) << np.uint32(16)
        values = bits.view(np.float32)
    else:
        values = np.frombuffer(raw, {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8"}[code])
    return values.reshape(entry["shape"]).astype(dtype)


def load(model: Module, path: str | os.PathLike[str]) -> Module:
    """Loads parameters saved by ``save`` (or by torch) into ``model``; returns it.

    The model must have the same architecture. The file's header is checked
    first, before any tensor is read: every parameter has a tensor of its
    shape and no tensor is left over; float32/float64 tensors must have the
    parameter's dtype, float16 and bfloat16 ones are widened to it.

    Raises:
        FileNotFoundError, IsADirectoryError: naming ``path``.
        ValueError: ``path`` is no valid safetensors file, or a tensor is
            missing, unexpected, or of the wrong shape or an unloadable dtype
            (the message names the file, the tensor and what differs). The
            model is unchanged then.

    Example:
        >>> load(Sequential(Linear(2, 4), TanH()), "net.safetensors")  # doctest: +SKIP
    """
    from safetensors import SafetensorError, safe_open

    shown = os.fspath(path)
    where = f" in {shown}"
    with _open_model_file(shown) as f:
        try:  # validates the header against the file; reads no tensor
            with safe_open(shown, framework="numpy") as st:
                declared = {
                    k: (st.get_slice(k).get_dtype(), tuple(st.get_slice(k).get_shape()))
                    for k in st.keys()
                }
        except SafetensorError as e:  # truncated, corrupted or hand-crafted: never executed
            raise ValueError(f"load: {shown} is not a valid safetensors model file ({e})") from None
        params = _check(model, declared, where)
        # Read from our own handle: the header again, for the offsets (the
        # library validated it; a file replaced meanwhile is refused).
        try:
            (length,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(length))
            changed = any(
                (header[k]["dtype"], tuple(header[k]["shape"])) != declared[k] for k in declared
            )
        except (ValueError, KeyError, TypeError, struct.error):
            changed = True
        if changed:
            raise ValueError(f"load: {shown} changed while it was being read")
        tensors = {
            k: _read_tensor(f, 8 + length, header[k], params[k][1].dtype, shown) for k in declared
        }
    load_state_dict(model, tensors, source=shown)
    return model
