"""Issue 4: optimizers against torch.optim, ``fit``/``predict``/``score``, and training
behaviour (XOR, the 8x8 checkerboard, Adam against SGD)."""

from __future__ import annotations

import diy_nn as nn
import numpy as np
import pytest
from parity import small_mlp, train_beside_torch

OPTIMIZERS = {
    "sgd": (lambda net, loss: nn.SGD(net, loss, eps=0.05), lambda T, p: T.optim.SGD(p, lr=0.05)),
    "sgd-momentum-wd": (
        lambda net, loss: nn.SGD(net, loss, eps=0.05, momentum=0.9, weight_decay=0.01),
        lambda T, p: T.optim.SGD(p, lr=0.05, momentum=0.9, weight_decay=0.01),
    ),
    "sgd-nesterov": (
        lambda net, loss: nn.SGD(net, loss, eps=0.05, momentum=0.8, nesterov=True),
        lambda T, p: T.optim.SGD(p, lr=0.05, momentum=0.8, nesterov=True),
    ),
    "adam": (lambda net, loss: nn.Adam(net, loss, eps=0.01), lambda T, p: T.optim.Adam(p, lr=0.01)),
    "adam-wd": (
        lambda net, loss: nn.Adam(net, loss, eps=0.01, betas=(0.8, 0.99), weight_decay=0.1),
        lambda T, p: T.optim.Adam(p, lr=0.01, betas=(0.8, 0.99), weight_decay=0.1),
    ),
}


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_optimizer_matches_torch(name):
    net, tnet = train_beside_torch(*OPTIMIZERS[name], steps=6, batches=2, size=4)
    for i in (0, 2):
        np.testing.assert_allclose(
            net[i]._parameters, tnet[i].weight.detach().numpy().T, rtol=1e-10
        )
        np.testing.assert_allclose(net[i]._bias, tnet[i].bias.detach().numpy(), rtol=1e-10)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda n, l: nn.SGD(n, l, eps=0.1, momentum=1.0), "momentum"),
        (lambda n, l: nn.SGD(n, l, eps=0.1, weight_decay=-1), "weight_decay"),
        (lambda n, l: nn.SGD(n, l, eps=0.1, nesterov=True), "nesterov"),
        (lambda n, l: nn.Adam(n, l, eps=-1), "eps"),
        (lambda n, l: nn.Adam(n, l, betas=(0.9, 1.0)), "betas"),
        (lambda n, l: nn.Adam(n, l, epsilon=0), "epsilon"),
    ],
)
def test_optimizer_arguments_are_checked(make, match):
    with pytest.raises(ValueError, match=match):
        make(small_mlp(), nn.MSELoss())


def _blobs(n: int, seed: int):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    X = rng.standard_normal((n, 5)) + 3 * np.eye(5)[y]
    return X, y


def test_fit_history_and_seeded_shuffling():
    X, y = _blobs(120, 0)
    Xv, yv = _blobs(60, 1)
    hists = []
    for _ in range(2):
        net = small_mlp(3)
        hists.append(
            nn.fit(
                nn.Adam(net, nn.CrossEntropyCriterion(), eps=0.01),
                X,
                y,
                epochs=5,
                batch_size=16,
                seed=7,
                validation_data=(Xv, yv),
                verbose=False,
            )
        )
    assert hists[0] == hists[1]  # same seed: same shuffles, same numbers
    assert set(hists[0]) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert all(len(v) == 5 for v in hists[0].values())
    assert hists[0]["loss"][-1] < hists[0]["loss"][0]
    assert hists[0]["val_accuracy"][-1] == nn.score(net, Xv, yv)


def test_fit_regression_has_no_accuracy():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((50, 5))
    Y = X @ rng.standard_normal((5, 3))
    hist = nn.fit(nn.SGD(small_mlp(), nn.MSELoss(), eps=1e-3), X, Y, epochs=3, verbose=False)
    assert len(hist["loss"]) == 3 and hist["accuracy"] == [] and hist["val_loss"] == []


