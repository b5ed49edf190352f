"""Issue 12: model files from torch in half precision, headers checked before any
tensor is read, paths that are no model file, and saves that behave like open()."""

from __future__ import annotations

import json
import os
import signal
import stat
import struct
import subprocess
import sys
import textwrap

import diy_nn as nn
import numpy as np
import pytest
from diy_nn import serialization
from parity import require_torch


def _model(dtype=np.float64, seed: int = 0) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(3, 4, rng=seed, dtype=dtype),
        nn.TanH(),
        nn.Linear(4, 2, rng=seed + 1, dtype=dtype),
    )


def _params(m: nn.Module) -> list[np.ndarray]:
    return [p.copy() for _, p, _ in m.named_parameters()]


def _unchanged(m: nn.Module, before: list[np.ndarray]) -> None:
    for a, b in zip(_params(m), before, strict=True):
        np.testing.assert_array_equal(a, b)


def _torch_file(torch, path, dtype, model=None) -> dict:
    """Our model's state as torch tensors of ``dtype``, saved by safetensors.torch."""
    from safetensors.torch import save_file

    tensors = {
        k: torch.from_numpy(np.ascontiguousarray(v)).to(dtype)
        for k, v in serialization.state_dict(model or _model(seed=5)).items()
    }
    save_file(tensors, str(path))
    return tensors


# --- dtypes ------------------------------------------------------------------------


@pytest.mark.parametrize("model_dtype", [np.float32, np.float64])
@pytest.mark.parametrize("file_dtype", ["bfloat16", "float16"])
def test_half_precision_files_from_torch_are_widened(tmp_path, model_dtype, file_dtype):
    torch = require_torch()
    path = tmp_path / "half.safetensors"
    tensors = _torch_file(torch, path, getattr(torch, file_dtype))
    model = nn.load(_model(model_dtype, seed=9), path)
    loaded = serialization.state_dict(model)
    assert sorted(loaded) == sorted(tensors)
    for k, t in tensors.items():
        want = t.double().numpy().astype(model_dtype)  # exact: both widen the same bits
        assert loaded[k].dtype == model_dtype
        np.testing.assert_array_equal(loaded[k], want, err_msg=k)
    # and the widened values are the rounded originals, not garbage
    for k, v in serialization.state_dict(_model(seed=5)).items():
        np.testing.assert_allclose(loaded[k], v, rtol=1e-2 if file_dtype == "bfloat16" else 1e-3)


@pytest.mark.parametrize(
    ("torch_dtype", "code"),
    [("float8_e4m3fn", "F8_E4M3"), ("float8_e5m2", "F8_E5M2"), ("int8", "I8"), ("int64", "I64")],
)
def test_unsupported_dtypes_name_the_file_the_tensor_and_the_dtype(tmp_path, torch_dtype, code):
    torch = require_torch()
    if not hasattr(torch, torch_dtype):
        pytest.skip(f"torch has no {torch_dtype}")
    path = tmp_path / "odd.safetensors"
    _torch_file(torch, path, getattr(torch, torch_dtype))
    model = _model()
    before = _params(model)
    with pytest.raises(ValueError) as info:
        nn.load(model, path)
    msg = str(info.value)
    assert str(path) in msg and "tensor '0.weight'" in msg and f"dtype {code}," in msg, msg
    assert "model.to(" not in msg  # to() takes float32/float64 only: no cast to suggest
    _unchanged(model, before)


@pytest.mark.parametrize(
    ("file_dtype", "model_dtype"), [("float32", "float64"), ("float64", "float32")]
)
def test_a_dtype_mismatch_suggests_a_cast_that_to_accepts(tmp_path, file_dtype, model_dtype):
    path = tmp_path / "m.safetensors"
    nn.save(_model(file_dtype, seed=2), path)
    model = _model(model_dtype, seed=7)
    with pytest.raises(ValueError, match=rf"dtype {file_dtype}.*model\.to\(np\.{file_dtype}\)"):
        nn.load(model, path)
    model.to(getattr(np, file_dtype))  # the suggestion works
    nn.load(model, path)
    for a, b in zip(_params(model), _params(_model(file_dtype, seed=2)), strict=True):
        np.testing.assert_array_equal(a, b)


