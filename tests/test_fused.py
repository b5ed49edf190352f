"""The fused paths (dense chains in one Rust call, one-call SGD) against the
layers run one by one, in float32 and float64, and against torch."""

from __future__ import annotations

import diy_nn as dn
import numpy as np
import pytest
from diy_nn import _core
from diy_nn.plan import ConvPool, DenseRun, LayerStep
from parity import ParamMap, check_module, require_torch

ACTS = {"tanh": dn.TanH, "sigmoid": dn.Sigmoid, "relu": dn.ReLU, None: None}
TOL = {np.float32: {"rtol": 2e-5, "atol": 2e-6}, np.float64: {"rtol": 1e-12, "atol": 1e-13}}


def make_layers(sizes, acts, dtype, seed=0, bias=True):
    rng = np.random.default_rng(seed)
    layers = []
    for i, act in enumerate(acts):
        layers.append(dn.Linear(sizes[i], sizes[i + 1], bias=bias, dtype=dtype, rng=rng))
        if act is not None:
            layers.append(ACTS[act]())
    return layers


class Unfused(dn.Sequential):
    """A Sequential that never takes the fused path: the layers one by one."""

    def __init__(self, *layers):
        super().__init__(*layers)
        self._unfused = [LayerStep(layer) for layer in self.layers]

    def steps(self):
        return self._unfused


def whole_chain(net):
    """The net's single dense run (the whole chain fused), or None."""
    steps = net.steps()
    return steps[0] if len(steps) == 1 and isinstance(steps[0], DenseRun) else None


def clone(net_layers, dtype):
    """The same layers (same parameter values), new objects."""
    out = []
    for layer in net_layers:
        if isinstance(layer, dn.Linear):
            copy = dn.Linear(layer.input, layer.output, bias=layer._bias is not None, dtype=dtype)
            copy._parameters = layer._parameters
            if layer._bias is not None:
                copy._bias = layer._bias
            out.append(copy)
        else:
            out.append(type(layer)())
    return out


