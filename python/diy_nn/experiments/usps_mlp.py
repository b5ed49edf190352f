"""3. USPS digits with the report's MLP 256-128-64-10 (TanH, SoftMax) and cross-entropy."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from sklearn.metrics import confusion_matrix

from .. import plotting
from ..activation import SoftMax, TanH
from ..loss import CrossEntropyLoss, Loss
from ..module import Module
from ..optim import Adam
from ..training import fit, predict, score
from . import Context, Metric, Result, register
from ._common import decay_for_last_quarter, fit_options, mlp, shift_images, subsample, usps


def accuracy(net: Module, X: np.ndarray, y: np.ndarray) -> float:
    return score(net, X, y, batch_size=2048)


def classify_usps(
    ctx: Context,
    net: Module,
    loss: Loss,
    prep: Callable[[np.ndarray], np.ndarray],
    label: str,
    augment: bool = False,
) -> Result:
    """Trains ``net`` on USPS train (``prep`` maps pixels to the net's input), scores on test.

    Writes the loss curves (train, and test for the picture only) and the confusion matrix.
    """
    Xtr, ytr = usps(ctx, "train")
    Xte, yte = usps(ctx, "test")
    if ctx.quick:
        Xtr, ytr = Xtr[(k := subsample(ctx, len(Xtr), 600))], ytr[k]
        Xte, yte = Xte[(k := subsample(ctx, len(Xte), 300, 1))], yte[k]
    Xtr, Xte = prep(Xtr), prep(Xte)
    lr, batch = float(ctx.setting("lr")), int(ctx.setting("batch_size"))
    opt = Adam(net, loss, eps=lr)
    n_epochs = ctx.budget_setting("epochs", 2)
    # the test split as validation data only draws its loss curve: nothing monitors it
    hist = fit(
        opt,
        Xtr,
        ytr,
        n_epochs,
        batch,
        validation_data=(Xte, yte),
        callbacks=decay_for_last_quarter(opt, n_epochs),
        batch_transform=shift_images if augment else None,
        **fit_options(ctx, label),
    )
    acc, acc_tr = accuracy(net, Xte, yte), accuracy(net, Xtr, ytr)
    cm = confusion_matrix(yte, predict(net, Xte, batch_size=2048), labels=np.arange(10))
    figs = [
        plotting.plot_confusion_matrix(
            cm, ctx.figure("confusion.png"), title=f"{label}: USPS test accuracy {acc:.4f}"
        ),
        plotting.plot_curves(
            {
                "train (mean over the epoch)": hist["loss"],
                "test (after the epoch)": hist["val_loss"],
            },
            ctx.figure("loss.png"),
            ylabel="cross-entropy",
            title=f"{label} on USPS (Adam lr {lr}, batch {batch})",
        ),
    ]
    return Result(
        [Metric("test accuracy", acc), Metric("train accuracy", acc_tr)],
        figs,
        f"Adam lr {lr} (10x smaller for the last quarter), batch {batch}, "
        f"{len(hist['loss'])} epochs "
        f"on the 7291 training digits{', randomly shifted by up to 1 pixel' if augment else ''}, "
        "scored once on the 2007 test digits (the test loss is drawn, never used to choose)",
    )


@register("usps_mlp", 3, "USPS MLP 256-128-64-10 TanH + SoftMax, cross-entropy", needs=("usps",))
def run(ctx: Context) -> Result:
    g = ctx.rng(300)
    net = mlp([256, 128, 64, 10], [TanH, TanH, SoftMax], g)
    res = classify_usps(ctx, net, CrossEntropyLoss(), lambda a: a, "MLP")
    res.metrics[0].report, res.metrics[0].target, res.metrics[0].goal = 0.82, 0.92, ">="
    res.metrics[0].note = "report: on training data"
    return res
