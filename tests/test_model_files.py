"""Issue 7: model files — atomic saves, and loads that check everything and execute nothing."""

from __future__ import annotations

import json
import os
import pickle
import struct

import diy_nn as nn
import numpy as np
import pytest
from diy_nn import serialization


def _model(seed: int = 0) -> nn.Sequential:
    return nn.Sequential(nn.Linear(3, 4, rng=seed), nn.TanH(), nn.Linear(4, 2, rng=seed + 1))


def _params(m):
    return [p.copy() for _, p, _ in m.named_parameters()]


def test_interrupted_save_leaves_the_previous_file_whole(tmp_path, monkeypatch):
    path = tmp_path / "net.safetensors"
    nn.save(_model(0), path)
    before = path.read_bytes()

    real_fdopen = os.fdopen

    class FailingFile:
        def __init__(self, f):
            self.f = f

        def write(self, data):
            self.f.write(data[: len(data) // 2])  # half written, then the disk fails
            raise OSError("disk full")

        def __getattr__(self, name):
            return getattr(self.f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    monkeypatch.setattr(os, "fdopen", lambda fd, mode: FailingFile(real_fdopen(fd, mode)))
    with pytest.raises(OSError, match="disk full"):
        nn.save(_model(5), path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["net.safetensors"]  # no temp file left
    m = nn.load(_model(9), path)
    for a, b in zip(_params(m), _params(_model(0)), strict=True):
        np.testing.assert_array_equal(a, b)


def test_interrupt_during_rename_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "net.safetensors"
    nn.save(_model(0), path)
    before = path.read_bytes()

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(KeyboardInterrupt):
        nn.save(_model(3), path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert len(list(tmp_path.iterdir())) == 1


def _header(path) -> tuple[dict, bytes]:
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8 : 8 + n]), raw[8 + n :]


def _write(path, header: dict, body: bytes, length: int | None = None) -> None:
    h = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(h) if length is None else length) + h + body)


def _crafted(tmp_path):
    """Variants of a valid file, each broken in one way."""
    good = tmp_path / "good.safetensors"
    nn.save(_model(0), good)
    header, body = _header(good)
    raw = good.read_bytes()
    name = next(k for k in header if k != "__metadata__")
    out = {}

    def variant(label, h=None, b=None, length=None, raw_bytes=None):
        p = tmp_path / f"{label}.safetensors"
        if raw_bytes is not None:
            p.write_bytes(raw_bytes)
        else:
            _write(p, header if h is None else h, body if b is None else b, length)
        out[label] = p

    variant("empty", raw_bytes=b"")
    variant("truncated header", raw_bytes=raw[:20])
    variant("truncated data", raw_bytes=raw[:-7])
    variant("bad json", raw_bytes=raw[:8] + b"{not json" + raw[17:])
    variant("huge header length", length=2**62)
    variant("header length past the end", length=len(raw))
    bad = json.loads(json.dumps(header))
    bad[name]["data_offsets"] = [0, 10**12]
    variant("offsets out of range", h=bad)
    bad = json.loads(json.dumps(header))
    bad[name]["data_offsets"] = [8, 4]
    variant("offsets reversed", h=bad)
    bad = json.loads(json.dumps(header))
    bad[name]["dtype"] = "F32"
    variant("dtype and size disagree", h=bad)
    bad = json.loads(json.dumps(header))
    bad[name]["shape"] = [10**9, 10**9]
    variant("shape and size disagree", h=bad)
    return out


def test_crafted_files_raise_a_clear_error(tmp_path):
    for label, path in _crafted(tmp_path).items():
        model = _model(7)
        before = _params(model)
        with pytest.raises(ValueError, match=r"load: .*") as info:
            nn.load(model, path)
        assert str(path) in str(info.value) or "load:" in str(info.value), label
        for a, b in zip(_params(model), before, strict=True):  # nothing half-loaded
            np.testing.assert_array_equal(a, b, err_msg=label)


def test_a_pickle_file_is_never_executed(tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = tmp_path / "evil.safetensors"
    path.write_bytes(pickle.dumps({"0.weight": Payload()}))
    with pytest.raises(ValueError, match="not a valid safetensors"):
        nn.load(_model(), path)
    assert not marker.exists()
    # and no numpy/pickle reader anywhere in the module
    src = open(serialization.__file__).read()
    assert "pickle" not in src.replace("never pickle", "").replace("no pickle", "")
    assert "allow_pickle" not in src and "np.load" not in src


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda t: t.pop("2.bias"), r"2.bias"),
        (lambda t: t.update({"9.weight": np.zeros((2, 2))}), r"9.weight"),
        (lambda t: t.update({"0.weight": np.zeros((3, 4))}), r"0.weight.*shape"),
        (lambda t: t.update({"0.weight": t["0.weight"].astype(np.float32)}), r"dtype"),
    ],
    ids=["missing", "extra", "shape", "dtype"],
)
def test_load_checks_names_shapes_and_dtypes(tmp_path, change, message):
    from safetensors.numpy import save_file

    tensors = serialization.state_dict(_model(0))
    change(tensors)
    path = tmp_path / "m.safetensors"
    save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(path))
    model = _model(4)
    before = _params(model)
    with pytest.raises((KeyError, ValueError), match=message):
        nn.load(model, path)
    for a, b in zip(_params(model), before, strict=True):
        np.testing.assert_array_equal(a, b)