def test_fit_early_stopping_restores_the_best_parameters():
    X, y = _blobs(60, 0)
    Xv, yv = _blobs(30, 1)
    net = small_mlp(1)
    # a huge step size: the validation loss soon stops improving
    opt = nn.SGD(net, nn.CrossEntropyCriterion(), eps=5.0)
    hist = nn.fit(
        opt, X, y, epochs=100, seed=0, validation_data=(Xv, yv), patience=3, verbose=False
    )
    assert len(hist["val_loss"]) < 100
    best = int(np.argmin(hist["val_loss"]))
    assert len(hist["val_loss"]) == best + 4
    vl = float(np.mean(nn.CrossEntropyCriterion().forward(yv, net.forward(Xv))))
    assert vl == pytest.approx(hist["val_loss"][best], rel=1e-12)


def test_fit_progress_bar(capsys):
    X, y = _blobs(20, 0)
    nn.fit(nn.Adam(small_mlp(), nn.CrossEntropyCriterion()), X, y, epochs=2, verbose=True)
    assert "fit" in capsys.readouterr().err
    nn.fit(nn.Adam(small_mlp(), nn.CrossEntropyCriterion()), X, y, epochs=2, verbose=False)
    assert capsys.readouterr().err == ""


def test_fit_checks_its_arguments():
    X, y = _blobs(20, 0)
    opt = nn.Adam(small_mlp(), nn.CrossEntropyCriterion())
    with pytest.raises(ValueError, match="same length"):
        nn.fit(opt, X, y[:-1], verbose=False)
    with pytest.raises(ValueError, match="epochs"):
        nn.fit(opt, X, y, epochs=0, verbose=False)
    with pytest.raises(TypeError, match="batch_size"):
        nn.fit(opt, X, y, batch_size=2.5, verbose=False)


def test_predict_and_score_label_forms():
    net = nn.Sequential(nn.Linear(1, 1, rng=0))
    net[0]._parameters = np.array([[1.0]])
    net[0]._bias = np.array([0.0])
    X = np.array([[-2.0], [-0.2], [0.3], [0.7]])
    np.testing.assert_array_equal(nn.predict(net, X), [0, 0, 0, 1])  # threshold 0.5
    assert nn.score(net, X, np.array([0, 0, 0, 1])) == 1.0  # {0, 1}: threshold 0.5
    assert nn.score(net, X, np.array([-1, -1, 1, 1])) == 1.0  # {-1, 1}: threshold 0
    assert nn.score(net, X, np.array([-1, -1, -1, 1]), threshold=0.5) == 1.0
    multi = nn.Sequential(nn.Linear(2, 3, rng=0))
    Xm = np.random.default_rng(0).standard_normal((10, 2))
    pred = nn.predict(multi, Xm, batch_size=3)
    np.testing.assert_array_equal(pred, multi.forward(Xm).argmax(1))
    assert nn.score(multi, Xm, nn.one_hot(pred, 3)) == 1.0


def _gen_arti(nbex: int, data_type: int, seed: int, epsilon: float = 0.02, sigma: float = 0.1):
    """The course's 2-D generator (types 1 and 2), labels in {-1, +1}."""
    rng = np.random.default_rng(seed)
    if data_type == 1:
        centres = np.array([[1, 1], [-1, -1], [-1, 1], [1, -1]])
        k = rng.permutation(np.arange(nbex) % 4)
        X = centres[k] + rng.normal(0, np.sqrt(sigma), (nbex, 2))
        y = np.where(k < 2, 1, -1)
    else:
        X = rng.uniform(-4, 4, (nbex, 2))
        y = 2 * ((np.ceil(X[:, 0]) + np.ceil(X[:, 1])) % 2) - 1
    return X + rng.normal(0, epsilon, X.shape), y.astype(np.int64)


def test_xor_reaches_097_held_out():
    X, y = _gen_arti(1000, 1, seed=0)
    Xt, yt = _gen_arti(1000, 1, seed=1)
    net = nn.Sequential(nn.Linear(2, 4, rng=0), nn.TanH(), nn.Linear(4, 1, rng=1), nn.Sigmoid())
    nn.fit(
        nn.Adam(net, nn.BCELoss(), eps=0.02), X, (y[:, None] > 0), epochs=30, seed=0, verbose=False
    )
    acc = nn.score(net, Xt, yt > 0)
    print(f"XOR held-out accuracy: {acc:.4f}")
    assert acc >= 0.97


