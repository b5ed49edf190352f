"""``Module.summary``: each layer's output shape and parameter count, as Keras prints them."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from .dtype import get_default_dtype
from .module import Module

__all__ = ["ModelSummary", "SummaryRow", "summarize"]


@dataclass(frozen=True)
class SummaryRow:
    """One layer: its name in the model, its class, its output shape, its own parameters."""

    name: str
    kind: str
    output_shape: tuple[int | str, ...]
    n_parameters: int


@dataclass
class ModelSummary:
    """The rows of ``Module.summary``; ``str()`` gives the table.

    Attributes:
        rows: one per layer, in the order the input goes through them (the
            layers of nested ``Sequential`` s and ``AutoEncoder`` s are listed
            with dotted names, ``encoder.0``).
        input_shape: the shape given, with ``N`` for the batch.
        total: the number of scalar parameters of the whole model.
    """

    rows: list[SummaryRow] = field(default_factory=list)
    input_shape: tuple[int | str, ...] = ()
    total: int = 0

    def __str__(self) -> str:
        header = ("layer (type)", "output shape", "parameters")
        cells = [
            (f"{r.name} ({r.kind})", _fmt_shape(r.output_shape), f"{r.n_parameters:,}")
            for r in self.rows
        ]
        widths = [max(len(c[i]) for c in [header, *cells]) for i in range(3)]

        def line(c: Sequence[str]) -> str:
            return f"{c[0]:<{widths[0]}}  {c[1]:<{widths[1]}}  {c[2]:>{widths[2]}}"

        rule = "=" * (sum(widths) + 4)
        return "\n".join(
            [
                f"input: {_fmt_shape(self.input_shape)}",
                line(header),
                rule,
                *(line(c) for c in cells),
                rule,
                f"total parameters: {self.total:,}",
            ]
        )

    def __repr__(self) -> str:
        return f"ModelSummary(layers={len(self.rows)}, total={self.total:,})"


def _fmt_shape(shape: tuple[int | str, ...]) -> str:
    items = [str(d) for d in shape]
    return "(" + items[0] + ",)" if len(items) == 1 else "(" + ", ".join(items) + ")"


def _layers(module: Module, prefix: str) -> Iterator[tuple[str, Module]]:
    """The leaves in the order a forward pass runs them.

    ``Sequential`` and ``AutoEncoder`` apply their children in order, so they are
    opened; any other module (your own included) is one row.
    """
    from .container import Sequential

    if isinstance(module, Sequential):
        for name, child in module.children():
            yield from _layers(child, f"{prefix}{name}.")
    else:
        yield prefix.rstrip(".") or type(module).__name__, module


def summarize(module: Module, input_shape: Sequence[int], print_table: bool = True) -> ModelSummary:
    """Runs one zero sample of shape ``input_shape`` through ``module``, layer by layer.

    Args:
        module: the model.
        input_shape: the shape of *one* sample, without the batch axis (``(256,)``
            for a USPS MLP, ``(16, 16, 1)`` for a Conv2D net).
        print_table: also print the table.

    Returns:
        The ``ModelSummary`` (its ``str()`` is the printed table).

    Raises:
        ValueError: ``input_shape`` is not a sequence of positive ints, or a layer
            cannot take what the previous one gives (the message names the layer).
    """
    try:
        shape = tuple(int(d) for d in input_shape)
    except (TypeError, ValueError):
        raise ValueError(
            f"summary: input_shape must be a sequence of positive ints (one sample, no batch "
            f"axis), got {input_shape!r}"
        ) from None
    if any(d <= 0 for d in shape):
        raise ValueError(f"summary: input_shape must hold positive sizes, got {shape}")
    x = np.zeros((1, *shape), dtype=module.dtype or get_default_dtype())
    summary = ModelSummary(input_shape=("N", *shape), total=module.n_parameters())
    # A model with a training mode runs in evaluation mode here, so that the zero
    # sample updates no running statistics.
    was_training = getattr(module, "training", None)
    if was_training is not None and hasattr(module, "eval"):
        module.eval()
    try:
        for name, layer in _layers(module, ""):
            try:
                x = np.asarray(layer.forward(x))
            except ValueError as err:
                raise ValueError(
                    f"summary: layer {name} ({type(layer).__name__}) cannot take an input of "
                    f"shape {_fmt_shape(('N', *x.shape[1:]))}: {err}"
                ) from err
            row = SummaryRow(name, type(layer).__name__, ("N", *x.shape[1:]), layer.n_parameters())
            summary.rows.append(row)
    finally:
        if was_training and hasattr(module, "train"):
            module.train()
    if print_table:
        print(summary)
    return summary
