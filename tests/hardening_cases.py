"""Case tables of the hardening suite (issue 7), and the child process that runs them.

Every binding of ``diy_nn._core`` has a ``BindingSpec`` and every public module and
loss of ``diy_nn.__all__`` a ``ModuleSpec``/``LossSpec``: a small valid call plus a
reference. From each spec the same mutations are generated: wrong ndim, mismatched
and zero sizes, Fortran / strided / negative-stride views, integer, bool, complex,
object and float16 dtypes, NaN and inf, bad integer arguments (0, negative, huge,
not an int). The reference (numpy, strict about shapes) says what the right
answer is; a case passes when the call gives that answer, or raises the
ValueError/TypeError the reference expects with a message naming the argument
and showing the actual value.

Run as a script (``python tests/hardening_cases.py START``) it runs the cases from
index START and prints one JSON line per case, after a ``{"start": i}`` line
flushed before the call, so that the parent (``test_hardening.py``) can tell which
case killed or hung the process and carry on after it.

The suite is in four files: ``hardening_core.py`` (outcomes, ``Case``, judging, the
array mutations), ``hardening_refs.py`` (the numpy references), ``hardening_modules.py``
(the module and loss specs) and this one (the binding specs, discovery and the runner).
"""

from __future__ import annotations

import json
import math
import sys
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import diy_nn as nn
import numpy as np
from diy_nn import _core
from hardening_core import (
    BAD_DTYPES,
    BAD_ERROR,
    BAD_INTS,
    CRASH,
    ERROR,
    INT_DTYPES,
    LAYOUTS,
    OUTCOMES,
    PENDING,
    RESULT,
    WRONG,
    Case,
    cast,
    fmt_shape,
    reversed_view,
    run_case,
    with_nonfinite,
)
from hardening_modules import (
    LOSS_SPECS,
    MODULE_SPECS,
    _has,
    loss_cases,
    module_cases,
)
from hardening_refs import (
    RefError,
    ref_addmm,
    ref_avg_pool,
    ref_avg_pool_backward,
    ref_conv,
    ref_conv_backward_input,
    ref_conv_backward_weight,
    ref_conv_maxpool,
    ref_conv_maxpool_backward,
    ref_cross_entropy,
    ref_cross_entropy_backward,
    ref_linear,
    ref_log_softmax,
    ref_log_softmax_backward,
    ref_matmul,
    ref_max_pool,
    ref_max_pool_backward,
    ref_softmax,
    ref_softmax_backward,
)

# What the tests read through this module (``hc.RESULT``, ``hc.MODULE_SPECS``...).
__all__ = [
    "BAD_ERROR",
    "BINDING_SPECS",
    "CRASH",
    "Case",
    "ERROR",
    "LAYOUTS",
    "LOSS_SPECS",
    "MODULE_SPECS",
    "OUTCOMES",
    "PENDING",
    "RESULT",
    "RefError",
    "WRONG",
    "_call_binding",
    "_has",
    "_ref_binding",
    "all_cases",
    "reversed_view",
    "run_case",
    "uncovered",
]


# --- binding specs ----------------------------------------------------------------------


@dataclass
class BindingSpec:
    """A binding of ``_core``: its parameters in order, a valid call and a reference.

    ``make(rng, dtype)`` returns the keyword arguments of a valid call; ``arrays``
    maps each array parameter to the name its error messages use; ``ints`` lists
    the integer parameters; ``outputs`` the arrays written in place, which are
    then the result (``ref`` returns their expected values).
    """

    name: str
    params: tuple[str, ...]
    make: Callable[[np.random.Generator, type], dict[str, Any]]
    ref: Callable[..., Any]
    arrays: dict[str, str]
    ints: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    pairs: tuple[str, ...] = ()
    int_arrays: tuple[str, ...] = ()
    extra: Callable[[dict[str, Any]], list[tuple[str, dict[str, Any], tuple[str, ...]]]] = field(
        default=lambda kw: []
    )


