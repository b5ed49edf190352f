"""Issue 11 (Python core): what a user may do with a network and what it gives.

Shared layers as in torch, in-place changes between forward and backward,
patched methods, copies and pickles that train on identically, a forward from
another thread during training, forward state that does not outlive its
output, course-style layers with a bias.
"""

from __future__ import annotations

import copy
import gc
import os
import pickle
import pydoc
import threading

import diy_nn as dn
import numpy as np
import pytest
from diy_nn.plan import DenseRun, LayerStep
from parity import require_torch


def _mlp(seed: int = 0, dtype: type = np.float64) -> dn.Sequential:
    rng = np.random.default_rng(seed)
    return dn.Sequential(
        dn.Linear(5, 4, rng=rng, dtype=dtype),
        dn.TanH(),
        dn.Linear(4, 3, rng=rng, dtype=dtype),
        dn.Sigmoid(),
    )


def _params(net: dn.Module) -> list[np.ndarray]:
    return [p.copy() for _, p, _ in net.named_parameters()]


# --- shared layers -----------------------------------------------------------


def _shared_pair(torch):
    """``Sequential(lin, TanH(), lin)`` and the torch net with one shared Linear."""
    lin = dn.Linear(3, 3, rng=1)
    net = dn.Sequential(lin, dn.TanH(), lin)
    tlin = torch.nn.Linear(3, 3).double()
    with torch.no_grad():
        tlin.weight.copy_(torch.from_numpy(lin._parameters.T.copy()))
        tlin.bias.copy_(torch.from_numpy(lin._bias.copy()))
    return lin, net, tlin, torch.nn.Sequential(tlin, torch.nn.Tanh(), tlin)


OPTIMIZERS = {
    "sgd": (lambda net, lr: dn.SGD(net, dn.MSELoss(), eps=lr), {}),
    "momentum": (lambda net, lr: dn.SGD(net, dn.MSELoss(), eps=lr, momentum=0.9), {"m": 0.9}),
    "adam": (lambda net, lr: dn.Adam(net, dn.MSELoss(), eps=lr), {"adam": True}),
}


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_a_shared_layer_trains_as_in_torch(name):
    torch = require_torch()
    lin, net, tlin, tnet = _shared_pair(torch)
    assert net.n_parameters() == 12 == sum(p.numel() for p in tnet.parameters())
    assert [n for n, _, _ in net.named_parameters()] == ["0._parameters", "0._bias"]
    make, kind = OPTIMIZERS[name]
    opt = make(net, 0.05)
    if kind.get("adam"):
        topt = torch.optim.Adam(tnet.parameters(), lr=0.05)
    else:
        topt = torch.optim.SGD(tnet.parameters(), lr=0.05, momentum=kind.get("m", 0.0))
    rng = np.random.default_rng(2)
    for _ in range(4):
        x, y = rng.standard_normal((6, 3)), rng.standard_normal((6, 3))
        cost = opt.step(x, y)
        topt.zero_grad()
        tl = ((tnet(torch.from_numpy(x)) - torch.from_numpy(y)) ** 2).sum()
        tl.backward()
        topt.step()
        assert cost == pytest.approx(tl.item() / 6, rel=1e-10)
        np.testing.assert_allclose(lin._gradient, tlin.weight.grad.numpy().T, rtol=1e-10)
    np.testing.assert_allclose(lin._parameters, tlin.weight.detach().numpy().T, rtol=1e-10)
    np.testing.assert_allclose(lin._bias, tlin.bias.detach().numpy(), rtol=1e-10)


def test_a_shared_layer_is_not_fused_and_its_gradients_add():
    lin = dn.Linear(3, 3, rng=1)
    net = dn.Sequential(lin, dn.TanH(), lin)
    assert all(isinstance(step, LayerStep) for step in net.steps())
    x, d = np.random.default_rng(0).standard_normal((2, 4, 3))
    net.forward(x)
    net.zero_grad()
    dx = net.backward(x, d)
    # by hand: the two uses of lin, the second one first
    h = np.tanh(x @ lin._parameters + lin._bias)
    g2 = h.T @ d
    d1 = (d @ lin._parameters.T) * (1 - h**2)
    np.testing.assert_allclose(lin._gradient, x.T @ d1 + g2, rtol=1e-12)
    np.testing.assert_allclose(lin._grad_bias, d.sum(0) + d1.sum(0), rtol=1e-12)
    np.testing.assert_allclose(dx, d1 @ lin._parameters.T, rtol=1e-12)


