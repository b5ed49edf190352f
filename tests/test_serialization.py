"""Issue 4: safetensors model files — round trip, torch interoperability, clear errors."""

from __future__ import annotations

import os

import diy_nn as nn
import numpy as np
import pytest
from parity import require_torch


def _mlp(dtype=np.float64) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(6, 5, rng=0, dtype=dtype),
        nn.TanH(),
        nn.Linear(5, 3, rng=1, dtype=dtype),
        nn.Sigmoid(),
    )


def _torch_mlp(torch):
    return torch.nn.Sequential(
        torch.nn.Linear(6, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3), torch.nn.Sigmoid()
    ).double()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_round_trip_predicts_bit_identically(tmp_path, dtype):
    net = _mlp(dtype)
    X = np.random.default_rng(0).standard_normal((20, 6)).astype(dtype)
    nn.fit(nn.Adam(net, nn.MSELoss()), X, np.zeros((20, 3), dtype), epochs=2, verbose=False)
    path = tmp_path / "net.safetensors"
    nn.save(net, path)
    other = _mlp(dtype)
    other[0]._parameters[...] = 0
    nn.load(other, path)
    np.testing.assert_array_equal(other.forward(X), net.forward(X))
    assert other.dtype == dtype
    assert [p.name for p in tmp_path.iterdir()] == ["net.safetensors"]  # no temporary left


def test_autoencoder_names(tmp_path):
    ae = nn.AutoEncoder(
        nn.Sequential(nn.Linear(8, 3, rng=0), nn.TanH()),
        nn.Sequential(nn.Linear(3, 8, rng=1), nn.Sigmoid()),
    )
    nn.save(ae, tmp_path / "ae.safetensors")
    from safetensors.numpy import load_file

    tensors = load_file(str(tmp_path / "ae.safetensors"))
    assert sorted(tensors) == [
        "decoder.0.bias",
        "decoder.0.weight",
        "encoder.0.bias",
        "encoder.0.weight",
    ]
    assert tensors["encoder.0.weight"].shape == (3, 8)  # torch layout (out, in)


def test_diy_nn_to_torch_and_back(tmp_path):
    torch = require_torch()
    from safetensors.torch import load_file, save_file

    net = _mlp()
    X = np.random.default_rng(1).standard_normal((10, 6))
    nn.save(net, tmp_path / "ours.safetensors")
    tnet = _torch_mlp(torch)
    tnet.load_state_dict(load_file(str(tmp_path / "ours.safetensors")))
    with torch.no_grad():
        np.testing.assert_allclose(tnet(torch.from_numpy(X)).numpy(), net.forward(X), rtol=1e-12)

    torch.manual_seed(0)
    tnet = _torch_mlp(torch)
    save_file(tnet.state_dict(), str(tmp_path / "theirs.safetensors"))
    nn.load(net, tmp_path / "theirs.safetensors")
    with torch.no_grad():
        np.testing.assert_allclose(net.forward(X), tnet(torch.from_numpy(X)).numpy(), rtol=1e-12)


def test_conv_weights_use_torch_layout():
    conv1 = nn.Sequential(nn.Conv1D(3, 2, 4, rng=0))
    conv2 = nn.Sequential(nn.Conv2D(3, 2, 4, rng=0))
    s1, s2 = nn.serialization.state_dict(conv1), nn.serialization.state_dict(conv2)
    assert s1["0.weight"].shape == (4, 2, 3)
    assert s2["0.weight"].shape == (4, 2, 3, 3)
    np.testing.assert_array_equal(s1["0.weight"][1, 0, 2], conv1[0]._parameters[2, 0, 1])
    np.testing.assert_array_equal(s2["0.weight"][1, 0, 2, 0], conv2[0]._parameters[2, 0, 0, 1])
    other = nn.Sequential(nn.Conv2D(3, 2, 4, rng=5))
    nn.serialization.load_state_dict(other, s2)
    np.testing.assert_array_equal(other[0]._parameters, conv2[0]._parameters)