CHAINS = [
    ((6, 5, 4, 3), ("tanh", "tanh", None)),
    ((6, 8, 2, 8, 6), ("tanh", "tanh", "relu", "sigmoid")),
    ((4, 3), ("sigmoid",)),
    ((4, 7, 2), ("relu", None)),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("sizes,acts", CHAINS)
@pytest.mark.parametrize("bias", [True, False])
def test_fused_matches_layer_by_layer(dtype, sizes, acts, bias):
    layers = make_layers(sizes, acts, dtype, bias=bias)
    fused = dn.Sequential(*layers)
    plain = Unfused(*clone(layers, dtype))
    assert whole_chain(fused) is not None
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((9, sizes[0])) * 2).astype(dtype)
    delta = rng.standard_normal((9, sizes[-1])).astype(dtype)
    tol = TOL[dtype]

    y1, y2 = fused.forward(x), plain.forward(x)
    assert y1.dtype == dtype
    np.testing.assert_allclose(y1, y2, **tol)
    fused.zero_grad()
    plain.zero_grad()
    d1, d2 = fused.backward(x, delta), plain.backward(x, delta)
    np.testing.assert_allclose(d1, d2, **tol)
    # Accumulation, and backward_update_gradient (no input delta) on top.
    fused.backward_update_gradient(x, delta)
    plain.backward_update_gradient(x, delta)
    for (n1, _, g1), (n2, _, g2) in zip(
        fused.named_parameters(), plain.named_parameters(), strict=True
    ):
        assert n1 == n2
        np.testing.assert_allclose(g1, g2, err_msg=n1, **tol)
    # The course's methods still work one by one on the fused net.
    np.testing.assert_allclose(fused.backward_delta(x, delta), d2, **tol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_training_steps_match(dtype):
    """Optim steps (fused chain + one-call SGD) give the layer-by-layer parameters."""
    sizes, acts = (8, 6, 3, 6, 8), ("tanh", "tanh", "tanh", "sigmoid")
    layers = make_layers(sizes, acts, dtype, seed=3)
    fused, plain = dn.Sequential(*layers), Unfused(*clone(layers, dtype))
    rng = np.random.default_rng(4)
    x = rng.random((20, 8)).astype(dtype)
    opt1, opt2 = dn.Optim(fused, dn.BCELoss(), 1e-2), dn.Optim(plain, dn.BCELoss(), 1e-2)
    opt2._step = lambda params: [p.__isub__(opt2.eps * g) for _, p, g in params]
    for i in range(0, 20, 5):
        c1, c2 = opt1.step(x[i : i + 5], x[i : i + 5]), opt2.step(x[i : i + 5], x[i : i + 5])
        assert c1 == pytest.approx(c2, rel=1e-5 if dtype == np.float32 else 1e-12)
    for (_, p1, _), (_, p2, _) in zip(
        fused.named_parameters(), plain.named_parameters(), strict=True
    ):
        np.testing.assert_allclose(p1, p2, **TOL[dtype])


def test_nested_autoencoder_is_fused():
    enc = dn.Sequential(dn.Linear(6, 3), dn.TanH())
    dec = dn.Sequential(dn.Linear(3, 6), dn.Sigmoid())
    ae = dn.AutoEncoder(enc, dec)
    assert whole_chain(ae) is not None and len(whole_chain(ae).linears) == 2
    x = np.random.default_rng(0).random((4, 6))
    np.testing.assert_allclose(ae.forward(x), ae.decode(ae.encode(x)), rtol=1e-12)


def test_not_fused_when_the_chain_does_not_fit():
    assert whole_chain(dn.Sequential(dn.TanH(), dn.Linear(2, 2))) is None
    assert whole_chain(dn.Sequential(dn.Linear(2, 2), dn.TanH(), dn.TanH())) is None
    assert whole_chain(dn.Sequential(dn.Linear(2, 2), dn.Threshold(1.0, 0.0))) is None
    assert whole_chain(dn.Sequential(dn.Linear(2, 2), dn.SoftMax())) is None


def test_fallbacks_and_errors_go_through_the_layers():
    net = dn.Sequential(dn.Linear(3, 2), dn.TanH())
    # Integer input: cast to the parameters' dtype, as Linear does.
    out = net.forward(np.ones((2, 3), dtype=np.int64))
    assert out.dtype == np.float64
    with pytest.raises(ValueError, match="Linear.forward"):
        net.forward(np.ones((2, 4)))
    # Mixed dtypes: layer by layer.
    mixed = dn.Sequential(dn.Linear(3, 2, dtype=np.float32), dn.Linear(2, 2, dtype=np.float64))
    assert mixed.forward(np.ones((1, 3))).dtype == np.float64
    # A course script replaces a weight with another shape: gradients follow.
    net[0]._parameters = np.ones((3, 2))
    x = np.ones((2, 3))
    net.forward(x)
    net.backward_update_gradient(x, np.ones((2, 2)))
    assert net[0]._gradient.shape == (3, 2)


def test_binding_errors():
    x = np.ones((2, 3), np.float32)
    w = np.ones((3, 4), np.float32)
    ident, tanh = _core.Activation.Identity, _core.Activation.TanH
    with pytest.raises(TypeError, match="activations"):
        _core.dense_forward(x, [w], [None], [1])  # an integer code, not an Activation
    with pytest.raises(ValueError, match="one entry of activations"):
        _core.dense_forward(x, [w], [None], [ident, ident])
    with pytest.raises(ValueError, match="weight must have shape"):
        _core.dense_forward(x, [w, w], [None, None], [ident, ident])
    with pytest.raises(TypeError, match="same dtype"):
        _core.dense_forward(x, [w.astype(np.float64)], [None], [ident])
    with pytest.raises(ValueError, match="one entry of biases"):
        _core.dense_forward(x, [w], [], [ident])
    (y,) = _core.dense_forward(x, [w], [None], [tanh])
    g = np.zeros_like(w)
    with pytest.raises(ValueError, match="delta must have shape"):
        _core.dense_backward(x, [y], [w], [None], [tanh], [g], [None], np.ones((2, 5), np.float32))
    with pytest.raises(ValueError, match="bias gradient"):
        _core.dense_backward(
            x, [y], [w], [None], [tanh], [g], [np.zeros(4, np.float32)], np.ones_like(y)
        )
    with pytest.raises(TypeError, match="loss"):
        _core.DenseTrainer().step(x, x[:, :1], [w], [None], [tanh], [g], [None], 0, 0.1)


class _Net(dn.Sequential):
    """Exposes the chain's parameters as attributes for ``check_module``."""

    def __getattr__(self, name):
        kind, idx = name[:-1], int(name[-1])
        linear = [m for m in self.layers if isinstance(m, dn.Linear)][idx]
        attr = {"w": "_parameters", "b": "_bias", "gw": "_gradient", "gb": "_grad_bias"}[kind]
        return getattr(linear, attr)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fused_chain_against_torch(dtype):
    torch = require_torch()
    nn = torch.nn
    rng = np.random.default_rng(5)
    ours = _Net(
        dn.Linear(7, 6, rng=rng, dtype=dtype),
        dn.TanH(),
        dn.Linear(6, 5, rng=rng, dtype=dtype),
        dn.ReLU(),
        dn.Linear(5, 4, rng=rng, dtype=dtype),
        dn.Sigmoid(),
    )

    class Theirs(nn.Module):
        def __init__(self):
            super().__init__()
            self.seq = nn.Sequential(
                nn.Linear(7, 6),
                nn.Tanh(),
                nn.Linear(6, 5),
                nn.ReLU(),
                nn.Linear(5, 4),
                nn.Sigmoid(),
            )

        def forward(self, t):
            return self.seq(t)

    theirs = Theirs()
    for i, j in enumerate((0, 2, 4)):
        setattr(Theirs, f"w{i}", property(lambda s, j=j: s.seq[j].weight))
        setattr(Theirs, f"b{i}", property(lambda s, j=j: s.seq[j].bias))
    params = []
    for i in range(3):
        params.append(ParamMap(f"w{i}", f"gw{i}", f"w{i}", np.transpose, np.transpose))
        params.append(ParamMap(f"b{i}", f"gb{i}", f"b{i}"))
    x = rng.standard_normal((8, 7)).astype(dtype)
    check_module(ours, theirs, x, params)


# --- the whole training step in one call (DenseTrainer) ----------------------


class LayerByLayer(dn.Optim):
    """``Optim`` with the one-call step turned off: forward, loss, backward, update."""

    def _fused_step(self, bx, by):
        return None


def _targets(loss, n, k, rng, dtype):
    if isinstance(loss, (dn.MSELoss, dn.MAELoss)):
        return rng.standard_normal((n, k)).astype(dtype)
    if isinstance(loss, dn.BCELoss):
        return rng.random((n, k)).astype(dtype)
    return rng.integers(0, k, n)


STEP_LOSSES = [dn.MSELoss, dn.MAELoss, dn.BCELoss, dn.CELogSoftMax, dn.CrossEntropyCriterion]


def _pair_of_nets(dtype, acts, sizes, seed=0, bias=True):
    layers = make_layers(sizes, acts, dtype, seed=seed, bias=bias)
    return dn.Sequential(*layers), dn.Sequential(*clone(layers, dtype))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "loss_cls,one_hot",
    [(c, False) for c in STEP_LOSSES] + [(dn.CELogSoftMax, True), (dn.CrossEntropyCriterion, True)],
)
@pytest.mark.parametrize("bias", [True, False])
def test_fused_step_is_the_layer_by_layer_step(dtype, loss_cls, one_hot, bias):
    """Same returned loss; exactly the same parameters, gradients and output."""
    sizes = (9, 7, 5, 4)
    acts = ("tanh", "relu", "sigmoid" if loss_cls is dn.BCELoss else None)
    fused, plain = _pair_of_nets(dtype, acts, sizes, seed=2, bias=bias)
    opt1, opt2 = dn.Optim(fused, loss_cls(), 0.05), LayerByLayer(plain, loss_cls(), 0.05)
    rng = np.random.default_rng(7)
    for step in range(4):
        x = rng.standard_normal((6, 9)).astype(dtype)
        y = _targets(loss_cls(), 6, 4, rng, dtype)
        if one_hot:
            y = dn.one_hot(y, 4, dtype)
        c1, c2 = opt1.step(x, y), opt2.step(x, y)
        assert fused.train_step_output() is not None, "the fused step ran"
        assert c1 == pytest.approx(c2, rel=2e-6 if dtype == np.float32 else 1e-13), step
        np.testing.assert_array_equal(opt1.last_output, opt2.last_output)
        for (n1, p1, g1), (n2, p2, g2) in zip(
            fused.named_parameters(), plain.named_parameters(), strict=True
        ):
            assert n1 == n2
            np.testing.assert_array_equal(p1, p2, err_msg=n1)
            np.testing.assert_array_equal(g1, g2, err_msg=n1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("batch", [1, 3, 10, 16, 17])
@pytest.mark.parametrize("strided", [False, True])
def test_fused_step_on_small_batches_of_wide_layers(dtype, batch, strided):
    """Widths that take the small-batch product paths (a 100- and a 37-wide
    output: tail columns; δ·Wᵀ of more than 256 outputs: dot-product chunks),
    batches around their 16-row limit, a strided input: the one-call step
    stays within tolerance of the layers run one by one."""
    sizes, acts = (70, 100, 10, 37, 100), ("tanh", "tanh", "relu", "sigmoid")
    layers = make_layers(sizes, acts, dtype, seed=4)
    fused, plain = dn.Sequential(*layers), Unfused(*clone(layers, dtype))
    opt1, opt2 = dn.Optim(fused, dn.BCELoss(), 1e-2), LayerByLayer(plain, dn.BCELoss(), 1e-2)
    rng = np.random.default_rng(9)
    tol = TOL[dtype]
    for step in range(3):
        x = rng.random((batch, 140 if strided else 70)).astype(dtype)
        x = x[:, ::2] if strided else x
        y = rng.random((batch, 100)).astype(dtype)
        c1, c2 = opt1.step(x, y), opt2.step(x, y)
        assert fused.train_step_output() is not None, "the fused step ran"
        assert c1 == pytest.approx(c2, rel=2e-6 if dtype == np.float32 else 1e-12), step
        np.testing.assert_allclose(opt1.last_output, opt2.last_output, **tol)
        for (n1, p1, g1), (_, p2, g2) in zip(
            fused.named_parameters(), plain.named_parameters(), strict=True
        ):
            np.testing.assert_allclose(p1, p2, err_msg=n1, **tol)
            np.testing.assert_allclose(g1, g2, err_msg=n1, **tol)


def test_fused_step_falls_back():
    """An unfit loss or target, a non-chain net: the general path, same errors
    (momentum and Adam take the one-call step: tests/test_optim.py)."""
    net = dn.Sequential(dn.Linear(3, 2), dn.TanH())
    x, y = np.ones((4, 3)), np.zeros((4, 2))
    dn.Optim(net, dn.HingeLoss(), 0.1).step(x, -np.ones((4, 2)))
    assert net.train_step_output() is None
    opt = dn.Optim(net, dn.MSELoss(), 0.1)
    with pytest.raises(ValueError, match="shape"):
        opt.step(x, np.zeros((4, 3)))
    with pytest.raises(ValueError, match="class"):
        dn.Optim(net, dn.CELogSoftMax(), 0.1).step(x, np.array([0, 1, 2, 1]))
    assert net.train_step_output() is None
    opt.step(x, y)
    assert net.train_step_output() is not None


def test_parameter_reassignment_reaches_the_cached_lists():
    """Course scripts set ``layer._parameters = W``: the next step uses W."""
    fused, plain = _pair_of_nets(np.float64, ("tanh", None), (3, 4, 2))
    x, y = np.ones((5, 3)), np.zeros((5, 2))
    for net, opt_cls in ((fused, dn.Optim), (plain, LayerByLayer)):
        opt = opt_cls(net, dn.MSELoss(), 0.1)
        opt.step(x, y)
        net[0]._parameters = np.full((3, 4), 0.5)
        net[2]._gradient = None
        opt.step(x, y)
        assert net[2]._gradient is not None
    for (_, p1, g1), (_, p2, g2) in zip(
        fused.named_parameters(), plain.named_parameters(), strict=True
    ):
        np.testing.assert_array_equal(p1, p2)
        np.testing.assert_array_equal(g1, g2)
    fused.to(np.float32)
    opt = dn.Optim(fused, dn.MSELoss(), 0.1)
    opt.step(x, y)
    assert all(p.dtype == np.float32 for _, p, _ in opt.parameters())


@pytest.mark.parametrize("loss_name", ["mse", "bce", "ce"])
def test_fused_steps_against_torch(loss_name):
    torch = require_torch()
    rng = np.random.default_rng(11)
    layers = make_layers((8, 6, 5), ("tanh", "sigmoid" if loss_name == "bce" else None), np.float64)
    net = dn.Sequential(*layers)
    lins = [m for m in layers if isinstance(m, dn.Linear)]
    tnet = torch.nn.Sequential(
        torch.nn.Linear(8, 6),
        torch.nn.Tanh(),
        torch.nn.Linear(6, 5),
        *([torch.nn.Sigmoid()] if loss_name == "bce" else []),
    ).double()
    with torch.no_grad():
        for lin, t in zip(lins, (tnet[0], tnet[2]), strict=True):
            t.weight.copy_(torch.from_numpy(lin._parameters.T.copy()))
            t.bias.copy_(torch.from_numpy(lin._bias.copy()))
    loss = {"mse": dn.MSELoss(), "bce": dn.BCELoss(), "ce": dn.CELogSoftMax()}[loss_name]
    tloss = {
        "mse": lambda o, t: ((o - t) ** 2).sum(),
        "bce": lambda o, t: torch.nn.functional.binary_cross_entropy(o, t, reduction="sum"),
        "ce": lambda o, t: torch.nn.functional.cross_entropy(o, t, reduction="sum"),
    }[loss_name]
    opt = dn.Optim(net, loss, 0.01)
    topt = torch.optim.SGD(tnet.parameters(), lr=0.01)
    for _ in range(3):
        x = rng.standard_normal((7, 8))
        y = _targets(loss, 7, 5, rng, np.float64)
        cost = opt.step(x, y)
        topt.zero_grad()
        tl = tloss(tnet(torch.from_numpy(x)), torch.from_numpy(y))
        tl.backward()
        topt.step()
        assert cost == pytest.approx(tl.item() / 7, rel=1e-10)
    for lin, t in zip(lins, (tnet[0], tnet[2]), strict=True):
        np.testing.assert_allclose(lin._parameters, t.weight.detach().numpy().T, rtol=1e-10)
        np.testing.assert_allclose(lin._bias, t.bias.detach().numpy(), rtol=1e-10)
        np.testing.assert_allclose(lin._gradient, t.weight.grad.numpy().T, rtol=1e-10)


def test_dense_trainer_validates_its_arguments():
    trainer = _core.DenseTrainer()
    w, b = np.ones((3, 2)), np.ones(2)
    gw, gb = np.zeros((3, 2)), np.zeros(2)
    x, y = np.ones((4, 3)), np.zeros((4, 2))

    def step(**kw):
        args = dict(
            x=x, target=y, weights=[w], biases=[b], activations=[_core.Activation.TanH],
            grad_weights=[gw], grad_biases=[gb], loss=_core.LossKind.MSE, lr=0.1,
        )  # fmt: skip
        args.update(kw)
        return trainer.step(**args)

    w0 = w.copy()
    bad = [
        ({"x": np.ones((4, 5))}, ValueError, "weight"),
        ({"x": np.ones(4)}, ValueError, "x"),
        ({"x": "no"}, TypeError, "x"),
        ({"x": x.astype(np.float32)}, TypeError, "dtype"),
        ({"target": np.zeros((4, 3))}, ValueError, "target"),
        ({"target": y.astype(np.float32)}, TypeError, "same dtype"),
        ({"target": [[0.0, 0.0]] * 4}, TypeError, "target"),
        ({"target": np.array([0, 1, 0, 1])}, ValueError, "class indices"),
        (
            {"target": np.array([0, 1, 2, 1]), "loss": _core.LossKind.CrossEntropy},
            ValueError,
            "target",
        ),
        ({"target": np.zeros(4)}, TypeError, "target"),
        ({"loss": 0}, TypeError, "loss"),
        ({"activations": [1]}, TypeError, "activation"),
        ({"activations": [_core.Activation.TanH] * 2}, ValueError, "activation"),
        ({"biases": [None]}, ValueError, "bias"),
        ({"grad_biases": []}, ValueError, "grad_biases"),
        ({"grad_weights": [np.zeros((2, 3))]}, ValueError, "gradient"),
        ({"grad_weights": [w]}, ValueError, "grad_weight"),
        ({"weights": [w[:, :1]], "biases": [None], "grad_biases": [None]}, ValueError, "grad"),
        ({"x": np.ones((0, 3)), "target": np.zeros((0, 2))}, ValueError, "empty"),
        ({"lr": float("nan")}, ValueError, "lr"),
        ({"weights": []}, ValueError, "per layer"),
    ]
    ro = w.copy()
    ro.flags.writeable = False
    bad.append(({"weights": [ro]}, ValueError, "writeable"))
    for kw, err, msg in bad:
        with pytest.raises(err, match=msg):
            step(**kw)
        np.testing.assert_array_equal(w, w0, err_msg=str(kw))
    assert trainer.output() is None
    assert 0 < step() < np.inf
    assert trainer.output().shape == (4, 2)


CNNS = {
    # the course's CNN, small: Conv1D-MaxPool1D-Flatten-dense tail
    "conv1d": (
        lambda dt, r: [
            dn.Conv1D(3, 2, 4, dtype=dt, rng=r),
            dn.MaxPool1D(2, 2),
            dn.Flatten(),
            dn.Linear(12, 5, dtype=dt, rng=r),
            dn.ReLU(),
            dn.Linear(5, 3, dtype=dt, rng=r),
            dn.TanH(),
        ],
        (4, 8, 2),
        [True, False, True],
    ),
    # stride, padding, no bias, an overlapping pool, two conv+pool pairs
    "conv2d": (
        lambda dt, r: [
            dn.Conv2D(3, 2, 4, stride=1, padding=1, bias=False, dtype=dt, rng=r),
            dn.MaxPool2D(3, 1),
            dn.Conv2D(2, 4, 3, stride=2, dtype=dt, rng=r),
            dn.MaxPool2D(2, 2),
            dn.Flatten(),
            dn.Linear(6, 3, dtype=dt, rng=r),
        ],
        (5, 10, 9, 2),
        [True, True, False, True],
    ),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cnn", sorted(CNNS))
def test_fused_runs_inside_a_cnn(dtype, cnn):
    """A CNN's conv + max-pool pairs and its Linear-ReLU-Linear tail run fused;
    the results are the layers' one by one (forward, d input, gradients, steps)."""
    layers, shape, fused = CNNS[cnn]
    rng = np.random.default_rng(3)
    net = dn.Sequential(*layers(dtype, np.random.default_rng(8)))
    plain = Unfused(*layers(dtype, np.random.default_rng(8)))
    assert [isinstance(step, (DenseRun, ConvPool)) for step in net.steps()] == fused
    x = rng.standard_normal(shape).astype(dtype)
    out = plain.forward(x)
    delta = rng.standard_normal(out.shape).astype(dtype)
    tol = TOL[dtype]
    np.testing.assert_allclose(net.forward(x), out, **tol)
    np.testing.assert_allclose(net.backward(x, delta), plain.backward(x, delta), **tol)
    opt1, opt2 = dn.Optim(net, dn.CELogSoftMax(), 0.1), dn.Optim(plain, dn.CELogSoftMax(), 0.1)
    for _ in range(3):
        y = rng.integers(0, 3, shape[0])
        assert opt1.step(x, y) == pytest.approx(opt2.step(x, y), rel=tol["rtol"])
    for (_, p1, g1), (_, p2, g2) in zip(
        net.named_parameters(), plain.named_parameters(), strict=True
    ):
        np.testing.assert_allclose(p1, p2, **tol)
        np.testing.assert_allclose(g1, g2, **tol)
    # an input the pair cannot take goes through the layers, which raise
    with pytest.raises(ValueError, match="Conv"):
        net.forward(np.ones((2, *shape[1:-1], 7), dtype))


def test_conv_pool_binding_errors():
    x, w = np.ones((2, 8, 1)), np.ones((3, 1, 4))
    with pytest.raises(
        ValueError, match="7 is larger than the convolution's output length 6 .input length 8"
    ):
        _core.conv1d_maxpool(x, w, None, 1, 0, 7, 1)
    y, arg = _core.conv1d_maxpool(x, w, None, 1, 0, 2, 2)
    gw = np.zeros_like(w)
    with pytest.raises(ValueError, match="argmax must have shape"):
        _core.conv1d_maxpool_backward(x, w, y, arg[:, :2], gw, None, 1, 0, 2, 2, False)
    with pytest.raises(TypeError, match="argmax must have dtype int32, got int64"):
        _core.conv1d_maxpool_backward(x, w, y, arg.astype(np.int64), gw, None, 1, 0, 2, 2, False)
    with pytest.raises(ValueError, match="w overlaps the output"):
        _core.conv1d_maxpool_backward(x, w, y, arg, w, None, 1, 0, 2, 2, False)
    with pytest.raises(TypeError, match="same dtype|dtype"):
        _core.conv2d_maxpool(
            np.ones((1, 4, 4, 1), np.float32), np.ones((3, 3, 1, 2)), None, 1, 0, 2, 2
        )
    assert _core.conv1d_maxpool_backward(x, w, y, arg, gw, None, 1, 0, 2, 2, False) is None
    expected = np.zeros_like(w)
    # argmax is max_pool1d's: positions along the length 6 output
    np.testing.assert_array_equal(arg, _core.max_pool1d(_core.conv1d(x, w), 2, 2)[1])
    dconv = _core.max_pool1d_backward(y, arg, 6)
    _core.conv1d_backward_weight(x, dconv, expected, None, 1, 0)
    np.testing.assert_allclose(gw, expected)
    assert np.abs(gw).max() > 0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dense_runs_inside_a_longer_sequential(dtype):
    """An input a run cannot take raises the layers' own error."""
    # An input the run cannot take (float64 into float32 layers is cast, a
    # wrong width is not) raises the layers' own error.
    with pytest.raises(ValueError, match="Linear"):
        dn.Sequential(dn.Flatten(), dn.Linear(5, 2)).forward(np.ones((2, 3)))


# --- NaN and saturated inputs: fused runs give what the layers give -------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("act", [dn.TanH, dn.Sigmoid, dn.ReLU])
def test_nan_and_minus_100_through_fused_runs_as_through_layers(dtype, act):
    """Issue 11: Linear(identity weights) + activation on NaN and -100, fused
    (the Sequential's chain and the one-call step) and layer by layer."""
    x = np.array([[np.nan, 0, 0, 0, 0, 0], [-100.0, -90.0, -87.5, 0.0, 3.0, 100.0]], dtype)
    lin = dn.Linear(6, 6, dtype=dtype)
    lin._parameters[...] = np.eye(6, dtype=dtype)
    lin._bias[...] = 0
    alone = act().forward(lin.forward(x))
    fused = dn.Sequential(lin, act()).forward(x)
    assert np.isnan(alone[0, 0]) and np.isnan(fused[0, 0])
    np.testing.assert_allclose(fused, alone, rtol=2e-6, atol=2 * np.finfo(dtype).smallest_subnormal)
    if act is dn.Sigmoid:
        want = np.exp(dtype(-100.0))  # subnormal in float32
        np.testing.assert_allclose(fused[1, 0], want, rtol=0.05 if dtype == np.float32 else 1e-15)
    # The one-call training step reports a NaN cost, as the layers do.
    net = dn.Sequential(lin, act())
    cost = dn.Optim(net, dn.MSELoss(), 0.1).step(x, np.zeros_like(x))
    assert np.isnan(cost)
    assert np.isnan(net.train_step_output()[0, 0]), "the fused step ran"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nan_through_every_activation(dtype):
    """Issue 12 item 3: NaN stays NaN (torch), forward and backward."""
    x = np.array([[np.nan, -1.0, 0.5, 2.0]], dtype)
    for layer in (dn.TanH(), dn.Sigmoid(), dn.ReLU(), dn.Threshold(0.5, 9.0)):
        y = layer.forward(x)
        assert np.isnan(y[0, 0]), layer
        d = layer.backward_delta(x, np.ones_like(x))
        assert not np.isfinite(d[0, 0]) or isinstance(layer, dn.Threshold), layer
    np.testing.assert_array_equal(dn.Threshold(0.5, 9.0).forward(x)[0, 1:], [9.0, 9.0, 2.0])
    np.testing.assert_array_equal(dn.ReLU().forward(x)[0, 1:], [0.0, 0.5, 2.0])
    # torch's threshold backward passes the gradient where x is NaN (NaN <= t is false).
    np.testing.assert_array_equal(dn.ReLU().backward_delta(x, np.ones_like(x)), [[1, 0, 1, 1]])


def test_kernel_enums_are_named_and_pickle():
    """Activations and losses cross the boundary as named enums, which copy and
    pickle as themselves (a fused plan holding them can be copied)."""
    import copy
    import pickle

    members = [_core.Activation.TanH, _core.Activation.ReLU, _core.LossKind.MSE]
    members.append(_core.LossKind.LogSoftmaxNLL)
    for proto in range(pickle.HIGHEST_PROTOCOL + 1):
        assert pickle.loads(pickle.dumps(members, protocol=proto)) == members
    assert copy.deepcopy(members) == members
    assert repr(_core.Activation.Identity) == "Activation.Identity"
