"""Issue 7: bad input never crashes, hangs or gives a wrong number.

The cases (``hardening_cases.py``) run in a child process, so that a Rust panic,
an abort or a hang fails a test instead of killing pytest: the child announces
each case before running it; when it dies or stops answering, the case it was
running is counted as a crash and a new child carries on after it.
"""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
from pathlib import Path

import hardening_cases as hc
import numpy as np
import pytest

HERE = Path(__file__).parent
CHILD_TIMEOUT = 60  # seconds for one child; a case still running then is a hang


def run_suite(script: Path = HERE / "hardening_cases.py") -> dict:
    """Runs every case in children; returns the counts and the failures."""
    counts: collections.Counter[str] = collections.Counter()
    failures: list[str] = []
    start, total = 0, None
    path = os.pathsep.join(p for p in (str(HERE), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "PYTHONPATH": path, "RUST_BACKTRACE": "0"}
    while total is None or start < total:
        running = None
        try:
            proc = subprocess.run(
                [sys.executable, str(script), str(start)],
                capture_output=True,
                text=True,
                timeout=CHILD_TIMEOUT,
                env=env,
            )
            out, why = proc.stdout, f"exit status {proc.returncode}: {proc.stderr[-300:]}"
        except subprocess.TimeoutExpired as e:
            out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
            why = f"no answer after {CHILD_TIMEOUT} s (hang)"
        for line in out.splitlines():
            msg = json.loads(line)
            if "total" in msg:
                total = msg["total"]
            elif "start" in msg:
                running = (msg["start"], msg["name"])
            else:
                counts[msg["outcome"]] += 1
                if msg["outcome"] in (hc.WRONG, hc.BAD_ERROR, hc.CRASH):
                    failures.append(f"{running[1]}: {msg['outcome']}: {msg['detail']}")
                start, running = msg["i"] + 1, None
        if running is not None:  # the child died (or hung) in this case
            counts[hc.CRASH] += 1
            failures.append(f"{running[1]}: crash: {why}")
            start = running[0] + 1
        elif total is None:
            pytest.fail(f"the case runner failed before its first case: {why}")
    tried = sum(counts.values()) - counts[hc.PENDING]
    return {"tried": tried, **{k: counts[k] for k in hc.OUTCOMES}, "failures": failures}


def test_every_public_module_loss_and_binding_has_cases():
    assert hc.uncovered() == [], "add these to the case tables in tests/hardening_cases.py"


def test_bad_input_suite(capsys):
    res = run_suite()
    summary = (
        f"hardening: {res['tried']} cases tried, {res[hc.ERROR]} errors raised as intended, "
        f"{res[hc.RESULT]} right results, {res[hc.CRASH]} crashes, "
        f"{res[hc.WRONG]} wrong results, {res[hc.BAD_ERROR]} errors of another type, "
        f"{res[hc.PENDING]} pending (bindings not landed)"
    )
    with capsys.disabled():
        print("\n" + summary)
    shown = "\n".join(res["failures"][:40])
    assert res[hc.CRASH] == 0, f"{summary}\n{shown}"
    assert res[hc.WRONG] == 0 and res[hc.BAD_ERROR] == 0, f"{summary}\n{shown}"
    assert res["tried"] > 300


# --- inputs are never modified in place ----------------------------------------------


def _snapshot(*arrays: object) -> list[np.ndarray]:
    return [np.array(a, copy=True) for a in arrays]


def _each_spec_and_dtype(specs):
    """Runs a test for every spec (skipped where _core lacks its kernels) in both dtypes."""
    cases = [
        pytest.param(
            spec,
            id=spec.cls.__name__,
            marks=pytest.mark.skipif(not hc._has(spec.needs), reason=f"_core lacks {spec.needs}"),
        )
        for spec in specs
    ]

    def wrap(test):
        test = pytest.mark.parametrize("dtype", [np.float64, np.float32])(test)
        return pytest.mark.parametrize("spec", cases)(test)

    return wrap


@_each_spec_and_dtype(hc.MODULE_SPECS)
def test_modules_do_not_modify_their_inputs(spec, dtype):
    rng = np.random.default_rng(0)
    for x in (
        rng.standard_normal(spec.input_shape).astype(dtype),
        hc.reversed_view(rng.standard_normal(spec.input_shape).astype(dtype)),
    ):
        delta = rng.standard_normal(spec.out_shape).astype(dtype)
        before = _snapshot(x, delta)
        m = spec.make(dtype)
        params = _snapshot(*(p for _, p, _ in m.named_parameters()))
        y = m.forward(x)
        m.backward_update_gradient(x, delta)
        dx = m.backward_delta(x, delta)
        for got, want, what in zip((x, delta), before, ("input", "delta"), strict=True):
            np.testing.assert_array_equal(got, want, err_msg=f"{what} was modified")
        for (_, p, _), want in zip(m.named_parameters(), params, strict=True):
            np.testing.assert_array_equal(p, want, err_msg="a backward pass changed a parameter")
        # outputs are new arrays, not views of the caller's
        for out in (y, dx):
            assert not np.shares_memory(out, x) or spec.cls is nn_flatten()
            assert not np.shares_memory(out, delta) or spec.cls is nn_flatten()


def nn_flatten() -> type:
    import diy_nn

    return diy_nn.Flatten


@_each_spec_and_dtype(hc.LOSS_SPECS)
def test_losses_do_not_modify_their_inputs(spec, dtype):
    rng = np.random.default_rng(1)
    y, yhat = spec.y(rng), spec.yhat(rng).astype(dtype)
    if y.dtype.kind == "f":
        y = y.astype(dtype)
    before = _snapshot(y, yhat)
    loss = spec.make()
    cost, grad = loss.forward(y, yhat), loss.backward(y, yhat)
    np.testing.assert_array_equal(y, before[0], err_msg="y was modified")
    np.testing.assert_array_equal(yhat, before[1], err_msg="yhat was modified")
    assert not np.shares_memory(grad, yhat) and not np.shares_memory(grad, y)
    assert cost.shape == (len(yhat),)
