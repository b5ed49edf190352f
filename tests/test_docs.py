"""The documentation's tutorial runs: every ```python block of docs/custom-layer.md, in order."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

DOCS = Path(__file__).resolve().parents[1] / "docs"
BLOCK = re.compile(r"^```python\n(.*?)^```$", re.DOTALL | re.MULTILINE)


def _blocks(page: str) -> list[str]:
    return BLOCK.findall((DOCS / page).read_text())


def test_write_your_own_layer_runs(capsys):
    blocks = _blocks("custom-layer.md")
    assert len(blocks) >= 4
    namespace: dict = {"__name__": "custom_layer_tutorial"}
    for i, code in enumerate(blocks):
        exec(compile(code, f"docs/custom-layer.md block {i + 1}", "exec"), namespace)
    out = capsys.readouterr().out
    assert "differs from finite differences" in out  # the broken layer was caught
    assert "total parameters: 41" in out  # Dense(3, 8) + Dense(8, 1): 32 + 9
    net = namespace["net"]
    for layer in (net[0], net[2]):  # the custom layers' biases (zero at first) trained
        assert np.all(layer._bias != 0)


def test_getting_started_example_runs(capsys):
    (code,) = _blocks("getting-started.md")
    exec(compile(code, "docs/getting-started.md", "exec"), {"__name__": "getting_started"})
    accuracy = float(capsys.readouterr().out.split()[-1])
    assert accuracy > 0.9