def test_load_state_dict_widens_float16_and_refuses_ints():
    tensors = {k: v.astype(np.float16) for k, v in serialization.state_dict(_model(seed=3)).items()}
    model = _model(np.float32)
    serialization.load_state_dict(model, tensors)
    for k, v in serialization.state_dict(model).items():
        np.testing.assert_array_equal(v, tensors[k].astype(np.float32))
    tensors["0.bias"] = tensors["0.bias"].astype(np.int8)
    with pytest.raises(ValueError, match=r"'0.bias'.*dtype int8, which diy_nn cannot load"):
        serialization.load_state_dict(model, tensors)


# --- the header is checked before any tensor is read ----------------------------------

_HUGE_SCRIPT = """
import json, struct, sys
import diy_nn as nn
import numpy as np
from diy_nn import serialization

path, case = sys.argv[1], sys.argv[2]
model = nn.Sequential(nn.Linear(3, 4, rng=0), nn.TanH(), nn.Linear(4, 2, rng=1))
nn.save(model, path)
raw = open(path, "rb").read()
(n,) = struct.unpack("<Q", raw[:8])
header, body = json.loads(raw[8 : 8 + n]), raw[8 + n :]
huge = 2**29 + 3  # float32 elements: 2 GiB and a bit
if case == "unexpected":
    size = len(body) + 4 * huge
    header["huge"] = {"dtype": "F32", "shape": [huge], "data_offsets": [len(body), size]}
else:  # a parameter's name with a huge shape, as the last tensor of the file
    entries = sorted(((v["data_offsets"][0], k) for k, v in header.items() if k != "__metadata__"))
    last = entries[-1][1]
    start = header[last]["data_offsets"][0]
    header[last] = {"dtype": "F64", "shape": [huge, 1], "data_offsets": [start, start + 8 * huge]}
    size = start + 8 * huge
h = json.dumps(header).encode()
h += b" " * (-len(h) % 8)
with open(path, "wb") as f:
    f.write(struct.pack("<Q", len(h)) + h + body)
    f.truncate(8 + len(h) + size)  # sparse: nothing of the huge tensor is on disk
try:
    nn.load(model, path)
    print("LOADED")
except ValueError as e:
    # VmHWM: this process's peak resident memory (ru_maxrss would count the
    # parent's, which forked it)
    hwm = next(line for line in open("/proc/self/status") if line.startswith("VmHWM"))
    print(json.dumps({"error": str(e), "peak_mib": int(hwm.split()[1]) / 1024}))
"""


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs Linux /proc")
@pytest.mark.parametrize("case", ["unexpected", "wrong shape"])
def test_a_huge_declared_tensor_fails_fast_without_being_read(tmp_path, case):
    path = tmp_path / "huge.safetensors"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        [sys.executable, "-c", _HUGE_SCRIPT, str(path), case],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout)
    assert str(path) in out["error"]
    if case == "unexpected":
        assert "'huge'" in out["error"] and "match no parameter" in out["error"]
    else:
        assert "has shape (536870915, 1)" in out["error"]
    assert out["peak_mib"] < 400, out  # the 2 GiB tensor was never read


# --- paths that are no model file -------------------------------------------------------


def test_loading_a_directory_or_a_device_or_nothing_names_the_path(tmp_path):
    model = _model()
    before = _params(model)
    with pytest.raises(IsADirectoryError) as info:
        nn.load(model, tmp_path)
    assert str(tmp_path) in str(info.value)
    if os.path.exists("/dev/null"):
        with pytest.raises(ValueError, match=r"'/dev/null' is a character device, not a model"):
            nn.load(model, "/dev/null")
    missing = tmp_path / "nope.safetensors"
    with pytest.raises(FileNotFoundError) as info:
        nn.load(model, missing)
    assert str(missing) in str(info.value)
    _unchanged(model, before)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes")
def test_a_named_pipe_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "pipe.safetensors"
    os.mkfifo(fifo)
    script = textwrap.dedent(
        f"""
        import diy_nn as nn
        m = nn.Sequential(nn.Linear(3, 4))
        for f in (nn.load, nn.save):
            try:
                f(m, {str(fifo)!r})
            except ValueError as e:
                print(e)
        """
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    try:  # a pipe opened for reading would block until a writer comes: a hang
        done = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, env=env
        )
    except subprocess.TimeoutExpired:
        pytest.fail("load or save blocked on a named pipe")
    assert done.stdout.count("is a named pipe, not a model file") == 2, done.stdout + done.stderr
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)  # save left it alone