# --- in-place changes between forward and backward ---------------------------

NETS = {
    "dense": (_mlp, (7, 5)),
    "cnn": (
        lambda: dn.Sequential(
            dn.Conv1D(3, 2, 4, rng=0),
            dn.MaxPool1D(2, 2),
            dn.Flatten(),
            dn.Linear(12, 3, rng=1),
            dn.TanH(),
        ),
        (5, 8, 2),
    ),
    "softmax": (lambda: dn.Sequential(dn.Linear(5, 3, rng=0), dn.SoftMax()), (7, 5)),
    "log_softmax": (lambda: dn.Sequential(dn.Linear(5, 3, rng=0), dn.LogSoftMax()), (7, 5)),
    "maxpool": (lambda: dn.Sequential(dn.TanH(), dn.MaxPool1D(2, 2)), (5, 8, 2)),
    "flatten_last": (
        lambda: dn.Sequential(dn.Linear(5, 6, rng=0), dn.TanH(), dn.Flatten()),
        (7, 5),
    ),
}


def _reference(make, x, d):
    """Gradients and d input of a fresh net on ``x`` (nothing changed in between)."""
    net = make()
    net.forward(x.copy())
    net.zero_grad()
    dx = net.backward(x.copy(), d)
    return dx, [g.copy() for _, _, g in net.named_parameters()]


@pytest.mark.parametrize("name", sorted(NETS))
@pytest.mark.parametrize("change", ["output", "input"])
def test_changes_in_place_between_forward_and_backward(name, change):
    """The gradients are those of the values the forward saw (torch would raise)."""
    make, shape = NETS[name]
    rng = np.random.default_rng(3)
    x = rng.standard_normal(shape)
    net = make()
    out = net.forward(x)
    d = rng.standard_normal(out.shape)
    want_dx, want_grads = _reference(make, x, d)
    if change == "output":
        out -= 10.0 * rng.standard_normal(out.shape)
    else:
        x *= -3.0
    net.zero_grad()
    dx = net.backward(x, d)
    np.testing.assert_allclose(dx, want_dx, rtol=1e-12, atol=1e-14)
    for (n, _, g), want in zip(net.named_parameters(), want_grads, strict=True):
        np.testing.assert_allclose(g, want, rtol=1e-12, atol=1e-14, err_msg=n)


@pytest.mark.parametrize("layer", [dn.SoftMax, dn.LogSoftMax])
def test_softmax_alone_ignores_changes_to_its_output(layer):
    rng = np.random.default_rng(4)
    x, d = rng.standard_normal((2, 5, 4))
    m = layer()
    want = m.backward_delta(x, d)
    y = m.forward(x)
    y *= 7.0
    np.testing.assert_array_equal(m.backward_delta(x, d), want)


def test_maxpool_alone_gives_the_gradient_of_what_its_forward_saw():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 6, 3))
    pool = dn.MaxPool1D(2, 2)
    y = pool.forward(x)
    d = rng.standard_normal(y.shape)
    want = dn.MaxPool1D(2, 2).backward_delta(x.copy(), d)
    x[:] = x[:, ::-1]
    np.testing.assert_array_equal(pool.backward_delta(x, d), want)


def test_another_input_runs_the_forward_again():
    net = _mlp()
    rng = np.random.default_rng(6)
    x1, x2 = rng.standard_normal((2, 4, 5))
    d = rng.standard_normal((4, 3))
    net.forward(x1)
    net.zero_grad()
    got = net.backward(x2, d)
    want, _ = _reference(_mlp, x2, d)
    np.testing.assert_allclose(got, want, rtol=1e-12)


# --- patched methods and subclasses ------------------------------------------


