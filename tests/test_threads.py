"""Threads: kernels called from several Python threads give the serial results (issue 7);
forked children run parallel kernels, and absurd thread counts are refused (issue 12)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import diy_nn as nn
import numpy as np
import pytest
from diy_nn import _core


def _work(seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((16, 12, 3))
    conv = nn.Conv1D(3, 3, 4, rng=seed)
    y = conv.forward(x)
    d = rng.standard_normal(y.shape)
    conv.backward_update_gradient(x, d)
    a, b = rng.standard_normal((40, 30)), rng.standard_normal((30, 20))
    return [
        y,
        conv.backward_delta(x, d),
        conv._gradient.copy(),
        _core.matmul(a, b),
        _core.softmax(a),
        nn.MaxPool1D(2).forward(x),
    ]


def test_threads_give_the_serial_results():
    seeds = list(range(8))
    serial = [_work(s) for s in seeds]
    with ThreadPoolExecutor(max_workers=4) as pool:
        for _ in range(3):
            threaded = list(pool.map(_work, seeds))
            for got, want in zip(threaded, serial, strict=True):
                for g, w in zip(got, want, strict=True):
                    np.testing.assert_array_equal(g, w)


def test_results_are_deterministic_for_a_seed_and_thread_count():
    before = _core.get_num_threads()
    try:
        for n in (1, 2):
            _core.set_num_threads(n)
            runs = [_work(3) for _ in range(3)]
            for other in runs[1:]:
                for g, w in zip(other, runs[0], strict=True):
                    np.testing.assert_array_equal(g, w)
    finally:
        _core.set_num_threads(before if before else 0)


# --- issue 12: fork safety and absurd thread counts -----------------------------------

# A child script: the parent runs a 2-thread kernel, then forks; each forked
# child runs parallel kernels (with 2 threads, then after set_num_threads(0))
# and sends the results back. The script prints OK when all match.
_FORK_SCRIPT = """
import multiprocessing as mp, sys, warnings
from concurrent.futures import ProcessPoolExecutor
import numpy as np
from diy_nn import _core

warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads: what we test
_core.set_num_threads(2)
a = np.random.default_rng(0).standard_normal((300, 300))
x = np.random.default_rng(1).standard_normal((32, 12, 12, 3))
w = np.random.default_rng(2).standard_normal((3, 3, 3, 4))
want = (_core.matmul(a, a), _core.conv2d(x, w))  # pool workers now exist

def kernels(reset=False):
    if reset:
        _core.set_num_threads(0)
    return _core.get_num_threads(), _core.matmul(a, a), _core.conv2d(x, w)

def child(q, reset):
    q.put(kernels(reset))

ctx = mp.get_context("fork")
for reset in (False, True):
    q = ctx.Queue()
    p = ctx.Process(target=child, args=(q, reset))
    p.start()
    n, got_m, got_c = q.get(timeout=60)
    p.join(60)
    assert p.exitcode == 0, p.exitcode
    assert n == (2 if not reset else n) and n >= 1
    np.testing.assert_allclose(got_m, want[0], rtol=1e-12)
    np.testing.assert_allclose(got_c, want[1], rtol=1e-12)
with ProcessPoolExecutor(max_workers=2, mp_context=ctx) as ex:
    for _, got_m, got_c in ex.map(kernels, [False, True, False, False]):
        np.testing.assert_allclose(got_m, want[0], rtol=1e-12)
        np.testing.assert_allclose(got_c, want[1], rtol=1e-12)
np.testing.assert_allclose(_core.matmul(a, a), want[0], rtol=1e-12)  # the parent still works
print("OK")
"""


def _run_script(script: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Runs ``script`` in a fresh interpreter, in its own session so that a hung
    grandchild is killed with it; a hang fails the test instead of pytest."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail(f"the script hung for {timeout} s (a forked child deadlocked?)")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
def test_a_forked_child_runs_parallel_kernels():
    done = _run_script(_FORK_SCRIPT)
    assert done.returncode == 0 and done.stdout.strip() == "OK", done.stderr[-3000:]


def _threads_now() -> int:
    return len(os.listdir("/proc/self/task"))


def test_absurd_thread_counts_are_refused_before_any_thread_starts():
    before = _core.get_num_threads()
    try:
        for bad in (1025, 5000, 2**20, 2**62):
            with pytest.raises(ValueError, match=r"n must be at most 1024 \(0 = default\), got"):
                _core.set_num_threads(bad)
            assert _core.get_num_threads() == before  # unchanged
        _core.set_num_threads(1024)  # the bound itself is accepted
        assert _core.get_num_threads() == 1024
    finally:
        _core.set_num_threads(0)
    assert _core.get_num_threads() == before


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="needs Linux /proc")
def test_setting_a_thread_count_starts_no_thread_until_a_kernel_needs_it():
    _core.set_num_threads(0)
    try:
        _core.set_num_threads(6)
        idle = _threads_now()
        _core.set_num_threads(1000)
        assert _threads_now() <= idle  # recorded only: no thread spawned
        _core.set_num_threads(6)
        a = np.ones((600, 600))
        np.testing.assert_array_equal(_core.matmul(a, a), np.full((600, 600), 600.0))
        assert _threads_now() >= idle + 5 - 1  # the kernel started 5 workers (one may exit)
    finally:
        _core.set_num_threads(0)
