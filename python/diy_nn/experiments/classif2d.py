"""2. Binary classification on the course's 2-D generator (types 0, 1, 2), report's models."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from .. import plotting
from ..activation import Sigmoid, TanH
from ..data import gen_arti
from ..loss import MSELoss
from ..module import Module
from ..optim import SGD, Adam
from ..training import fit
from . import Context, Metric, Result, register
from ._common import decay_for_last_quarter, fit_options, mlp


@dataclass
class Case:
    name: str
    data_type: int
    sizes: list[int]  # widths of the Linear layers, input first (``mlp``)
    activations: list[type[Module] | None]  # after each Linear; None: no activation
    out: str  # "sigmoid": targets {0, 1}; "tanh"/"linear": targets {-1, +1}
    epochs: int
    quick_epochs: int
    batch: int
    eps: float
    nbex: int = 1000
    sigma: float = 0.1
    adam: bool = False  # Adam with a 10x smaller step for the last quarter, else plain SGD


# the figures' titles, by case
_TITLES = {
    "gauss_2hidden": "Linear(2,2)-TanH-Linear(2,1)-Sigmoid",
    "gauss": "Linear(2,4)-TanH-Linear(4,1)-Sigmoid, 100 it.",
    "xor": "XOR: Linear(2,4)-TanH-Linear(4,1)-Sigmoid, 500 it.",
    "xor_deep": "XOR: 2-4-4-1 (TanH, Sigmoid, TanH), 200 it.",
    "checkerboard": "checkerboard: 2-128-64-1 (TanH, Sigmoid), Adam",
}


def _cases() -> list[Case]:
    ts: list[type[Module] | None] = [TanH, Sigmoid]  # the one-hidden-layer nets
    return [
        Case("gauss_2hidden", 0, [2, 2, 1], ts, "sigmoid", 100, 10, 10, 0.05),
        Case("gauss", 0, [2, 4, 1], ts, "sigmoid", 100, 10, 10, 0.05),
        Case("xor", 1, [2, 4, 1], ts, "sigmoid", 500, 20, 10, 0.05),
        Case("xor_deep", 1, [2, 4, 4, 1], [TanH, Sigmoid, TanH], "tanh", 200, 20, 10, 0.02),
        Case(
            "checkerboard",
            2,
            [2, 128, 64, 1],
            [TanH, Sigmoid, None],
            "linear",
            300,
            15,
            32,
            3e-3,
            nbex=4000,
            adam=True,
        ),
    ]


def _targets(y: np.ndarray, out: str) -> np.ndarray:
    return ((y + 1) / 2 if out == "sigmoid" else y).reshape(-1, 1)


def _scores(net: Module, X: np.ndarray, out: str = "linear") -> np.ndarray:
    s = net.forward(X).ravel()
    return s - 0.5 if out == "sigmoid" else s


@register("gen2d", 2, "2-D generator types 0/1/2: decision boundaries, held-out accuracy")
def run(ctx: Context) -> Result:
    result = Result()
    for i, case in enumerate(_cases()):
        Xtr, ytr = gen_arti(1, case.sigma, case.nbex, case.data_type, rng=ctx.rng(10 + i))
        Xte, yte = gen_arti(1, case.sigma, case.nbex, case.data_type, rng=ctx.rng(50 + i))
        net = mlp(case.sizes, case.activations, ctx.rng(100 + i))
        opt = (Adam if case.adam else SGD)(net, MSELoss(), eps=case.eps)
        epochs = ctx.budget(case.epochs, case.quick_epochs)
        fit(
            opt,
            Xtr,
            _targets(ytr, case.out),
            epochs,
            case.batch,
            callbacks=decay_for_last_quarter(opt, epochs) if case.adam else [],
            **fit_options(ctx, case.name, i),
        )
        net.eval()
        acc_tr = float(np.mean(np.sign(_scores(net, Xtr, case.out)) == ytr))
        acc = float(np.mean(np.sign(_scores(net, Xte, case.out)) == yte))
        result.figures.append(
            plotting.plot_decision_boundary(
                functools.partial(_scores, net, out=case.out),
                Xte,
                yte,
                ctx.figure(f"{case.name}.png"),
                title=f"{_TITLES[case.name]}\nheld-out accuracy {acc:.3f} (train {acc_tr:.3f})",
            )
        )
        result.metrics.append(
            Metric(
                f"{case.name} (type {case.data_type}) test accuracy",
                acc,
                "separates" if case.data_type < 2 else "reasonable",
            )
        )
    result.notes = (
        "train and test sets are two independent draws of gen_arti (seeded); plain SGD on MSE "
        "for types 0 and 1, Adam for the checkerboard (4000 points)"
    )
    return result