def test_a_patched_method_runs_inside_a_sequential():
    net = _mlp()
    x = np.ones((2, 5))
    assert isinstance(net.steps()[0], DenseRun)
    before = net.forward(x)
    lin = net[2]
    calls = []

    def stub(X):
        calls.append(X.shape)
        return np.zeros((len(X), 3))

    lin.forward = stub
    out = net.forward(x)
    assert calls == [(2, 4)]
    np.testing.assert_allclose(out, 0.5)  # sigmoid(0)
    assert not np.allclose(before, 0.5)
    assert any(isinstance(s, LayerStep) and s.layer is lin for s in net.steps())
    # the fused one-call step does not bypass it either
    assert net.train_step(x, np.zeros((2, 3)), dn.MSELoss(), 0.1) is None
    del lin.forward
    np.testing.assert_array_equal(net.forward(x), before)
    assert isinstance(net.steps()[0], DenseRun)


def test_a_subclass_that_overrides_a_course_method_runs_as_itself():
    class Doubling(dn.Linear):
        def forward(self, X):
            return 2 * super().forward(X)

    net = dn.Sequential(Doubling(3, 2, rng=0), dn.TanH())
    x = np.ones((4, 3))
    np.testing.assert_allclose(net.forward(x), np.tanh(2 * dn.Linear(3, 2, rng=0).forward(x)))
    assert isinstance(net.steps()[0], LayerStep)
    patched = dn.Sequential(dn.Linear(3, 2, rng=0), dn.TanH())
    patched.forward = lambda X: np.zeros(1)
    assert patched.train_step(x, np.zeros((4, 2)), dn.MSELoss(), 0.1) is None


# --- copies ------------------------------------------------------------------


def _cnn():
    return dn.Sequential(
        dn.Conv1D(3, 1, 4, rng=0),
        dn.MaxPool1D(2, 2),
        dn.Flatten(),
        dn.Linear(12, 3, rng=1),
    )


MODELS = {
    "mlp": (_mlp, lambda r: r.standard_normal((6, 5)), lambda r: r.random((6, 3)), dn.BCELoss),
    "autoencoder": (
        lambda: dn.AutoEncoder(
            dn.Sequential(dn.Linear(5, 2, rng=0), dn.TanH()),
            dn.Sequential(dn.Linear(2, 5, rng=1), dn.Sigmoid()),
        ),
        lambda r: r.random((6, 5)),
        None,
        dn.BCELoss,
    ),
    "cnn": (
        _cnn,
        lambda r: r.standard_normal((6, 8, 1)),
        lambda r: r.integers(0, 3, 6),
        dn.CELogSoftMax,
    ),
}
OPTIMS = {
    "optim": lambda net, loss: dn.Optim(net, loss, 0.05),
    "momentum": lambda net, loss: dn.SGD(net, loss, eps=0.05, momentum=0.5, nesterov=True),
    "adam": lambda net, loss: dn.Adam(net, loss, eps=0.01),
    "adamw": lambda net, loss: dn.AdamW(net, loss, eps=0.01),
    "rmsprop": lambda net, loss: dn.RMSprop(net, loss, eps=0.01, momentum=0.5),
}


@pytest.mark.parametrize("model", sorted(MODELS))
@pytest.mark.parametrize("optim", sorted(OPTIMS))
@pytest.mark.parametrize("how", ["deepcopy", "pickle"])
def test_a_copy_trains_as_the_original(model, optim, how):
    make, xs, ys, loss = MODELS[model]
    rng = np.random.default_rng(7)
    opt = OPTIMS[optim](make(), loss())
    batches = []
    for _ in range(6):
        x = xs(rng)
        batches.append((x, x if ys is None else ys(rng)))
    for x, y in batches[:3]:  # state to copy: moments, kept forward, kernel buffers
        opt.step(x, y)
    opt.net.forward(batches[0][0])
    twin = copy.deepcopy(opt) if how == "deepcopy" else pickle.loads(pickle.dumps(opt))
    assert twin.net is not opt.net
    for x, y in batches[3:]:
        assert twin.step(x, y) == opt.step(x, y)
        np.testing.assert_array_equal(twin.last_output, opt.last_output)
    for a, b in zip(_params(twin.net), _params(opt.net), strict=True):
        np.testing.assert_array_equal(a, b)
    for net in (opt.net, twin.net):  # and each net alone
        assert isinstance(pickle.loads(pickle.dumps(net)), type(net))


# --- threads -----------------------------------------------------------------


