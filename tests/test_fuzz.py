"""Issue 7: hypothesis fuzzing of every binding, in a child process (a crash fails the test).

Random shapes (zero sizes included), dtypes, layouts and integer arguments
(negative, huge); each call must give the reference's result or raise
ValueError/TypeError (ShapeError is a ValueError).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

CHILD = r"""
import numpy as np
from hypothesis import given, settings, strategies as st, HealthCheck
import hardening_cases as hc

SPECS = [s for s in hc.BINDING_SPECS if hasattr(hc._core, s.name)]
DTYPES = ["float64", "float32", "int64", "bool", "complex128", "float16"]
INTS = st.one_of(st.integers(-3, 9), st.sampled_from([0, -1, 2**31, 2**62, 2**63 - 1, 2**64]))
count = {"n": 0}

@settings(max_examples=int(__import__("os").environ.get("FUZZ_EXAMPLES", "400")), deadline=None,
          suppress_health_check=list(HealthCheck), derandomize=True, database=None)
@given(st.data())
def fuzz(data):
    spec = data.draw(st.sampled_from(SPECS))
    kw = spec.make(np.random.default_rng(0), data.draw(st.sampled_from([np.float64, np.float32])))
    for arr in list(spec.arrays) + list(spec.int_arrays):
        if kw.get(arr) is None:
            continue
        a = kw[arr]
        if data.draw(st.booleans()):
            lo, hi = max(a.ndim - 1, 0), a.ndim + 1
            shape = data.draw(st.lists(st.integers(0, 5), min_size=lo, max_size=hi))
            a = (np.random.default_rng(1).standard_normal(shape) * 3).astype(a.dtype)
        if data.draw(st.integers(0, 4)) == 0:
            a = a.astype(data.draw(st.sampled_from(DTYPES)))
        a = data.draw(st.sampled_from([lambda v: v] + list(hc.LAYOUTS.values())))(a)
        kw[arr] = a
    for p in spec.ints:
        if data.draw(st.booleans()):
            kw[p] = data.draw(INTS)
    case = hc.Case(spec.name, hc._call_binding(spec, kw), hc._ref_binding(spec, kw), error_ok=True)
    outcome, detail = hc.run_case(case)
    if outcome == hc.WRONG and detail.startswith("the reference failed"):
        # sizes the numpy reference cannot hold: only a clean error or a result
        try:
            case.call()
            outcome = hc.RESULT
        except (ValueError, TypeError):
            outcome = hc.ERROR
    count["n"] += 1
    assert outcome in (hc.RESULT, hc.ERROR), f"{spec.name}: {outcome}: {detail}"

fuzz()
print("fuzzed", count["n"], "calls")
"""


def test_fuzz_bindings_in_a_child_process():
    here = Path(__file__).parent
    path = os.pathsep.join(p for p in (str(here), os.environ.get("PYTHONPATH")) if p)
    proc = subprocess.run(
        [sys.executable, "-c", CHILD],
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, "PYTHONPATH": path},
    )
    assert proc.returncode == 0, (
        f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    )
    print(proc.stdout.strip())