def test_checkerboard_reaches_090_held_out():
    X, y = _gen_arti(4000, 2, seed=1)
    Xt, yt = _gen_arti(2000, 2, seed=2)
    h = 128
    net = nn.Sequential(
        nn.Linear(2, h, init="he", rng=0),
        nn.ReLU(),
        nn.Linear(h, h, init="he", rng=1),
        nn.ReLU(),
        nn.Linear(h, h, init="he", rng=2),
        nn.ReLU(),
        nn.Linear(h, 1, rng=3),
        nn.Sigmoid(),
    )
    opt = nn.Adam(net, nn.BCELoss(), eps=0.004)
    nn.fit(opt, X, (y[:, None] > 0), epochs=300, batch_size=128, seed=0, verbose=False)
    acc = nn.score(net, Xt, yt, threshold=0.5)  # labels ±1, Sigmoid output
    print(f"checkerboard held-out accuracy: {acc:.4f}")
    assert acc >= 0.9


def test_adam_beats_sgd_on_the_usps_shaped_mlp():
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, (500, 256))
    y = rng.integers(0, 10, 500)
    losses = {}
    for name in ("sgd", "adam"):
        net = nn.Sequential(
            nn.Linear(256, 128, rng=0),
            nn.TanH(),
            nn.Linear(128, 64, rng=1),
            nn.TanH(),
            nn.Linear(64, 10, rng=2),
        )
        loss = nn.CELogSoftMax()
        opt = nn.SGD(net, loss, eps=1e-3) if name == "sgd" else nn.Adam(net, loss, eps=1e-3)
        hist = nn.fit(opt, X, y, epochs=10, batch_size=100, seed=0, verbose=False)
        losses[name] = hist["loss"][-1]
    print(f"final training loss: {losses}")
    assert losses["adam"] < losses["sgd"]


# --- the Rust update rules (rust/optim.rs): one call per step, on the fused step too ----