@pytest.mark.parametrize("optim", ["optim", "adam"])
def test_forward_from_another_thread_while_training(optim):
    """Each result is the output of the parameters before or after some step."""
    rng = np.random.default_rng(8)
    net = dn.Sequential(
        dn.Linear(64, 256, rng=0), dn.TanH(), dn.Linear(256, 64, rng=1), dn.Sigmoid()
    )
    opt = OPTIMS[optim](net, dn.BCELoss())
    x_eval = rng.standard_normal((200, 64))
    batches = [(rng.standard_normal((32, 64)), rng.random((32, 64))) for _ in range(40)]
    snapshots = [_params(net)]
    seen: list[np.ndarray] = []
    errors: list[BaseException] = []
    done = threading.Event()

    def evaluate():
        try:
            while not done.is_set() or not seen:
                seen.append(net.forward(x_eval))
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    reader = threading.Thread(target=evaluate)
    reader.start()
    try:
        for x, y in batches:
            opt.step(x, y)
            snapshots.append(_params(net))
    finally:
        done.set()
        reader.join()
    assert not errors, errors
    ref = copy.deepcopy(net)
    outputs = []
    for snap in snapshots:
        for (_, p, _), s in zip(ref.named_parameters(), snap, strict=True):
            p[...] = s
        outputs.append(ref.forward(x_eval))
    for out in seen:
        assert any(np.array_equal(out, o) for o in outputs), "a torn or unknown result"


# --- memory ------------------------------------------------------------------

PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc (Linux)")
def test_forward_state_goes_with_the_output():
    """Issue 12 item 8: deleting the input and output frees what forward kept."""
    rng = np.random.default_rng(9)
    net = dn.Sequential(
        dn.Linear(256, 512, rng=rng), dn.ReLU(), dn.Linear(512, 512, rng=rng), dn.TanH(),
        dn.Linear(512, 10, rng=rng),
    )  # fmt: skip
    net.forward(rng.standard_normal((10, 256)))
    gc.collect()
    before = _rss()
    X = rng.standard_normal((20_000, 256))  # 41 MB; the hidden outputs 82 MB each
    out = net.forward(X)
    assert _rss() - before > 150 * 2**20
    del X, out
    held = _rss() - before
    assert held < 20 * 2**20, f"{held / 2**20:.0f} MiB still held after the output was deleted"


# --- course-style layers -----------------------------------------------------


class CourseLinear(dn.Module):
    """A layer as a course student writes it: no _param_names declared."""

    def __init__(self, n_in, n_out):
        super().__init__()
        rng = np.random.default_rng(0)
        self._parameters = rng.standard_normal((n_in, n_out)) * 0.1
        self._bias = np.zeros(n_out)
        self._gradient = np.zeros((n_in, n_out))
        self._grad_bias = np.zeros(n_out)

    def forward(self, X):
        return X @ self._parameters + self._bias

    def backward_update_gradient(self, input, delta):
        self._gradient += input.T @ delta
        self._grad_bias += delta.sum(axis=0)

    def backward_delta(self, input, delta):
        return delta @ self._parameters.T


def test_a_course_style_bias_trains():
    layer = CourseLinear(2, 1)
    assert [n for n, _, _ in layer.named_parameters()] == ["_parameters", "_bias"]
    x = np.random.default_rng(1).standard_normal((50, 2))
    y = x @ np.array([[1.0], [-2.0]]) + 5.0
    opt = dn.Optim(dn.Sequential(layer), dn.MSELoss(), 1e-2)
    for _ in range(300):
        opt.step(x, y)
    assert layer._bias[0] == pytest.approx(5.0, abs=1e-3)


def test_a_missing_super_init_says_so():
    class Forgot(dn.Module):
        def __init__(self):
            self._parameters = np.zeros((2, 2))

    with pytest.raises(AttributeError, match=r"super\(\).__init__\(\)"):
        Forgot()


# --- docstrings --------------------------------------------------------------


def test_docstrings():
    text = pydoc.render_doc(dn.Module.forward, renderer=pydoc.plaintext)
    assert "#" not in text and "output" in text
    for cls in (dn.Sequential, dn.AutoEncoder):
        assert "chain rule" in (cls.__doc__ or "")
