"""Module.summary: each layer's output shape and parameters, the total, printed like Keras."""

from __future__ import annotations

import diy_nn as nn
import numpy as np
import pytest


def test_cnn_summary_rows_shapes_and_total(capsys):
    net = nn.Sequential(
        nn.Conv2D(3, 1, 32, rng=0),
        nn.MaxPool2D(2, 2),
        nn.Flatten(),
        nn.Linear(1568, 100, rng=1),
        nn.ReLU(),
        nn.Linear(100, 10, rng=2),
    )
    s = net.summary((16, 16, 1))
    assert [(r.name, r.kind, r.output_shape, r.n_parameters) for r in s.rows] == [
        ("0", "Conv2D", ("N", 14, 14, 32), 3 * 3 * 32 + 32),
        ("1", "MaxPool2D", ("N", 7, 7, 32), 0),
        ("2", "Flatten", ("N", 1568), 0),
        ("3", "Linear", ("N", 100), 1568 * 100 + 100),
        ("4", "ReLU", ("N", 100), 0),
        ("5", "Linear", ("N", 10), 1010),
    ]
    assert s.total == net.n_parameters() == sum(r.n_parameters for r in s.rows)
    printed = capsys.readouterr().out
    assert printed.strip() == str(s).strip()
    assert "(N, 7, 7, 32)" in printed and "156,900" in printed
    assert printed.strip().endswith(f"total parameters: {s.total:,}")
    assert repr(s) == f"ModelSummary(layers=6, total={s.total:,})"


def test_nested_containers_are_opened_and_nothing_changes(capsys):
    ae = nn.AutoEncoder(
        nn.Sequential(nn.Linear(8, 3, rng=0), nn.TanH()),
        nn.Sequential(nn.Linear(3, 8, rng=1), nn.Sigmoid()),
    )
    before = [p.copy() for _, p, _ in ae.named_parameters()]
    s = ae.summary((8,), print_table=False)
    assert capsys.readouterr().out == ""
    assert [r.name for r in s.rows] == ["encoder.0", "encoder.1", "decoder.0", "decoder.1"]
    assert [r.output_shape for r in s.rows] == [("N", 3), ("N", 3), ("N", 8), ("N", 8)]
    for (_, p, _), b in zip(ae.named_parameters(), before, strict=True):
        np.testing.assert_array_equal(p, b)


def test_a_layer_that_does_not_fit_is_named():
    net = nn.Sequential(nn.Linear(4, 3), nn.TanH(), nn.Linear(5, 2))
    with pytest.raises(
        ValueError, match=r"layer 2 \(Linear\) cannot take an input of shape \(N, 3\)"
    ):
        net.summary((4,), print_table=False)
    with pytest.raises(ValueError, match="input_shape"):
        net.summary("four", print_table=False)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="positive"):
        net.summary((0,), print_table=False)


def test_a_single_layer():
    s = nn.Linear(3, 2).summary((3,), print_table=False)
    assert [(r.name, r.output_shape, r.n_parameters) for r in s.rows] == [("Linear", ("N", 2), 8)]


def test_optimizers_show_their_settings():
    net, loss = nn.Linear(2, 1), nn.MSELoss()
    assert repr(nn.SGD(net, loss, eps=0.1, momentum=0.9)) == (
        "SGD(eps=0.1, momentum=0.9, weight_decay=0.0, nesterov=False)"
    )
    assert repr(nn.Optim(net, loss, eps=0.5)).startswith("Optim(eps=0.5,")
    assert "summed" in (nn.Optimizer.__doc__ or "") and "summed" in (nn.Optim.__doc__ or "")
