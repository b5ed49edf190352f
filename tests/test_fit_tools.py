"""Issue 14: fit's callbacks, batch_transform, modes, evaluate and predict_proba; issue 12
item 5: the edge cases of fit, train and SGD.update (each a clear error, or Ctrl-C
during validation returning the history)."""

from __future__ import annotations

import os
import signal

import diy_nn as nn
import numpy as np
import pytest
from parity import require_torch


def _blobs(n: int, seed: int):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    return rng.standard_normal((n, 5)) + 3 * np.eye(5)[y], y


def _mlp(seed: int = 0, *extra: nn.Module) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(5, 8, rng=seed), nn.TanH(), *extra, nn.Linear(8, 3, rng=seed + 1)
    )


def _fit(opt, X, y, epochs, *callbacks, **kwargs):
    """``nn.fit`` without a progress bar, with ``callbacks``."""
    return nn.fit(opt, X, y, epochs=epochs, verbose=False, callbacks=list(callbacks), **kwargs)


class Recorder(nn.Callback):
    def __init__(self):
        self.events = []

    def on_train_begin(self, logs):
        self.events.append(("train_begin", dict(logs)))

    def on_epoch_begin(self, epoch, logs):
        self.events.append(("epoch_begin", epoch))

    def on_batch_end(self, batch, logs):
        self.events.append(("batch_end", batch, logs["size"], logs["loss"]))

    def on_epoch_end(self, epoch, logs):
        self.events.append(("epoch_end", epoch, dict(logs)))

    def on_train_end(self, logs):
        self.events.append(("train_end", dict(logs)))


def test_callbacks_see_every_hook_in_order_with_the_epoch_logs():
    X, y = _blobs(50, 0)
    Xv, yv = _blobs(20, 1)
    rec = Recorder()
    opt = nn.Adam(_mlp(), nn.CrossEntropyCriterion(), eps=0.01)
    hist = _fit(opt, X, y, 3, rec, batch_size=16, seed=0, validation_data=(Xv, yv))
    kinds = [e[0] for e in rec.events]
    per_epoch = ["epoch_begin", *["batch_end"] * 4, "epoch_end"]
    assert kinds == ["train_begin", *per_epoch * 3, "train_end"]
    sizes = [e[2] for e in rec.events if e[0] == "batch_end"][:4]
    assert sizes == [16, 16, 16, 2]
    ends = [e for e in rec.events if e[0] == "epoch_end"]
    for epoch, (_, number, logs) in enumerate(ends):
        assert number == epoch
        assert set(logs) == {"loss", "accuracy", "val_loss", "val_accuracy"}
        assert all(logs[k] == hist[k][epoch] for k in logs)
    batch_losses = [e[3] for e in rec.events if e[0] == "batch_end"][:4]
    assert hist["loss"][0] == pytest.approx(np.dot(batch_losses, sizes) / 50, rel=1e-12)
    assert rec.events[-1] == ("train_end", ends[-1][2])


def test_a_callback_stops_training_and_patience_still_works():
    X, y = _blobs(40, 0)
    stopper = nn.LambdaCallback(on_epoch_end=lambda epoch, logs: epoch == 2)
    hist = _fit(nn.SGD(_mlp(), nn.CrossEntropyCriterion(), eps=0.01), X, y, 50, stopper)
    assert len(hist["loss"]) == 3
    # stopping from a batch: the epoch still ends and is recorded
    batch_stop = nn.LambdaCallback(on_batch_end=lambda b, logs: b == 1)
    opt = nn.SGD(_mlp(), nn.CrossEntropyCriterion(), eps=0.01)
    hist = _fit(opt, X, y, 50, batch_stop, batch_size=8)
    assert len(hist["loss"]) == 1
    # EarlyStopping as a callback is what patience= builds
    Xv, yv = _blobs(30, 1)
    runs = []
    for kwargs in ({"patience": 3}, {"callbacks": [nn.EarlyStopping(patience=3)]}):
        net = _mlp(1)
        opt = nn.SGD(net, nn.CrossEntropyCriterion(), eps=5.0)
        h = nn.fit(opt, X, y, epochs=100, seed=0, validation_data=(Xv, yv), verbose=False, **kwargs)
        best = int(np.argmin(h["val_loss"]))
        assert len(h["val_loss"]) == best + 4 < 100
        assert nn.evaluate(net, nn.CrossEntropyCriterion(), Xv, yv)["loss"] == pytest.approx(
            h["val_loss"][best], rel=1e-12
        )
        runs.append(h)
    assert runs[0] == runs[1]
    with pytest.raises(TypeError, match="unknown hook"):
        nn.LambdaCallback(on_step=print)


