"""Issue 12 item 9: which outputs are new arrays and which are views, as the README says.

Every module and loss returns new arrays, except ``Flatten`` (forward and
``backward_delta`` return views when numpy's reshape can make one, as
``torch.flatten`` does) and an empty ``Sequential`` (it returns its input, as
torch's does).
"""

from __future__ import annotations

import diy_nn as nn
import hardening_cases as hc
import numpy as np
import pytest


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("spec", hc.MODULE_SPECS, ids=lambda s: s.cls.__name__)
def test_module_outputs_are_new_arrays_except_flatten_s(spec, dtype):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(spec.input_shape).astype(dtype)
    m = spec.make(dtype)
    y = m.forward(x)
    d = rng.standard_normal(y.shape).astype(dtype)
    dx = m.backward_delta(x, d)
    if spec.cls is nn.Flatten:  # documented views, like torch.flatten's
        assert np.shares_memory(y, x) and np.shares_memory(dx, d)
    else:
        for out in (y, dx):
            assert not np.shares_memory(out, x) and not np.shares_memory(out, d)


@pytest.mark.parametrize("spec", hc.LOSS_SPECS, ids=lambda s: s.cls.__name__)
def test_loss_outputs_are_new_arrays(spec):
    rng = np.random.default_rng(1)
    y, yhat = spec.y(rng), spec.yhat(rng)
    loss = spec.make()
    for out in (loss.forward(y, yhat), loss.backward(y, yhat)):
        assert not np.shares_memory(out, y) and not np.shares_memory(out, yhat)


def test_flatten_views_only_what_reshape_can_view():
    x = np.arange(24.0).reshape(2, 3, 4)
    y = nn.Flatten().forward(x)
    y[0, 0] = -1.0  # writing into the view writes into the input: the documented caveat
    assert x[0, 0, 0] == -1.0
    strided = x.transpose(0, 2, 1)  # no view can flatten this: a copy
    assert not np.shares_memory(nn.Flatten().forward(strided), x)
    ints = np.arange(24).reshape(2, 3, 4)  # cast to the default dtype: a new array
    assert not np.shares_memory(nn.Flatten().forward(ints), ints)


def test_an_empty_sequential_returns_its_input():
    x, d = np.ones((3, 4)), np.full((3, 4), 2.0)
    s = nn.Sequential()
    assert s.forward(x) is x
    assert s.backward_delta(x, d) is d


def test_the_readme_says_which_outputs_are_views():
    from pathlib import Path

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    promises = readme.split("## What diy_nn promises", 1)[1].split("\n## ", 1)[0]
    assert "outputs are new arrays (only" not in promises  # the old, untrue sentence
    bullet = promises.split("- **Inputs are never modified", 1)[1].split("\n- **", 1)[0]
    for words in ("`Flatten.forward`", "`Flatten.backward_delta`", "*view*", "empty `Sequential`"):
        assert words in bullet, words
