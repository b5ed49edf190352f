"""Issue 2: bad input raises a clear ValueError/TypeError naming what was expected and given."""

from __future__ import annotations

import subprocess
import sys

import diy_nn as nn
import numpy as np
import pytest
from diy_nn import _core


@pytest.mark.parametrize(
    ("call", "exc", "message"),
    [
        (
            lambda: _core.matmul(np.ones((2, 3)), np.ones((4, 5))),
            ValueError,
            r"matmul: b must have shape \(3, n\) to match a \(2, 3\), got \(4, 5\)",
        ),
        (
            lambda: _core.matmul(np.ones(3), np.ones((3, 2))),
            ValueError,
            r"matmul: a must have 2 dimensions \(m, k\), got shape \(3,\)",
        ),
        (
            lambda: _core.matmul(np.ones((2, 2), dtype=np.int64), np.ones((2, 2))),
            TypeError,
            r"matmul: a must have dtype float32 or float64, got int64",
        ),
        (
            lambda: _core.matmul(np.ones((2, 2), dtype=complex), np.ones((2, 2))),
            TypeError,
            r"complex128",
        ),
        (
            lambda: _core.matmul(np.ones((2, 2), np.float32), np.ones((2, 2))),
            TypeError,
            r"same dtype, but a is float32 and b is float64",
        ),
        (
            lambda: _core.matmul([[1.0]], np.ones((1, 1))),
            TypeError,
            r"a must be a numpy.ndarray of float32 or float64, got list",
        ),
        (
            lambda: _core.addmm(np.ones((2, 2)), np.ones((2, 3)), np.ones((3, 3))),
            ValueError,
            r"addmm: out must have shape \(2, 3\), got \(2, 2\)",
        ),
        (
            lambda: _core.linear(np.ones((2, 3)), np.ones((3, 4)), np.ones(5)),
            ValueError,
            r"linear: bias must have shape \(4,\), got \(5,\)",
        ),
    ],
)
def test_kernel_bad_input(call, exc, message):
    with pytest.raises(exc, match=message):
        call()


def test_addmm_refuses_aliasing_and_read_only_outputs():
    a = np.ones((3, 3))
    with pytest.raises(ValueError, match="addmm: a overlaps the output being written"):
        _core.addmm(a, a, np.ones((3, 3)))
    ro = np.zeros((3, 3))
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="out must be a writeable array"):
        _core.addmm(ro, np.ones((3, 3)), np.ones((3, 3)))


@pytest.mark.parametrize(
    ("call", "exc", "message"),
    [
        (
            lambda: nn.Linear(3, 2).forward(np.ones((4, 5))),
            ValueError,
            r"Linear.forward: input must have shape \(N, 3\), got \(4, 5\)",
        ),
        (
            lambda: nn.Linear(3, 2).forward(np.ones(3)),
            ValueError,
            r"Linear.forward: input must have shape \(N, 3\), got \(3,\)",
        ),
        (
            lambda: nn.Linear(3, 2).forward(np.ones((4, 3), dtype=complex)),
            TypeError,
            r"Linear.forward: input must be a real numeric array .*got dtype complex128",
        ),
        (lambda: nn.Linear(3, 2).forward(np.array([["a", "b", "c"]])), TypeError, r"got dtype <U1"),
        (
            lambda: nn.Linear(3, 2).backward_delta(np.ones((4, 3)), np.ones((5, 2))),
            ValueError,
            r"Linear.backward_delta: delta must have shape \(4, 2\), got \(5, 2\)",
        ),
        (
            lambda: nn.Linear(3, 2).backward_update_gradient(np.ones((4, 3)), np.ones((4, 3))),
            ValueError,
            r"Linear.backward_update_gradient: delta must have shape \(4, 2\), got \(4, 3\)",
        ),
        (lambda: nn.Linear(0, 2), ValueError, r"Linear: input must be an integer >= 1, got 0"),
        (lambda: nn.Linear(2.5, 2), TypeError, r"Linear: input must be an integer >= 1, got 2.5"),
        (
            lambda: nn.Linear(2, 2, dtype=np.int32),
            TypeError,
            r"dtype must be float32 or float64, got int32",
        ),
        (
            lambda: nn.TanH().backward_delta(np.ones((2, 3)), np.ones((3, 2))),
            ValueError,
            r"TanH.backward_delta: delta must have the shape of input \(2, 3\), got \(3, 2\)",
        ),
        (
            lambda: nn.MSELoss().forward(np.ones((4, 2)), np.ones((5, 2))),
            ValueError,
            r"MSELoss.forward: y must have the shape of yhat \(5, 2\), got \(4, 2\)",
        ),
        (
            lambda: nn.MSELoss().backward(np.ones((4, 2), dtype=complex), np.ones((4, 2))),
            TypeError,
            r"MSELoss.backward: y must be a real numeric array",
        ),
        (
            lambda: nn.Optim(nn.Linear(2, 1), nn.MSELoss(), 0.1).step(
                np.ones((4, 2)), np.ones((3, 1))
            ),
            ValueError,
            r"batch_x and batch_y must have the same number of samples",
        ),
        (
            lambda: nn.Sequential(nn.Linear(2, 2), "tanh"),
            TypeError,
            r"Sequential: layer '1' must be a diy_nn Module, got str",
        ),
    ],
)
def test_module_bad_input(call, exc, message):
    with pytest.raises(exc, match=message):
        call()


def test_integer_inputs_are_cast_to_the_parameter_dtype():
    layer = nn.Linear(2, 1, dtype=np.float32)
    out = layer.forward(np.array([[1, 2], [3, 4]]))
    assert out.dtype == np.float32
    np.testing.assert_allclose(
        out, np.array([[1, 2], [3, 4]], np.float32) @ layer._parameters + layer._bias
    )


def test_import_does_not_import_torch():
    code = "import sys, diy_nn; assert 'torch' not in sys.modules, 'torch was imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
