"""8. Conv1D: the course CNN on USPS as 256-long signals, and iris; 9. Conv2D on USPS 16x16."""

from __future__ import annotations

import numpy as np

from .. import plotting
from ..activation import ReLU, SoftMax
from ..container import Sequential
from ..conv import Conv1D, Conv2D
from ..data import load_iris, train_test_split
from ..linear import Linear
from ..loss import CELogSoftMax, CrossEntropyLoss
from ..optim import Adam
from ..pooling import MaxPool1D, MaxPool2D
from ..reshape import Flatten
from . import Context, Metric, Result, register
from ._common import fit, predict
from .usps_mlp import classify_usps


def _iris(ctx: Context) -> tuple[list[Metric], list]:
    X, y = load_iris()
    tr, te = train_test_split(len(X), 0.3, seed=ctx.seed, stratify=y)

    def prep(a: np.ndarray) -> np.ndarray:
        # raw centimetres, as the report: after Conv1D(k=2) and MaxPool1D(2, 2) each channel
        # is max(w.(x0, x1), w.(x1, x2)); standardised features make that max mix them
        # badly (about 0.85 accuracy), raw ones keep petal length > sepal width readable
        return a[:, :, None]  # (N, 4 features, 1 channel)

    g = ctx.rng(800)
    net = Sequential(
        Conv1D(2, 1, 16, rng=g), MaxPool1D(2, 2), Flatten(), Linear(16, 3, rng=g), SoftMax()
    )
    opt = Adam(net, CrossEntropyLoss(), eps=1e-2)
    hist = fit(ctx, opt, prep(X[tr]), y[tr], ctx.budget(200, 5), 20, "iris Conv1D", 8)
    pred = predict(net, prep(X[te])).argmax(axis=1)
    acc = float(np.mean(pred == y[te]))
    figs = [
        plotting.plot_confusion_matrix(
            plotting.confusion_matrix(y[te], pred, 3),
            ctx.figure("iris_confusion.png"),
            ["setosa", "versicolor", "virginica"],
            title=f"iris Conv1D, test accuracy {acc:.3f} ({len(te)} flowers)",
        ),
        plotting.plot_curves({"train cross-entropy": hist}, ctx.figure("iris_loss.png")),
    ]
    metric = Metric("iris test accuracy", acc, 0.98, 0.95, ">=", f"{len(te)} held-out flowers")
    return [metric], figs


@register("conv1d", 8, "Conv1D: course CNN on USPS as 256-long signals; iris", needs=("usps",))
def run_conv1d(ctx: Context) -> Result:
    iris_metrics, iris_figs = _iris(ctx)  # needs no data files
    g = ctx.rng(801)
    net = Sequential(
        Conv1D(3, 1, 32, rng=g),
        MaxPool1D(2, 2),
        Flatten(),
        Linear(4064, 100, rng=g),
        ReLU(),
        Linear(100, 10, rng=g),
    )
    res = classify_usps(
        ctx,
        net,
        CELogSoftMax(),
        lambda a: (2 * a - 1)[:, :, None],
        20,
        64,
        1e-3,
        "course Conv1D CNN",
        augment=True,
    )
    res.metrics[0].name = "USPS test accuracy"
    res.metrics[0].target, res.metrics[0].goal = 0.95, ">="
    res.metrics[1].name = "USPS train accuracy"
    res.metrics = iris_metrics + res.metrics
    res.figures = iris_figs + res.figures
    res.notes = (
        "USPS: "
        + res.notes
        + "; pixels centred to [-1, 1]; iris: stratified 70/30 split, raw features"
    )
    return res


@register(
    "conv2d",
    9,
    "Conv2D(3,1,32)-MaxPool2D-Linear(1568,100)-ReLU-Linear(100,10) on USPS",
    needs=("usps",),
)
def run_conv2d(ctx: Context) -> Result:
    g = ctx.rng(900)
    net = Sequential(
        Conv2D(3, 1, 32, rng=g),
        MaxPool2D(2, 2),
        Flatten(),
        Linear(1568, 100, rng=g),
        ReLU(),
        Linear(100, 10, rng=g),
        SoftMax(),
    )
    res = classify_usps(
        ctx,
        net,
        CrossEntropyLoss(),
        lambda a: (2 * a - 1).reshape(-1, 16, 16, 1),
        20,
        64,
        1e-3,
        "Conv2D CNN",
        augment=True,
    )
    res.metrics[0].target, res.metrics[0].goal = 0.96, ">="
    res.notes += "; pixels centred to [-1, 1]"
    return res