def test_mismatched_file_names_the_tensor(tmp_path):
    path = tmp_path / "net.safetensors"
    nn.save(_mlp(), path)
    wrong_shape = nn.Sequential(
        nn.Linear(6, 5, rng=0), nn.TanH(), nn.Linear(5, 4, rng=1), nn.Sigmoid()
    )
    with pytest.raises(ValueError, match=r"'2\.weight'.*\(3, 5\).*\(4, 5\)"):
        nn.load(wrong_shape, path)
    with pytest.raises(ValueError, match=r"'2\.bias', '2\.weight'.* match no parameter"):
        nn.load(nn.Sequential(nn.Linear(6, 5), nn.TanH()), path)
    with pytest.raises(ValueError, match=r"'1\.bias', '1\.weight'.* missing"):
        nn.load(nn.Sequential(nn.TanH(), nn.Linear(6, 5), nn.Linear(5, 3)), path)
    with pytest.raises(ValueError, match=r"'0\.weight'.*float64.*float32"):
        nn.load(_mlp(np.float32), path)
    net = _mlp(np.float32)
    before = [p.copy() for _, p, _ in net.named_parameters()]
    with pytest.raises(ValueError):
        nn.load(net, path)
    for (_, p, _), b in zip(net.named_parameters(), before, strict=True):
        np.testing.assert_array_equal(p, b)  # a failed load changes nothing