def test_batch_transform_augments_each_batch():
    X, y = _blobs(32, 0)
    seen = []

    def shift(batch, rng):
        assert isinstance(rng, np.random.Generator)
        seen.append(batch.copy())
        return batch + 100.0

    opt = nn.SGD(_mlp(), nn.CrossEntropyCriterion(), eps=1e-9)
    nn.fit(opt, X, y, epochs=2, batch_size=8, shuffle=False, verbose=False, batch_transform=shift)
    assert len(seen) == 8
    np.testing.assert_array_equal(seen[0], X[:8])  # it got the batch...
    # ...and trained on its own (the steps are tiny: the outputs barely move)
    out = opt.last_output
    np.testing.assert_allclose(out, opt.net.forward(X[24:] + 100.0), rtol=1e-6)
    assert np.abs(out - opt.net.forward(X[24:])).max() > 1e-3
    with pytest.raises(ValueError, match="batch_transform must return the 8 samples"):
        nn.fit(opt, X, y, epochs=1, batch_size=8, verbose=False, batch_transform=lambda b, r: b[:3])
    with pytest.raises(TypeError, match="batch_transform must be callable"):
        nn.fit(opt, X, y, epochs=1, verbose=False, batch_transform=3)


def test_fit_trains_in_train_mode_and_evaluates_in_eval_mode_restoring_the_user_modes():
    X, y = _blobs(40, 0)
    Xv, yv = _blobs(10, 1)
    modes = []

    class Spy(nn.Module):
        _param_names = _grad_names = ()

        def forward(self, X):
            modes.append(self.training)
            return np.array(X, dtype=float)

        def backward_delta(self, input, delta):
            return delta

    spy, drop = Spy(), nn.Dropout(0.5)
    net = _mlp(0, spy, drop)
    net.eval()
    drop.train()  # the user's own mix of modes
    opt = nn.Adam(net, nn.CrossEntropyCriterion())
    nn.fit(opt, X, y, epochs=1, batch_size=20, validation_data=(Xv, yv), verbose=False)
    assert modes == [True, True, False]  # two training steps, one validation pass
    assert [m.training for m in net.modules()] == [False, False, False, False, True, False]
    for call in (
        lambda: nn.evaluate(net, nn.CrossEntropyCriterion(), Xv, yv),
        lambda: nn.predict(net, Xv),
        lambda: nn.predict_proba(net, Xv),
        lambda: nn.score(net, Xv, yv),
    ):
        modes.clear()
        net.train()
        call()
        assert modes == [False]
        assert all(m.training for m in net.modules())
    # Dropout: evaluation gives the same numbers twice
    a = nn.predict_proba(net, Xv)
    np.testing.assert_array_equal(a, nn.predict_proba(net, Xv))