# --- saving behaves like open(path, "wb") -----------------------------------------------


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_a_new_file_s_mode_follows_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        nn.save(_model(), tmp_path / "net.safetensors")
        with open(tmp_path / "plain", "wb"):
            pass
    finally:
        os.umask(old)
    mode = stat.S_IMODE(os.stat(tmp_path / "net.safetensors").st_mode)
    assert mode == 0o666 & ~umask == stat.S_IMODE(os.stat(tmp_path / "plain").st_mode)


def test_overwriting_keeps_the_file_s_mode(tmp_path):
    path = tmp_path / "net.safetensors"
    nn.save(_model(), path)
    os.chmod(path, 0o640)
    nn.save(_model(seed=4), path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640


def test_saving_through_a_symlink_writes_its_target(tmp_path):
    (tmp_path / "real").mkdir()
    target = tmp_path / "real" / "net.safetensors"
    nn.save(_model(seed=1), target)
    link = tmp_path / "link.safetensors"
    link.symlink_to(os.path.join("real", "net.safetensors"))  # relative, as ln -s makes them
    nn.save(_model(seed=6), link)
    assert link.is_symlink() and os.readlink(link) == os.path.join("real", "net.safetensors")
    loaded = nn.load(_model(seed=0), target)
    for a, b in zip(_params(loaded), _params(_model(seed=6)), strict=True):
        np.testing.assert_array_equal(a, b)
    dangling = tmp_path / "later.safetensors"
    dangling.symlink_to(tmp_path / "real" / "new.safetensors")
    nn.save(_model(seed=2), dangling)  # open() would create the target: so do we
    assert dangling.is_symlink() and (tmp_path / "real" / "new.safetensors").is_file()
    assert sorted(p.name for p in (tmp_path / "real").iterdir()) == [
        "net.safetensors",
        "new.safetensors",
    ]


def test_bad_save_paths_name_the_path_given(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        nn.save(_model(), "")
    assert "''" in str(info.value) and "tmp" not in str(info.value)
    missing = tmp_path / "no" / "such" / "dir" / "net.safetensors"
    with pytest.raises(FileNotFoundError) as info:
        nn.save(_model(), missing)
    assert str(missing) in str(info.value) and ".tmp" not in str(info.value)
    with pytest.raises(IsADirectoryError) as info:
        nn.save(_model(), tmp_path)
    assert str(tmp_path) in str(info.value)
    assert list(tmp_path.iterdir()) == []


_KILLED_SAVE = """
import os, sys, time
import diy_nn as nn
path = sys.argv[1]
def stuck(fd):  # the bytes are written: be killed before the rename
    print("writing", flush=True)
    time.sleep(600)
os.fsync = stuck
nn.save(nn.Sequential(nn.Linear(3, 4, rng=1)), path)
"""


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_temporary_files_of_killed_saves_do_not_accumulate(tmp_path):
    path = tmp_path / "net.safetensors"
    nn.save(nn.Sequential(nn.Linear(3, 4, rng=0)), path)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    for _ in range(3):
        child = subprocess.Popen(
            [sys.executable, "-c", _KILLED_SAVE, str(path)],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        try:
            assert child.stdout is not None and child.stdout.readline().strip() == "writing"
        finally:
            child.kill()
            child.wait(timeout=60)
    # each save removed the temporary of the killed one before it: one is left
    assert len(list(tmp_path.iterdir())) == 2
    nn.save(nn.Sequential(nn.Linear(3, 4, rng=2)), path)
    assert [p.name for p in tmp_path.iterdir()] == ["net.safetensors"]
    loaded = nn.load(nn.Sequential(nn.Linear(3, 4, rng=9)), path)
    np.testing.assert_array_equal(loaded[0]._parameters, nn.Linear(3, 4, rng=2)._parameters)


def test_another_process_s_save_in_progress_keeps_its_temporary(tmp_path):
    path = tmp_path / "net.safetensors"
    alive = tmp_path / f".net.safetensors.diy_nn-{os.getppid()}-0000.tmp"  # a live process
    alive.write_bytes(b"partial")
    other = tmp_path / ".other.safetensors.diy_nn-999999999-0000.tmp"  # another file's
    other.write_bytes(b"partial")
    nn.save(_model(), path)
    assert alive.exists() and other.exists()


def test_header_of_a_saved_file(tmp_path):
    """The file is plain safetensors: an 8-byte length, a JSON header, the data."""
    path = tmp_path / "net.safetensors"
    nn.save(_model(), path)
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    assert header["__metadata__"] == {"format": "pt", "library": "diy_nn"}
    assert header["0.weight"]["shape"] == [4, 3] and header["0.weight"]["dtype"] == "F64"
