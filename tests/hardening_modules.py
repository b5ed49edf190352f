"""The hardening suite's specs of the public modules and losses (``diy_nn.__all__``): a
small valid call each, and the cases generated from it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import diy_nn as nn
import numpy as np
from diy_nn import _core
from hardening_core import (
    LAYOUTS,
    Case,
    RefError,
    cast,
    fmt_shape,
    with_nonfinite,
)

# --- module and loss specs --------------------------------------------------------------


@dataclass
class ModuleSpec:
    """A public module: how to build it, a valid input, and its constructor's int params.

    ``elementwise``: the numpy function it computes on any shape (activations).
    ``ctor``: ``(keyword, valid kwargs)`` of the integer constructor arguments.
    """

    cls: type
    make: Callable[[type], Any]
    input_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    elementwise: Callable[[np.ndarray], np.ndarray] | None = None
    ctor: Callable[..., Any] | None = None
    ctor_ints: dict[str, int] = field(default_factory=dict)
    needs: tuple[str, ...] = ()


def _sig(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        return 1 / (1 + np.exp(-x))


# Pooling layers: (class, k_size, stride, input shape, output shape, kernel needed).
_POOL_TABLE = [
    (nn.MaxPool1D, 2, 2, (2, 7, 3), (2, 3, 3), "max_pool1d"),
    (nn.AvgPool1D, 3, 1, (2, 7, 3), (2, 5, 3), "avg_pool1d"),
    (nn.MaxPool2D, 2, 2, (2, 6, 5, 3), (2, 3, 2, 3), "max_pool2d"),
    (nn.AvgPool2D, 2, 1, (2, 6, 5, 3), (2, 5, 4, 3), "avg_pool2d"),
]


def _pool_spec(
    cls: type, k: int, stride: int, shape: tuple[int, ...], out: tuple[int, ...], need: str
) -> ModuleSpec:
    return ModuleSpec(
        cls,
        lambda dt: cls(k, stride),
        shape,
        out,
        ctor=cls,
        ctor_ints={"k_size": k, "stride": stride},
        needs=(need,),
    )


_POOL_SPECS = [_pool_spec(*row) for row in _POOL_TABLE]


def _module_specs() -> list[ModuleSpec]:
    return [
        ModuleSpec(
            nn.Linear,
            lambda dt: nn.Linear(4, 3, dtype=dt, rng=0),
            (5, 4),
            (5, 3),
            ctor=nn.Linear,
            ctor_ints={"input": 4, "output": 3},
        ),
        ModuleSpec(nn.TanH, lambda dt: nn.TanH(), (3, 4), (3, 4), elementwise=np.tanh),
        ModuleSpec(nn.Sigmoid, lambda dt: nn.Sigmoid(), (3, 4), (3, 4), elementwise=_sig),
        ModuleSpec(
            nn.ReLU, lambda dt: nn.ReLU(), (3, 4), (3, 4), elementwise=lambda x: np.maximum(x, 0)
        ),
        ModuleSpec(
            nn.Threshold,
            lambda dt: nn.Threshold(0.1, -2.0),
            (3, 4),
            (3, 4),
            elementwise=lambda x: np.where(x > 0.1, x, -2.0),
        ),
        ModuleSpec(
            nn.LeakyReLU,
            lambda dt: nn.LeakyReLU(0.1),
            (3, 4),
            (3, 4),
            elementwise=lambda x: np.where(x > 0, x, 0.1 * x),
        ),
        ModuleSpec(
            nn.Softplus,
            lambda dt: nn.Softplus(),
            (3, 4),
            (3, 4),
            elementwise=lambda x: np.where(x > 20, x, np.logaddexp(0, np.minimum(x, 20))),
        ),
        ModuleSpec(
            nn.Dropout,  # seeded: the mask of default_rng(0), entries kept scaled by 1/(1-p)
            lambda dt: nn.Dropout(0.5, rng=0),
            (3, 4),
            (3, 4),
            elementwise=lambda x: x * (np.random.default_rng(0).random(np.shape(x)) >= 0.5) * 2.0,
        ),
        ModuleSpec(
            nn.BatchNorm1D,
            lambda dt: nn.BatchNorm1D(4, dtype=dt),
            (5, 4),
            (5, 4),
            ctor=nn.BatchNorm1D,
            ctor_ints={"num_features": 4},
        ),
        ModuleSpec(nn.SoftMax, lambda dt: nn.SoftMax(), (3, 4), (3, 4), needs=("softmax",)),
        ModuleSpec(
            nn.LogSoftMax, lambda dt: nn.LogSoftMax(), (3, 4), (3, 4), needs=("log_softmax",)
        ),
        ModuleSpec(nn.Flatten, lambda dt: nn.Flatten(), (3, 2, 4), (3, 8)),
        ModuleSpec(
            nn.Conv1D,
            lambda dt: nn.Conv1D(3, 2, 4, stride=2, dtype=dt, rng=0),
            (2, 9, 2),
            (2, 4, 4),
            ctor=nn.Conv1D,
            ctor_ints={"k_size": 3, "chan_in": 2, "chan_out": 4, "stride": 2},
            needs=("conv1d",),
        ),
        ModuleSpec(
            nn.Conv2D,
            lambda dt: nn.Conv2D(3, 2, 4, stride=1, dtype=dt, rng=0),
            (2, 6, 5, 2),
            (2, 4, 3, 4),
            ctor=nn.Conv2D,
            ctor_ints={"k_size": 3, "chan_in": 2, "chan_out": 4, "stride": 1},
            needs=("conv2d",),
        ),
        *_POOL_SPECS,
        ModuleSpec(
            nn.Sequential,
            lambda dt: nn.Sequential(
                nn.Linear(4, 3, dtype=dt, rng=1), nn.TanH(), nn.Linear(3, 2, dtype=dt, rng=2)
            ),
            (5, 4),
            (5, 2),
        ),
        ModuleSpec(
            nn.AutoEncoder,
            lambda dt: nn.AutoEncoder(
                nn.Sequential(nn.Linear(4, 2, dtype=dt, rng=3), nn.TanH()),
                nn.Sequential(nn.Linear(2, 4, dtype=dt, rng=4), nn.Sigmoid()),
            ),
            (5, 4),
            (5, 4),
        ),
    ]


MODULE_SPECS = _module_specs()


def _grads(m: Any) -> list[np.ndarray]:
    return [g.copy() for _, _, g in m.named_parameters()]


def module_run(spec: ModuleSpec, x: Any, delta: Any, dt: type = np.float64) -> tuple[Any, ...]:
    """forward, backward_delta, and the gradients of backward_update_gradient, on a fresh module."""
    m = spec.make(dt)
    y = m.forward(x)
    d = delta if delta is not None else np.ones_like(y)
    dx = m.backward_delta(x, d)
    m.zero_grad()
    m.backward_update_gradient(x, d)
    return (y, dx, *_grads(m))


def module_cases(spec: ModuleSpec) -> list[Case]:
    cases: list[Case] = []
    name = spec.cls.__name__
    rng = np.random.default_rng(len(name))
    x0 = rng.standard_normal(spec.input_shape)
    d0 = rng.standard_normal(spec.out_shape)
    needs = spec.needs

    def add(label: str, call: Callable[[], Any], ref: Callable[[], Any], **opts: Any) -> None:
        cases.append(Case(f"{name}[{label}]", call, ref, needs=needs, **opts))

    def run(x: Any, d: Any, dt: type = np.float64) -> Callable[[], Any]:
        return lambda: module_run(spec, x, d, dt)

    def refuse(why: str) -> Callable[[], Any]:
        def ref() -> Any:
            raise RefError(why)

        return ref

    for dt in (np.float64, np.float32):
        add(f"valid {np.dtype(dt).name}", run(x0.astype(dt), d0, dt), run(x0.astype(dt), d0, dt))
    for lname, fn in LAYOUTS.items():
        add(f"input {lname}", run(fn(x0), d0), run(x0, d0))
        add(f"delta {lname}", run(x0, fn(d0)), run(x0, d0))
    for bad in ("int64", "int32", "uint8", "bool", "float16"):
        xi = cast(x0 * 3, bad)
        add(f"input {bad}", run(xi, d0), run(xi.astype(np.float64), d0))
    add("input list", run(x0.tolist(), d0), run(x0, d0))
    for bad in ("complex128", "object"):
        add(
            f"input {bad}",
            run(cast(x0, bad), d0),
            refuse(bad),
            names=("input",),
            actual=(bad, "O"),
        )
    add(
        "input str",
        run(x0.astype(str), d0),
        refuse("str"),
        names=("input",),
        actual=("<U",),
    )
    for bad in ("complex128", "object"):
        add(
            f"delta {bad}",
            run(x0, cast(d0, bad)),
            refuse(bad),
            names=("delta",),
            actual=(bad, "O"),
        )
    for axis in range(d0.ndim):
        shape = list(d0.shape)
        shape[axis] += 1
        add(
            f"delta axis {axis} +1",
            run(x0, np.ones(shape)),
            refuse("delta"),
            names=("delta",),
            actual=(fmt_shape(tuple(shape)),),
        )
    add(
        "delta extra axis",
        run(x0, d0[None]),
        refuse("delta"),
        names=("delta",),
        actual=(fmt_shape((1, *d0.shape)),),
    )
    if spec.elementwise is None:
        for label, xb in (("extra axis", x0[None]), ("missing axis", x0[0])):
            if name == "Flatten" or (name == "BatchNorm1D" and label == "extra axis"):
                continue  # BatchNorm1D takes (N, C) and (N, L, C)
            add(
                f"input {label}",
                run(xb, None),
                refuse(label),
                names=("input",),
                actual=(fmt_shape(xb.shape),),
            )
        for axis in range(1, x0.ndim):
            shape = list(x0.shape)
            shape[axis] += 1
            xb = rng.standard_normal(shape)
            if name in ("Flatten", "SoftMax", "LogSoftMax") or "Pool" in name:
                continue  # any spatial size / channel count is valid
            if name.startswith("Conv") and axis < x0.ndim - 1:
                continue
            add(
                f"input axis {axis} +1",
                run(xb, None),
                refuse("features"),
                names=("input",),
                actual=(fmt_shape(tuple(shape)),),
            )
    else:
        fn = spec.elementwise
        for shape in ((), (7,), (2, 3, 4, 5)):
            xe = rng.standard_normal(shape)
            add(
                f"any shape {shape}",
                # Arrays on both sides, shape () too (numpy gives scalars there,
                # which `same` would compare bit for bit): the float64 tolerance.
                lambda xe=xe: np.asarray(spec.make(np.float64).forward(xe)),
                lambda xe=xe: np.asarray(fn(xe)),
            )
    # zero sizes: a result with no elements (gradients untouched) or a clear error
    for axis in range(x0.ndim):
        shape = list(x0.shape)
        shape[axis] = 0
        xz = np.zeros(shape)

        def zero_call(xz: np.ndarray = xz) -> Any:
            m = spec.make(np.float64)
            y = m.forward(xz)
            dx = m.backward_delta(xz, np.zeros_like(y))
            m.zero_grad()
            m.backward_update_gradient(xz, np.zeros_like(y))
            ok = y.size == 0 and dx.shape == xz.shape
            return ok and all(not g.any() for g in _grads(m))

        add(
            f"input axis {axis} =0",
            zero_call,
            lambda: True,
            error_ok=True,
            names=("input", "delta"),
            actual=(fmt_shape(tuple(shape)), "0"),
        )
    # NaN and inf: propagate or error, never crash
    xn = with_nonfinite(x0)

    def nan_call(xn: np.ndarray = xn) -> Any:
        y, dx, *_ = module_run(spec, xn, d0)
        return y.shape, dx.shape

    add("input nan/inf", nan_call, lambda: (spec.out_shape, x0.shape), loose=True)
    # constructor: every int argument, refused when out of range or not an int
    if spec.ctor is not None:
        for p, valid in spec.ctor_ints.items():
            for bad in (0, -1, 2**62, 2**64, 1.5, "3", None, True):
                kw = {**spec.ctor_ints, p: bad}
                if p == "stride" and bad is None:
                    continue  # pools: stride=None means stride=k_size
                add(
                    f"{p}={bad!r}",
                    lambda kw=kw: _build_and_forward(spec, kw, x0),
                    _ctor_ref(kw, p, x0, spec),
                    names=(p,),
                    actual=(repr(bad), str(bad)),
                )
            del valid
    return cases


def _build_and_forward(spec: ModuleSpec, kw: dict[str, Any], x: np.ndarray) -> Any:
    assert spec.ctor is not None
    m = spec.ctor(**kw)
    return m.forward(x).shape


def _ctor_ref(kw: dict[str, Any], p: str, x: np.ndarray, spec: ModuleSpec) -> Callable[[], Any]:
    def ref() -> Any:
        v = kw[p]
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise RefError(f"{p} must be an int >= 1")
        if v >= 2**31:
            raise RefError(f"{p} too large")
        return _build_and_forward(spec, kw, x)

    return ref


def _has(needs: tuple[str, ...]) -> bool:
    return all(hasattr(_core, n) for n in needs)


@dataclass
class LossSpec:
    """A public loss and a valid ``(y, yhat)`` pair (``y`` as the loss expects it)."""

    cls: type
    make: Callable[[], Any]
    y: Callable[[np.random.Generator], np.ndarray]
    yhat: Callable[[np.random.Generator], np.ndarray]
    needs: tuple[str, ...] = ()


def _probs(rng: np.random.Generator) -> np.ndarray:
    p = rng.uniform(0.05, 1, (4, 3))
    return p / p.sum(axis=1, keepdims=True)


def _labels(rng: np.random.Generator) -> np.ndarray:
    return np.array([0, 2, 1, 2])


def _loss_specs() -> list[LossSpec]:
    def real(rng: np.random.Generator) -> np.ndarray:
        return rng.standard_normal((4, 3))

    def unit(rng: np.random.Generator) -> np.ndarray:
        return rng.uniform(0.05, 0.95, (4, 3))

    def onehot(rng: np.random.Generator) -> np.ndarray:
        return np.eye(3)[_labels(rng)]

    return [
        LossSpec(nn.MSELoss, nn.MSELoss, real, real),
        LossSpec(nn.MAELoss, nn.MAELoss, real, real),
        LossSpec(nn.BCELoss, nn.BCELoss, lambda r: (unit(r) > 0.5).astype(float), unit),
        LossSpec(nn.CrossEntropyLoss, nn.CrossEntropyLoss, onehot, _probs),
        LossSpec(nn.NLLLoss, nn.NLLLoss, _labels, lambda r: np.log(_probs(r))),
        LossSpec(nn.CELogSoftMax, nn.CELogSoftMax, _labels, real, needs=("cross_entropy",)),
        LossSpec(
            nn.CrossEntropyCriterion, nn.CrossEntropyCriterion, onehot, real, needs=("log_softmax",)
        ),
        LossSpec(nn.HingeLoss, nn.HingeLoss, _labels, real),
    ]


LOSS_SPECS = _loss_specs()


def loss_cases(spec: LossSpec) -> list[Case]:
    cases: list[Case] = []
    name = spec.cls.__name__
    rng = np.random.default_rng(len(name) + 100)
    y0, yh0 = spec.y(rng), spec.yhat(rng)

    def add(label: str, call: Callable[[], Any], ref: Callable[[], Any], **opts: Any) -> None:
        cases.append(Case(f"{name}[{label}]", call, ref, needs=spec.needs, **opts))

    def run(y: Any, yh: Any) -> Callable[[], Any]:
        def call() -> Any:
            loss = spec.make()
            return loss.forward(y, yh), loss.backward(y, yh)

        return call

    def refuse() -> Any:
        raise RefError("bad")

    add("valid", run(y0, yh0), run(y0, yh0))
    add("valid float32", run(y0, yh0.astype(np.float32)), run(y0, yh0.astype(np.float32)))
    for lname, fn in LAYOUTS.items():
        add(f"yhat {lname}", run(y0, fn(yh0)), run(y0, yh0))
        add(f"y {lname}", run(fn(y0), yh0), run(y0, yh0))
    add("lists", run(y0.tolist(), yh0.tolist()), run(y0, yh0))
    for bad in ("complex128", "object"):
        add(f"yhat {bad}", run(y0, cast(yh0, bad)), refuse, names=("yhat",), actual=(bad, "O"))
        if y0.dtype.kind == "f":
            add(f"y {bad}", run(cast(y0, bad), yh0), refuse, names=("y",), actual=(bad, "O"))
    add("yhat str", run(y0, yh0.astype(str)), refuse, names=("yhat",), actual=("<U",))
    for label, yh in (("extra axis", yh0[None]), ("missing axis", yh0[0]), ("0-d", yh0[0, 0])):
        shape = np.shape(yh)
        add(
            f"yhat {label}",
            run(y0, yh),
            refuse,
            names=("yhat", "y"),
            actual=(fmt_shape(shape) if shape else "()", fmt_shape(y0.shape)),
        )
    for axis in range(y0.ndim):
        shape = list(y0.shape)
        shape[axis] += 1
        yb = np.zeros(shape, y0.dtype)
        add(
            f"y axis {axis} +1",
            run(yb, yh0),
            refuse,
            names=("y",),
            actual=(fmt_shape(tuple(shape)),),
        )
    add("batch 0", run(y0[:0], yh0[:0]), lambda: (np.zeros(0), np.zeros((0, *yh0.shape[1:]))))
    add(
        "nan/inf yhat",
        lambda: tuple(a.shape for a in run(y0, with_nonfinite(yh0))()),
        lambda: ((y0.shape[0],), yh0.shape),
        loose=True,
    )
    if y0.dtype.kind == "i":
        for bad in (-1, 3, 2**40):
            yb = y0.copy()
            yb[1] = bad
            add(f"label {bad}", run(yb, yh0), refuse, names=("label", "y"), actual=(str(bad),))
        add("labels float 1.5", run(y0 + 0.5, yh0), refuse, names=("label", "y"), actual=("1.5",))
    return cases