def test_evaluate_and_predict_proba():
    torch = require_torch()
    X, y = _blobs(30, 0)
    net = _mlp(2)
    res = nn.evaluate(net, nn.CrossEntropyCriterion(), X, y, batch_size=7)
    logits = net.forward(X)
    expected = torch.nn.functional.cross_entropy(torch.from_numpy(logits), torch.from_numpy(y))
    assert set(res) == {"loss", "accuracy"}
    assert res["loss"] == pytest.approx(float(expected), rel=1e-12)
    assert res["accuracy"] == nn.score(net, X, y)
    reg = nn.evaluate(net, nn.MSELoss(), X, logits + 1.0)
    assert set(reg) == {"loss"} and reg["loss"] == pytest.approx(3.0)
    proba = nn.predict_proba(net, X, batch_size=4)
    np.testing.assert_allclose(
        proba, torch.softmax(torch.from_numpy(logits), 1).numpy(), rtol=1e-12, atol=1e-15
    )
    soft = nn.Sequential(net, nn.SoftMax())
    np.testing.assert_allclose(nn.predict_proba(soft, X), proba, rtol=1e-12)
    logsoft = nn.Sequential(net, nn.LogSoftMax())
    np.testing.assert_allclose(nn.predict_proba(logsoft, X), proba, rtol=1e-12)
    binary = nn.Sequential(nn.Linear(5, 1, rng=0), nn.Sigmoid())
    p = binary.forward(X)[:, 0]
    np.testing.assert_allclose(nn.predict_proba(binary, X), np.c_[1 - p, p], rtol=1e-15)
    logit = nn.Sequential(nn.Linear(5, 1, rng=0))
    np.testing.assert_allclose(nn.predict_proba(logit, X), np.c_[1 - p, p], rtol=1e-12)


# --- issue 12, item 5 -----------------------------------------------------------------------
def _reg_data(n: int = 16):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, 5))
    return X, X @ rng.standard_normal((5, 3))


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda o, X, Y: nn.fit(o, X[:0], Y[:0]), ValueError, r"X holds no samples.*\(0, 5\)"),
        (lambda o, X, Y: nn.fit(o, X, Y, batch_size=0), ValueError, "batch_size must be .*>= 1"),
        (lambda o, X, Y: nn.fit(o, X, Y, validation_data=X), TypeError, "pair .X_val, Y_val."),
        (
            lambda o, X, Y: nn.fit(o, X, Y, validation_data=(X, Y, Y)),
            TypeError,
            "pair .X_val, Y_val.",
        ),
        (
            lambda o, X, Y: nn.fit(o, X, Y, validation_data=(X, Y[:3])),
            ValueError,
            "validation X and validation Y must have the same length",
        ),
        (
            lambda o, X, Y: nn.fit(o, X, Y, validation_data=(X[:0], Y[:0])),
            ValueError,
            "validation X holds no samples",
        ),
        (lambda o, X, Y: nn.fit(o, np.float64(3.0), Y), ValueError, "X must be an array .* 0-d"),
        (lambda o, X, Y: nn.fit(o, X, np.array(1.0)), ValueError, "Y must be an array .* 0-d"),
        (lambda o, X, Y: nn.fit(o, X, Y, patience=0), ValueError, "fit: patience"),
        (lambda o, X, Y: nn.fit("sgd", X, Y), TypeError, "diy_nn Optimizer"),
        (lambda o, X, Y: nn.train(o, X, Y, 0, 3), ValueError, "train: batch_size"),
        (lambda o, X, Y: nn.train(o, X, Y, 4, -1), ValueError, "number of epochs"),
        (lambda o, X, Y: nn.train(o, X[:0], Y[:0], 4, 1), ValueError, "X holds no samples"),
        (lambda o, X, Y: nn.evaluate(o.net, o.loss, X[:0], Y[:0]), ValueError, "no samples"),
        (lambda o, X, Y: nn.predict(o.net, np.float64(1.0)), ValueError, "0-d"),
        (lambda o, X, Y: nn.score(o.net, X, Y, batch_size=0), ValueError, "batch_size"),
    ],
)
def test_fit_edge_cases_raise_clear_errors(call, error, match):
    X, Y = _reg_data()
    opt = nn.SGD(_mlp(), nn.MSELoss(), eps=0.01)
    before = [p.copy() for _, p, _ in opt.net.named_parameters()]
    with pytest.raises(error, match=match):
        call(opt, X, Y)
    for (_, p, _), b in zip(opt.net.named_parameters(), before, strict=True):
        np.testing.assert_array_equal(p, b)  # refused before any step


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"batch_size": -3}, ValueError, "SGD: batch_size must be an integer >= 1, got -3"),
        ({"batch_size": 0}, ValueError, "SGD: batch_size must be an integer >= 1, got 0"),
        ({"maxIter": -1}, ValueError, r"SGD: maxIter \(n_iter\).* >= 1, got -1"),
        ({"n_iter": 0}, ValueError, r"SGD: maxIter \(n_iter\)"),
        ({"batch_size": 2.5}, TypeError, "SGD: batch_size"),
    ],
)
def test_sgd_report_form_checks_its_loop(kwargs, error, match):
    X, Y = _reg_data()
    with pytest.raises(error, match=match):
        nn.SGD(_mlp(), nn.MSELoss(), X, Y, eps=0.01, **kwargs)
    with pytest.raises(ValueError, match="X holds no samples"):
        nn.SGD(_mlp(), nn.MSELoss(), X[:0], Y[:0], eps=0.01)
    with pytest.raises(ValueError, match="same length"):
        nn.SGD(_mlp(), nn.MSELoss(), X, Y[:3], eps=0.01)
    sgd = nn.SGD(_mlp(), nn.MSELoss(), X, Y, batch_size=4, maxIter=2, eps=0.01)
    sgd.batch_size = -3  # changed after construction: update() checks again
    with pytest.raises(ValueError, match="train: batch_size"):
        sgd.update()