def test_save_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "net.safetensors"
    nn.save(_mlp(), path)
    original = path.read_bytes()

    def crash(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    net = _mlp()
    net[0]._parameters[...] = 1.0
    with pytest.raises(OSError, match="disk full"):
        nn.save(net, path)
    assert path.read_bytes() == original
    assert [p.name for p in tmp_path.iterdir()] == ["net.safetensors"]


def test_no_pickle_in_files(tmp_path):
    nn.save(_mlp(), tmp_path / "net.safetensors")
    header_len = int.from_bytes((tmp_path / "net.safetensors").read_bytes()[:8], "little")
    assert header_len < 10_000  # a JSON header followed by raw tensor bytes


def test_conv_model_loads_into_torch_with_the_same_outputs(tmp_path):
    torch = require_torch()
    from safetensors.torch import load_file

    net = nn.Sequential(nn.Conv2D(3, 2, 4, rng=0), nn.ReLU(), nn.Conv2D(2, 4, 3, stride=2, rng=1))
    x = np.random.default_rng(0).standard_normal((2, 9, 8, 2))
    nn.save(net, tmp_path / "cnn.safetensors")
    T = torch.nn
    tnet = T.Sequential(T.Conv2d(2, 4, 3), T.ReLU(), T.Conv2d(4, 3, 2, stride=2)).double()
    tnet.load_state_dict(load_file(str(tmp_path / "cnn.safetensors")))
    with torch.no_grad():
        out = tnet(torch.from_numpy(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(net.forward(x), out, rtol=1e-10)


@pytest.mark.parametrize("nd", [1, 2])
def test_cnn_with_flatten_gives_torch_the_same_outputs_both_ways(tmp_path, nd):
    """The course CNN shape: conv → pool → Flatten → Linear, channels last vs torch's first."""
    torch = require_torch()
    from safetensors.torch import load_file, save_file

    T = torch.nn
    if nd == 1:
        net = nn.Sequential(
            nn.Conv1D(3, 2, 4, rng=0), nn.MaxPool1D(2, 2), nn.Flatten(), nn.Linear(16, 3, rng=1)
        )
        tnet = T.Sequential(T.Conv1d(2, 4, 3), T.MaxPool1d(2, 2), T.Flatten(), T.Linear(16, 3))
        x = np.random.default_rng(0).standard_normal((5, 10, 2))
        to_torch = (0, 2, 1)
    else:
        net = nn.Sequential(
            nn.Conv2D(3, 2, 4, rng=0), nn.MaxPool2D(2, 2), nn.Flatten(), nn.Linear(36, 3, rng=1)
        )
        tnet = T.Sequential(T.Conv2d(2, 4, 3), T.MaxPool2d(2, 2), T.Flatten(), T.Linear(36, 3))
        x = np.random.default_rng(0).standard_normal((5, 8, 8, 2))
        to_torch = (0, 3, 1, 2)
    tnet = tnet.double()
    nn.save(net, tmp_path / "cnn.safetensors")
    tnet.load_state_dict(load_file(str(tmp_path / "cnn.safetensors")))
    with torch.no_grad():
        expected = tnet(torch.from_numpy(x).permute(*to_torch)).numpy()
    np.testing.assert_allclose(net.forward(x), expected, rtol=1e-10)

    # torch → diy_nn: a fresh torch model's file loads into a fresh diy_nn model.
    torch.manual_seed(1)
    for m in tnet:
        if hasattr(m, "reset_parameters"):
            m.reset_parameters()  # new weights, so the load below must change ours
    save_file({k: v.contiguous() for k, v in tnet.state_dict().items()}, tmp_path / "t.st")
    nn.load(net, tmp_path / "t.st")
    with torch.no_grad():
        expected = tnet(torch.from_numpy(x).permute(*to_torch)).numpy()
    np.testing.assert_allclose(net.forward(x), expected, rtol=1e-10)


# --- buffers: BatchNorm1D's running statistics ------------------------------------------


def _bn_net(dtype=np.float64, seed=0) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(4, 3, rng=seed, dtype=dtype), nn.BatchNorm1D(3, dtype=dtype), nn.TanH()
    )


def _trained_bn_net(dtype=np.float64) -> tuple[nn.Sequential, np.ndarray]:
    net = _bn_net(dtype)
    X = np.random.default_rng(0).normal(3.0, 2.0, (32, 4)).astype(dtype)
    nn.fit(nn.Adam(net, nn.MSELoss()), X, np.zeros((32, 3), dtype), 3, 8, verbose=False)
    return net, X


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_batchnorm_running_statistics_round_trip(tmp_path, dtype):
    net, X = _trained_bn_net(dtype)
    bn = net[1]
    assert bn.num_batches_tracked == 12  # 3 epochs of 4 batches
    path = tmp_path / "bn.safetensors"
    nn.save(net, path)
    other = nn.load(_bn_net(dtype, seed=7), path)
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        np.testing.assert_array_equal(getattr(other[1], name), getattr(bn, name))
        assert getattr(other[1], name).dtype == getattr(bn, name).dtype
    np.testing.assert_array_equal(other.eval().forward(X), net.eval().forward(X))
    assert not np.array_equal(_bn_net(dtype).eval().forward(X), net.forward(X))  # they matter


def test_batchnorm_files_are_torch_state_dicts_both_ways(tmp_path):
    torch = require_torch()
    from safetensors.torch import load_file, save_file

    net, X = _trained_bn_net()
    nn.save(net, tmp_path / "ours.safetensors")
    T = torch.nn
    tnet = T.Sequential(T.Linear(4, 3), T.BatchNorm1d(3), T.Tanh()).double().eval()
    tnet.load_state_dict(load_file(str(tmp_path / "ours.safetensors")))  # strict: every key
    assert int(tnet[1].num_batches_tracked) == 12
    with torch.no_grad():
        np.testing.assert_allclose(tnet(torch.from_numpy(X)).numpy(), net.eval().forward(X))

    tnet.train()
    with torch.no_grad():
        for _ in range(5):
            tnet(torch.from_numpy(X * 2 + 1))
    save_file(tnet.state_dict(), str(tmp_path / "theirs.safetensors"))
    other = nn.load(_bn_net(seed=3), tmp_path / "theirs.safetensors")
    assert other[1].num_batches_tracked == 12 + 5
    with torch.no_grad():
        np.testing.assert_allclose(other.eval().forward(X), tnet.eval()(torch.from_numpy(X)))


def test_a_file_without_running_statistics_is_refused_clearly(tmp_path):
    from safetensors.numpy import save_file

    net, _ = _trained_bn_net()
    old = {
        k: v for k, v in nn.serialization.state_dict(net).items() if k.endswith(("weight", "bias"))
    }
    save_file(old, str(tmp_path / "old.safetensors"))  # what save wrote before buffers
    target = _bn_net(seed=5)
    before = nn.serialization.state_dict(target)
    message = (
        r"buffer\(s\) '1\.num_batches_tracked', '1\.running_mean', '1\.running_var' are "
        r"missing in .*old\.safetensors: .* save the trained model again"
    )
    with pytest.raises(ValueError, match=message):
        nn.load(target, tmp_path / "old.safetensors")
    for k, v in nn.serialization.state_dict(target).items():
        np.testing.assert_array_equal(v, before[k])  # nothing written
    # a model without buffers still loads a file of weights only, as before
    plain = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 3))
    save_file(nn.serialization.state_dict(plain), str(tmp_path / "plain.safetensors"))
    nn.load(plain, tmp_path / "plain.safetensors")


def test_num_batches_tracked_must_be_an_int64_count():
    net, _ = _trained_bn_net()
    tensors = nn.serialization.state_dict(net)
    tensors["1.num_batches_tracked"] = tensors["1.num_batches_tracked"].astype(np.float64)
    with pytest.raises(
        ValueError, match=r"'1\.num_batches_tracked'.*float64, diy_nn expects int64"
    ):
        nn.serialization.load_state_dict(_bn_net(), tensors)
    tensors["1.num_batches_tracked"] = np.zeros(1, np.int64)
    with pytest.raises(ValueError, match=r"'1\.num_batches_tracked'.*shape \(1,\).*expects \(\)"):
        nn.serialization.load_state_dict(_bn_net(), tensors)
