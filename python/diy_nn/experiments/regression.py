"""1. Linear regression: ``Linear(1, 1)`` + MSE finds scikit-learn's least-squares line."""

from __future__ import annotations

import numpy as np

from .. import plotting
from ..linear import Linear
from ..loss import MSELoss
from ..optim import SGD
from ..training import LambdaCallback, fit
from . import Context, Metric, Result, register


@register("regression", 1, "Linear(1,1) + MSE vs scikit-learn LinearRegression")
def run(ctx: Context) -> Result:
    from sklearn.datasets import make_regression
    from sklearn.linear_model import LinearRegression

    x, y = make_regression(n_samples=100, n_features=1, noise=30, random_state=ctx.seed)
    Y = y.reshape(-1, 1)
    ref = LinearRegression().fit(x, y)
    ref_slope, ref_intercept = float(ref.coef_[0]), float(ref.intercept_)

    net = Linear(1, 1, rng=ctx.rng(1))
    # Full-batch gradient descent on the summed squared error. Its Hessian is
    # 2 [x 1]^T [x 1]; a step of 1 / lambda_max converges geometrically.
    A = np.c_[x, np.ones(len(x))]
    step = 1.0 / np.linalg.eigvalsh(2 * A.T @ A).max()
    opt = SGD(net, MSELoss(), eps=step)
    losses: list[float] = []

    def converged(epoch: int, logs: dict[str, float]) -> bool:
        losses.append(logs["loss"])
        return len(losses) > 1 and abs(losses[-2] - losses[-1]) <= 1e-15 * losses[-1]

    # one full batch per epoch, in order: each epoch is one gradient step
    fit(
        opt,
        x,
        Y,
        ctx.budget(2000, 2000),
        len(x),
        shuffle=False,
        verbose=ctx.progress,
        desc="regression",
        callbacks=[LambdaCallback(on_epoch_end=converged)],
    )
    slope, intercept = float(net._parameters[0, 0]), float(net._bias[0])
    rel_slope = abs(slope - ref_slope) / abs(ref_slope)
    rel_intercept = abs(intercept - ref_intercept) / max(abs(ref_intercept), 1e-12)

    figs = [
        plotting.plot_regression(
            x.ravel(),
            y,
            {
                f"diy_nn: {slope:.3f} x + {intercept:.3f}": (slope, intercept),
                f"sklearn: {ref_slope:.3f} x + {ref_intercept:.3f}": (ref_slope, ref_intercept),
            },
            ctx.figure("regression.png"),
            title="make_regression(100, 1, noise=30): Linear(1,1)+MSE vs LinearRegression",
        ),
        plotting.plot_curves(
            {"train MSE": losses},
            ctx.figure("loss.png"),
            xlabel="step",
            logy=True,
            title="full-batch gradient descent",
        ),
    ]
    return Result(
        metrics=[
            Metric("slope rel. error vs sklearn", rel_slope, "same line", 1e-3, "<="),
            Metric("intercept rel. error vs sklearn", rel_intercept, "same line", 1e-3, "<="),
            Metric("slope", slope, note=f"sklearn {ref_slope:.4f}"),
        ],
        figures=figs,
        notes=f"{len(losses)} full-batch steps of size {step:.3g}",
    )