RULES = {
    "momentum": lambda net, loss: nn.SGD(net, loss, eps=0.05, momentum=0.9, weight_decay=0.01),
    "nesterov": lambda net, loss: nn.SGD(net, loss, eps=0.05, momentum=0.8, nesterov=True),
    "decay-only": lambda net, loss: nn.SGD(net, loss, eps=0.05, weight_decay=0.1),
    "adam": lambda net, loss: nn.Adam(net, loss, eps=0.01, weight_decay=0.1),
    "adamw": lambda net, loss: nn.AdamW(net, loss, eps=0.01),
    "rmsprop": lambda net, loss: nn.RMSprop(net, loss, eps=0.01, momentum=0.5, centered=True),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", sorted(RULES))
def test_fused_step_with_any_rule_is_the_layer_by_layer_step(name, dtype):
    """With momentum, Adam or RMSprop the dense net still trains through its one-call
    step (the gradients), then the rule: exactly the parameters of the general path."""
    make = RULES[name]
    fused = small_mlp().to(dtype)
    plain = small_mlp().to(dtype)
    opt1, opt2 = make(fused, nn.MSELoss()), make(plain, nn.MSELoss())
    opt2._fused_step = lambda bx, by: None  # the general path
    rng = np.random.default_rng(1)
    for _ in range(4):
        x, y = rng.standard_normal((6, 5)).astype(dtype), rng.standard_normal((6, 3)).astype(dtype)
        assert opt1.step(x, y) == pytest.approx(opt2.step(x, y), rel=1e-5)
        assert fused.train_step_output() is not None, "the one-call step ran"
        np.testing.assert_array_equal(opt1.last_output, opt2.last_output)
        for (n1, p1, _), (_, p2, _) in zip(
            fused.named_parameters(), plain.named_parameters(), strict=True
        ):
            assert p1.dtype == dtype
            np.testing.assert_array_equal(p1, p2, err_msg=n1)


def test_odd_layouts_and_dtypes_update_through_copies():
    """A Fortran-order parameter and a gradient of another dtype (a course-style layer
    assigning its own arrays) update as the plain ones do."""
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal((6, 5)), rng.standard_normal((6, 3))
    nets = [small_mlp(), small_mlp()]
    nets[1][0]._parameters = np.asfortranarray(nets[1][0]._parameters)
    assert nets[1][0]._parameters.flags.f_contiguous
    opts = [nn.Adam(net, nn.MSELoss(), eps=0.01) for net in nets]
    for opt in opts:
        opt._fused_step = lambda bx, by: None
        opt.step(x, y)
    opts[1].net[2]._grad_bias = opts[1].net[2]._grad_bias.astype(np.float32)
    opts[0].net[2]._grad_bias = opts[0].net[2]._grad_bias.astype(np.float32).astype(np.float64)
    for opt in opts:
        opt._step(opt.parameters())
    for (n1, p1, _), (_, p2, _) in zip(
        nets[0].named_parameters(), nets[1].named_parameters(), strict=True
    ):
        # (the F-order weight's products may round their last bit differently)
        np.testing.assert_allclose(p1, p2, rtol=1e-13, atol=1e-15, err_msg=n1)
    assert nets[1][0]._parameters.flags.f_contiguous  # updated in place


def _hyper(rule, **values):
    return {"rule": rule, "lr": 0.1, "mu": 0.9, "wd": 0.0, "b1": 0.9, "b2": 0.99, "eps": 1e-8,
            "t": 1.0, **values}  # fmt: skip


def test_optim_update_refuses_bad_arrays():
    from diy_nn import _core

    p, g, v = np.ones((3, 2)), np.ones((3, 2)), np.zeros((3, 2))
    sgd = _hyper(_core.Rule.Sgd)
    cases = [
        ([[p, g]], ValueError, "Sgd takes 3 arrays a parameter"),
        ([[p, np.ones((2, 3)), v]], ValueError, r"grad must be C-contiguous of shape \(3, 2\), "
         r"got \(2, 3\)"),
        ([[p, np.ones((3, 2), np.float32), v]], TypeError, "grad must have the first parameter's"),
        ([[p, np.asfortranarray(g), v]], ValueError, "grad must be C-contiguous"),
        ([[np.ones((3, 4))[:, ::2], g, v]], ValueError, "param must be C-contiguous"),
        ([[p, g, p]], ValueError, "state buffer must be a writeable array that overlaps"),
        ([[p, "g", v]], TypeError, "grad must be a numpy.ndarray"),
        ([[p, g, v], [np.ones(2, np.float32), np.ones(2, np.float32), np.zeros(2, np.float32)]],
         TypeError, "first parameter's dtype"),
    ]  # fmt: skip
    for slots, error, match in cases:
        before = [a.copy() for slot in slots for a in slot if isinstance(a, np.ndarray)]
        with pytest.raises(error, match=match):
            _core.optim_update(sgd, slots)
        after = [a for slot in slots for a in slot if isinstance(a, np.ndarray)]
        for a, b in zip(before, after, strict=True):
            np.testing.assert_array_equal(a, b)  # nothing written
    readonly = np.ones((3, 2))
    readonly.flags.writeable = False
    with pytest.raises(ValueError, match="param must be a writeable array"):
        _core.optim_update(sgd, [[readonly, g, v]])
    _core.optim_update(sgd, [])  # nothing to do


def test_optim_update_splits_large_steps_across_threads():
    """A step large enough for the threads gives the numbers of one thread."""
    from diy_nn import _core

    rng = np.random.default_rng(3)
    shapes = [(700, 300), (300,), (5, 3), (90_001,)]
    hyper = _hyper(_core.Rule.Adam, wd=0.01)
    results = []
    for threads in (1, 2):
        nn.set_num_threads(threads)
        try:
            slots = [[rng.standard_normal(s) for _ in range(4)] for s in shapes]
            rng = np.random.default_rng(3)
            for slot in slots:
                slot[3] = np.abs(slot[3])  # v >= 0
            _core.optim_update(hyper, slots)
            results.append(slots)
        finally:
            nn.set_num_threads(0)
    for a, b in zip(results[0], results[1], strict=True):
        for x, y in zip(a, b, strict=True):
            np.testing.assert_array_equal(x, y)