class _SigintInEval(nn.Module):
    """Sends the process a real SIGINT from inside the validation pass (eval mode)."""

    _param_names = _grad_names = ()

    def __init__(self, at_validation: int):
        super().__init__()
        self.at, self.validations = at_validation, 0

    def forward(self, X):
        if not self.training:
            self.validations += 1
            if self.validations == self.at:
                os.kill(os.getpid(), signal.SIGINT)
        return np.array(X, dtype=float)

    def backward_delta(self, input, delta):
        return delta


@pytest.fixture
def python_sigint():
    """Python's own SIGINT handler during the test, then the one before: a shell that
    starts the tests in the background has SIGINT ignored, and a real Ctrl-C would be lost."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_ctrl_c_during_validation_returns_the_history_so_far(python_sigint):
    X, y = _blobs(64, 0)
    Xv, yv = _blobs(3000, 1)  # several validation batches: the signal lands in the middle
    spy = _SigintInEval(at_validation=3 * 3 + 2)  # epoch 4's validation, second batch of 3
    net = _mlp(0, spy)
    opt = nn.Adam(net, nn.CrossEntropyCriterion(), eps=0.01)
    snapshots = []
    keep = nn.LambdaCallback(
        on_epoch_end=lambda e, logs: snapshots.append(
            [p.copy() for _, p, _ in net.named_parameters()]
        )
    )
    net.eval()
    hist = _fit(opt, X, y, 10, keep, batch_size=16, seed=0, validation_data=(Xv, yv))
    assert spy.validations == 11  # the interrupt stopped the pass where it landed
    assert all(len(v) == 3 for v in hist.values())  # the complete epochs only
    for (_, p, _), saved in zip(net.named_parameters(), snapshots[-1], strict=True):
        np.testing.assert_array_equal(p, saved)  # the parameters after epoch 3
    assert not any(m.training for m in net.modules())  # the user's mode is back

    # and a Ctrl-C in a callback (after the epoch is recorded) stops training too
    def interrupt(epoch, logs):
        if epoch == 1:
            os.kill(os.getpid(), signal.SIGINT)

    opt = nn.SGD(_mlp(), nn.CrossEntropyCriterion(), eps=0.01)
    hist = _fit(opt, X, y, 10, nn.LambdaCallback(on_epoch_end=interrupt))
    assert len(hist["loss"]) == 2