def _r(rng: np.random.Generator, dt: type, *shape: int) -> np.ndarray:
    return rng.standard_normal(shape).astype(dt)


N, L, H, W, CIN, COUT, K, S, P = 2, 7, 6, 5, 3, 2, 3, 2, 1


def _conv_make(nd: int, bias: bool) -> Callable[[np.random.Generator, type], dict[str, Any]]:
    def make(rng: np.random.Generator, dt: type) -> dict[str, Any]:
        sp = (L,) if nd == 1 else (H, W)
        kw: dict[str, Any] = {
            "x": _r(rng, dt, N, *sp, CIN),
            "w": _r(rng, dt, *([K] * nd), CIN, COUT),
            "stride": S,
            "padding": P,
        }
        if bias:
            kw["b"] = _r(rng, dt, COUT)
        return kw

    return make


def _conv_out(nd: int) -> tuple[int, ...]:
    sp = (L,) if nd == 1 else (H, W)
    return tuple((n + 2 * P - K) // S + 1 for n in sp)


def _conv_bi_make(nd: int) -> Callable[[np.random.Generator, type], dict[str, Any]]:
    def make(rng: np.random.Generator, dt: type) -> dict[str, Any]:
        return {
            "delta": _r(rng, dt, N, *_conv_out(nd), COUT),
            "w": _r(rng, dt, *([K] * nd), CIN, COUT),
            "size": L if nd == 1 else (H, W),
            "stride": S,
            "padding": P,
        }

    return make


def _conv_bw_make(nd: int) -> Callable[[np.random.Generator, type], dict[str, Any]]:
    def make(rng: np.random.Generator, dt: type) -> dict[str, Any]:
        sp = (L,) if nd == 1 else (H, W)
        return {
            "x": _r(rng, dt, N, *sp, CIN),
            "delta": _r(rng, dt, N, *_conv_out(nd), COUT),
            "grad_w": _r(rng, dt, *([K] * nd), CIN, COUT),
            "grad_b": _r(rng, dt, COUT),
            "stride": S,
            "padding": P,
        }

    return make


def _pool_make(nd: int) -> Callable[[np.random.Generator, type], dict[str, Any]]:
    def make(rng: np.random.Generator, dt: type) -> dict[str, Any]:
        sp = (L,) if nd == 1 else (H, W)
        return {"x": _r(rng, dt, N, *sp, CIN), "k": 2, "stride": 2}

    return make


def _pool_out(nd: int, k: int = 2, s: int = 2) -> tuple[int, ...]:
    sp = (L,) if nd == 1 else (H, W)
    return tuple((n - k) // s + 1 for n in sp)


def _max_bw_make(nd: int) -> Callable[[np.random.Generator, type], dict[str, Any]]:
    def make(rng: np.random.Generator, dt: type) -> dict[str, Any]:
        x = _r(rng, dt, N, *((L,) if nd == 1 else (H, W)), CIN)
        _, argmax = ref_max_pool(nd)(x, 2, 2)
        return {
            "delta": _r(rng, dt, *argmax.shape),
            "argmax": argmax,
            "size": L if nd == 1 else (H, W),
        }

    return make


def _max_bw_extra(nd: int) -> Callable[[dict[str, Any]], list[Any]]:
    def extra(kw: dict[str, Any]) -> list[Any]:
        cases = []
        limit = L if nd == 1 else H * W
        for bad in (-1, limit, 2**31 - 1, -(2**31)):  # int32's extremes
            a = kw["argmax"].copy()
            a.reshape(-1)[1] = bad
            cases.append((f"argmax={bad}", {**kw, "argmax": a}, ("argmax", str(bad))))
        return cases

    return extra


def _conv_pool_make(nd: int) -> Callable[[np.random.Generator, type], dict[str, Any]]:
    def make(rng: np.random.Generator, dt: type) -> dict[str, Any]:
        kw = _conv_make(nd, True)(rng, dt)
        return {**kw, "k": 2, "pool_stride": 2}

    return make


def _conv_pool_bw_make(nd: int) -> Callable[[np.random.Generator, type], dict[str, Any]]:
    def make(rng: np.random.Generator, dt: type) -> dict[str, Any]:
        kw = _conv_pool_make(nd)(rng, dt)
        _, argmax = ref_conv_maxpool(nd)(**kw)
        return {
            "x": kw["x"],
            "w": kw["w"],
            "delta": _r(rng, dt, *argmax.shape),
            "argmax": argmax,
            "grad_w": _r(rng, dt, *kw["w"].shape),
            "grad_b": _r(rng, dt, COUT),
            "stride": S,
            "padding": P,
            "k": 2,
            "pool_stride": 2,
            "input_delta": False,
        }

    return make


def _conv_pool_bw_extra(nd: int) -> Callable[[dict[str, Any]], list[Any]]:
    def extra(kw: dict[str, Any]) -> list[Any]:
        cases = []
        conv_out = [(n + 2 * P - K) // S + 1 for n in kw["x"].shape[1:-1]]
        for bad in (-1, math.prod(conv_out), 2**31 - 1):  # outside the convolution's output
            a = kw["argmax"].copy()
            a.reshape(-1)[1] = bad
            cases.append((f"argmax={bad}", {**kw, "argmax": a}, ("argmax", str(bad))))
        return cases

    return extra


def _avg_bw_make(nd: int) -> Callable[[np.random.Generator, type], dict[str, Any]]:
    def make(rng: np.random.Generator, dt: type) -> dict[str, Any]:
        return {
            "delta": _r(rng, dt, N, *_pool_out(nd), CIN),
            "size": L if nd == 1 else (H, W),
            "k": 2,
            "stride": 2,
        }

    return make


def _ce_make(index: bool) -> Callable[[np.random.Generator, type], dict[str, Any]]:
    def make(rng: np.random.Generator, dt: type) -> dict[str, Any]:
        x = _r(rng, dt, 4, 3)
        if index:
            return {"logits": x, "target": np.array([0, 2, 1, 2], np.int64)}
        p = rng.uniform(size=(4, 3)).astype(dt)
        return {"logits": x, "target": (p / p.sum(axis=1, keepdims=True)).astype(dt)}

    return make


def _ce_extra(kw: dict[str, Any]) -> list[Any]:
    if kw["target"].dtype != np.int64:
        return []
    cases = []
    for bad in (-1, 3, 2**40, -(2**62)):
        t = kw["target"].copy()
        t[1] = bad
        cases.append((f"target={bad}", {**kw, "target": t}, ("target", str(bad))))
    return cases


def _softmax_bw_make(log: bool) -> Callable[[np.random.Generator, type], dict[str, Any]]:
    def make(rng: np.random.Generator, dt: type) -> dict[str, Any]:
        x = _r(rng, dt, 4, 5)
        y = ref_log_softmax(x) if log else ref_softmax(x)
        return {"y": y, "delta": _r(rng, dt, 4, 5)}

    return make


def _binding_specs() -> list[BindingSpec]:
    specs = [
        BindingSpec(
            "matmul",
            ("a", "b"),
            lambda rng, dt: {"a": _r(rng, dt, 3, 4), "b": _r(rng, dt, 4, 2)},
            ref_matmul,
            {"a": "a", "b": "b"},
        ),
        BindingSpec(
            "addmm",
            ("out", "a", "b", "alpha", "beta"),
            lambda rng, dt: {
                "out": _r(rng, dt, 3, 2),
                "a": _r(rng, dt, 3, 4),
                "b": _r(rng, dt, 4, 2),
                "alpha": 0.5,
                "beta": 2.0,
            },
            ref_addmm,
            {"out": "out", "a": "a", "b": "b"},
            outputs=("out",),
        ),
        BindingSpec(
            "linear",
            ("x", "w", "b"),
            lambda rng, dt: {"x": _r(rng, dt, 3, 4), "w": _r(rng, dt, 4, 2), "b": _r(rng, dt, 2)},
            ref_linear,
            {"x": "x", "w": "w", "b": "bias"},
        ),
    ]
    for nd in (1, 2):
        c = f"conv{nd}d"
        size = "input_len" if nd == 1 else "input_hw"
        specs += [
            BindingSpec(
                c,
                ("x", "w", "b", "stride", "padding"),
                _conv_make(nd, True),
                ref_conv(nd),
                {"x": "x", "w": "w", "b": "b"},
                ints=("stride", "padding"),
            ),
            BindingSpec(
                f"{c}_backward_input",
                ("delta", "w", "size", "stride", "padding"),
                _conv_bi_make(nd),
                ref_conv_backward_input(nd),
                {"delta": "delta", "w": "w"},
                ints=("stride", "padding", *(("size",) if nd == 1 else ())),
                pairs=("size",) if nd == 2 else (),
            ),
            BindingSpec(
                f"{c}_backward_weight",
                ("x", "delta", "grad_w", "grad_b", "stride", "padding"),
                _conv_bw_make(nd),
                ref_conv_backward_weight(nd),
                {"x": "x", "delta": "delta", "grad_w": "grad_w", "grad_b": "grad_b"},
                ints=("stride", "padding"),
                outputs=("grad_w", "grad_b"),
            ),
            BindingSpec(
                f"max_pool{nd}d",
                ("x", "k", "stride"),
                _pool_make(nd),
                ref_max_pool(nd),
                {"x": "x"},
                ints=("k", "stride"),
            ),
            BindingSpec(
                f"max_pool{nd}d_backward",
                ("delta", "argmax", "size"),
                _max_bw_make(nd),
                ref_max_pool_backward(nd),
                {"delta": "delta"},
                ints=("size",) if nd == 1 else (),
                pairs=("size",) if nd == 2 else (),
                int_arrays=("argmax",),
                extra=_max_bw_extra(nd),
            ),
            BindingSpec(
                f"avg_pool{nd}d",
                ("x", "k", "stride"),
                _pool_make(nd),
                ref_avg_pool(nd),
                {"x": "x"},
                ints=("k", "stride"),
            ),
            BindingSpec(
                f"avg_pool{nd}d_backward",
                ("delta", "size", "k", "stride"),
                _avg_bw_make(nd),
                ref_avg_pool_backward(nd),
                {"delta": "delta"},
                ints=("k", "stride", *(("size",) if nd == 1 else ())),
                pairs=("size",) if nd == 2 else (),
            ),
            BindingSpec(
                f"{c}_maxpool",
                ("x", "w", "b", "stride", "padding", "k", "pool_stride"),
                _conv_pool_make(nd),
                ref_conv_maxpool(nd),
                {"x": "x", "w": "w", "b": "b"},
                ints=("stride", "padding", "k", "pool_stride"),
            ),
            BindingSpec(
                f"{c}_maxpool_backward",
                (
                    "x",
                    "w",
                    "delta",
                    "argmax",
                    "grad_w",
                    "grad_b",
                    "stride",
                    "padding",
                    "k",
                    "pool_stride",
                    "input_delta",
                ),
                _conv_pool_bw_make(nd),
                ref_conv_maxpool_backward(nd),
                {"x": "x", "w": "w", "delta": "delta", "grad_w": "grad_w", "grad_b": "grad_b"},
                ints=("stride", "padding", "k", "pool_stride"),
                outputs=("grad_w", "grad_b"),
                int_arrays=("argmax",),
                extra=_conv_pool_bw_extra(nd),
            ),
        ]
        del size
    for log in (False, True):
        name = "log_softmax" if log else "softmax"
        specs += [
            BindingSpec(
                name,
                ("x",),
                lambda rng, dt: {"x": _r(rng, dt, 4, 5)},
                ref_log_softmax if log else ref_softmax,
                {"x": "x"},
            ),
            BindingSpec(
                f"{name}_backward",
                ("y", "delta"),
                _softmax_bw_make(log),
                ref_log_softmax_backward if log else ref_softmax_backward,
                {"y": "y", "delta": "delta"},
            ),
        ]
    for index in (True, False):
        for name, ref in (
            ("cross_entropy", ref_cross_entropy),
            ("cross_entropy_backward", ref_cross_entropy_backward),
        ):
            specs.append(
                BindingSpec(
                    name,
                    ("logits", "target"),
                    _ce_make(index),
                    ref,
                    {"logits": "logits", **({} if index else {"target": "target"})},
                    int_arrays=("target",) if index else (),
                    extra=_ce_extra,
                )
            )
    return specs


BINDING_SPECS = _binding_specs()
# bindings that are not array kernels, with their own cases below
# Bindings that take lists of arrays (the fused training paths): their bad inputs
# are tested in tests/test_fused.py.
OTHER_BINDINGS = (
    "set_num_threads",
    "get_num_threads",
    "debug_build",
    "dense_forward",
    "dense_backward",
    "DenseTrainer",
    "Activation",  # the enums those take
    "activation",  # any number of dimensions: tests/test_activation_kernels.py
    "activation_backward",
    "LossKind",
    "optim_update",  # the optimizers' rules: bad inputs in tests/test_optim.py
    "Rule",
)


def _call_binding(spec: BindingSpec, kw: dict[str, Any]) -> Callable[[], Any]:
    def call() -> Any:
        fn = getattr(_core, spec.name)
        ret = fn(*[kw[p] for p in spec.params if p in kw])
        if spec.outputs:
            outs = tuple(kw.get(o) for o in spec.outputs)
            return outs if len(outs) > 1 else outs[0]
        return ret

    return call


def _ref_binding(spec: BindingSpec, kw: dict[str, Any]) -> Callable[[], Any]:
    def ref() -> Any:
        # the reference sees private copies: in-place outputs must not be touched twice
        kw2 = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in kw.items()}
        return spec.ref(*[kw2[p] for p in spec.params if p in kw2])

    return ref


def _copy(kw: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in kw.items()}


def _shape_strings(kw: dict[str, Any]) -> tuple[str, ...]:
    """The concrete values an error message may show: shapes, dtypes, type names."""
    out: list[str] = []
    for v in kw.values():
        if isinstance(v, np.ndarray):
            out += [fmt_shape(v.shape) if v.ndim else "()", str(v.dtype)]
        elif not isinstance(v, (int, float)) or isinstance(v, bool):
            out.append(type(v).__name__)
    return tuple(out)


def binding_cases(spec: BindingSpec) -> list[Case]:
    """Every mutation of one binding's valid call."""
    cases: list[Case] = []
    rng = np.random.default_rng(zlib.crc32(spec.name.encode()))
    names = tuple(spec.arrays.values()) + spec.ints + spec.pairs + spec.int_arrays
    names += tuple(p for p in spec.params if p not in names)
    if "size" in names:
        names += ("input_len", "input_hw")
    if spec.name.startswith("conv"):
        names += ("kernel",)  # the weight's spatial size
    if spec.name.startswith("cross_entropy"):
        names += ("x",)  # the kernel's name of the logits
    needs = (spec.name,)

    def add(label: str, kw: dict[str, Any], **opts: Any) -> None:
        opts.setdefault("names", names)
        opts.setdefault("actual", _shape_strings(kw))
        cases.append(
            Case(f"{spec.name}[{label}]", _call_binding(spec, kw), _ref_binding(spec, kw), **opts)
        )
        cases[-1].needs = needs

    def fresh(dt: type = np.float64) -> dict[str, Any]:
        return spec.make(rng, dt)

    for dt in (np.float64, np.float32):
        add(f"valid {np.dtype(dt).name}", fresh(dt))
    float_arrays = [a for a in spec.arrays]
    all_arrays = float_arrays + list(spec.int_arrays)
    # layouts: the same result as the contiguous input
    for arr in all_arrays:
        for lname, fn in LAYOUTS.items():
            kw = fresh()
            if kw.get(arr) is None:
                continue
            base = _copy(kw)
            kw[arr] = fn(kw[arr])
            cases.append(
                Case(
                    f"{spec.name}[{arr} {lname}]",
                    _call_binding(spec, kw),
                    _ref_binding(spec, base),
                    needs=needs,
                )
            )
    # every array argument Fortran-ordered at once, and every one reversed
    for lname in ("fortran", "negative"):
        kw = fresh(np.float32)
        base = _copy(kw)
        for arr in all_arrays:
            kw[arr] = LAYOUTS[lname](kw[arr])
        cases.append(
            Case(
                f"{spec.name}[all {lname}]",
                _call_binding(spec, kw),
                _ref_binding(spec, base),
                needs=needs,
            )
        )
    # dtypes
    for arr in all_arrays:
        for bad in BAD_DTYPES + (("float64",) if arr in spec.int_arrays else ()):
            kw = fresh()
            if arr in spec.int_arrays and bad == INT_DTYPES.get(arr, "int64"):
                continue
            kw[arr] = cast(kw[arr], bad)
            add(f"{arr} {bad}", kw, actual=(bad, "O", *_shape_strings(kw)))
        kw = fresh()
        kw[arr] = kw[arr].tolist()
        add(f"{arr} list", kw, actual=("list",))
    if len(float_arrays) > 1:
        for arr in float_arrays:
            kw = fresh()
            kw[arr] = kw[arr].astype(np.float32)
            add(f"{arr} float32 among float64", kw, actual=("float32",))
    # ndim
    for arr in all_arrays:
        kw = fresh()
        kw[arr] = kw[arr][None]
        add(f"{arr} extra axis", kw)
        kw = fresh()
        kw[arr] = kw[arr][0, ...]
        add(f"{arr} missing axis", kw)
        kw = fresh()
        kw[arr] = np.asarray(kw[arr].reshape(-1)[0])
        add(f"{arr} 0-d", kw)
    # mismatched and zero sizes, axis by axis
    for arr in all_arrays:
        for axis in range(kw[arr].ndim if isinstance(kw.get(arr), np.ndarray) else 0):
            for label, delta in (("+1", 1), ("=0", None)):
                kw = fresh()
                a = kw[arr]
                shape = list(a.shape)
                shape[axis] = 0 if delta is None else shape[axis] + delta
                if arr in spec.int_arrays:
                    kw[arr] = np.zeros(shape, a.dtype)
                else:
                    kw[arr] = rng.standard_normal(shape).astype(a.dtype)
                add(
                    f"{arr} axis {axis} {label}",
                    kw,
                    error_ok=delta is None,
                    actual=(*_shape_strings(kw), str(shape[axis])),
                )
    # NaN and inf in each float input: propagate (or a ValueError)
    for arr in float_arrays:
        if arr in spec.outputs:
            continue
        kw = fresh()
        kw[arr] = with_nonfinite(kw[arr])
        add(f"{arr} nan/inf", kw, loose=True)
    if spec.name == "addmm":
        for v in (math.nan, math.inf):
            for p in ("alpha", "beta"):
                kw = fresh()
                kw[p] = v
                add(f"{p}={v}", kw, loose=True)
    # integer arguments
    for p in spec.ints:
        for bad in BAD_INTS:
            kw = fresh()
            kw[p] = bad
            add(
                f"{p}={bad!r}",
                kw,
                names=(p, *names),
                actual=(str(bad), type(bad).__name__, *_shape_strings(kw)),
            )
    for p in spec.pairs:
        for bad in ((-1, 3), (3, -1), (2**62, 2**62), (2**64, 1), (3,), (1, 2, 3), "ab", None, 5):
            kw = fresh()
            kw[p] = bad
            parts = tuple(str(b) for b in bad) if isinstance(bad, tuple) else ()
            add(
                f"{p}={bad!r}",
                kw,
                actual=(str(bad), type(bad).__name__, *parts, *_shape_strings(kw)),
            )
        kw = fresh()
        kw[p] = list(kw[p])
        add(f"{p} as list", kw, error_ok=True)
    # kernel larger than the input, huge kernel
    if "k" in spec.ints or spec.name.startswith("conv"):
        for k in (8, 2**31, 2**62):
            kw = fresh()
            if "k" in kw:
                kw["k"] = k
            elif "w" in kw and k < 100:
                kw["w"] = rng.standard_normal((k,) * (kw["w"].ndim - 2) + kw["w"].shape[-2:])
            else:
                continue
            add(f"kernel {k}", kw, actual=(str(k), *_shape_strings(kw)))
    for label, kw, words in spec.extra(fresh()):
        add(label, kw, names=words[:1], actual=words[1:])
    return cases


def other_binding_cases() -> list[Case]:
    def set_then_restore(n: Any) -> Callable[[], Any]:
        def call() -> Any:
            before = _core.get_num_threads()
            try:
                _core.set_num_threads(n)
                return _core.get_num_threads() >= 1
            finally:
                _core.set_num_threads(0)
                del before

        return call

    def ok_ref() -> bool:
        return True

    def refuse() -> bool:
        raise RefError("bad n")

    cases = [
        Case("get_num_threads[]", lambda: _core.get_num_threads() >= 1, ok_ref),
        Case("debug_build[]", lambda: _core.debug_build() in (True, False), ok_ref),
        Case("set_num_threads[1]", set_then_restore(1), ok_ref),
        Case("set_num_threads[0]", set_then_restore(0), ok_ref),
    ]
    for bad in (-1, -(2**62), 2**64, 1.5, "2", None):
        cases.append(
            Case(
                f"set_num_threads[{bad!r}]",
                set_then_restore(bad),
                refuse,
                names=("n",),
                actual=(str(bad), type(bad).__name__),
            )
        )
    return cases


# --- discovery and the full list -------------------------------------------------------


def public_modules_and_losses() -> dict[str, type]:
    """Every class in ``diy_nn.__all__`` that is a Module or a Loss (bases excluded)."""
    out = {}
    for n in nn.__all__:
        obj = getattr(nn, n)
        if isinstance(obj, type) and obj not in (nn.Module, nn.Loss):
            if issubclass(obj, (nn.Module, nn.Loss)):
                out[n] = obj
    return out


def core_bindings() -> list[str]:
    return sorted(
        n
        for n in dir(_core)
        if not n.startswith("_") and callable(getattr(_core, n)) and n != "ShapeError"
    )


def uncovered() -> list[str]:
    """Public modules, losses and bindings that no case table covers."""
    classes = {s.cls for s in MODULE_SPECS} | {s.cls for s in LOSS_SPECS}
    missing = [n for n, c in public_modules_and_losses().items() if c not in classes]
    covered = {s.name for s in BINDING_SPECS} | set(OTHER_BINDINGS)
    missing += [f"_core.{n}" for n in core_bindings() if n not in covered]
    return missing


def all_cases() -> list[Case]:
    cases: list[Case] = []
    for bspec in BINDING_SPECS:
        cases += binding_cases(bspec)
    cases += other_binding_cases()
    for mspec in MODULE_SPECS:
        cases += module_cases(mspec)
    for lspec in LOSS_SPECS:
        cases += loss_cases(lspec)
    return cases


def main(argv: list[str]) -> None:
    start = int(argv[1]) if len(argv) > 1 else 0
    cases = all_cases()
    print(json.dumps({"total": len(cases)}), flush=True)
    for i in range(start, len(cases)):
        print(json.dumps({"start": i, "name": cases[i].name}), flush=True)
        outcome, detail = run_case(cases[i])
        print(json.dumps({"i": i, "outcome": outcome, "detail": detail[:500]}), flush=True)


if __name__ == "__main__":
    main(sys.argv)
