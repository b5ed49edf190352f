"""Containers: ``Sequential`` (alias ``Sequentiel``) and ``AutoEncoder``."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np

from ._fused import ConvPool, DenseChain
from .module import Module

__all__ = ["Sequential", "Sequentiel", "AutoEncoder"]


class Sequential(Module):
    """Modules applied one after the other.

    Args:
        *modules: the layers in order, or a single ``OrderedDict`` of named layers.

    ``forward`` keeps the input of each layer; the backward passes reuse them
    when they get that same input back (else they run the forward again).

    When the layers (nested ``Sequential`` s included) are ``Linear`` layers
    each followed by at most one ``TanH``, ``Sigmoid`` or ``ReLU``, ``forward``,
    ``backward`` and ``backward_update_gradient`` run the whole chain in one
    Rust call per direction (same results, see ``_fused.py``); the layers'
    own methods still work one by one. In a longer ``Sequential`` (a CNN's
    ``Linear``-``ReLU``-``Linear`` tail) each maximal such run is fused alone,
    and so is each ``Conv1D``/``Conv2D`` directly followed by the max pooling
    of the same dimension (``_fused.ConvPool``: the convolution's output is
    never written out whole).

    Example:
        >>> net = Sequential(Linear(2, 4), TanH(), Linear(4, 1), Sigmoid())
    """

    _param_names = ()
    _grad_names = ()

    def __init__(self, *modules: Module | OrderedDict[str, Module]) -> None:
        super().__init__()
        named: list[tuple[str, object]]
        if len(modules) == 1 and isinstance(modules[0], (OrderedDict, dict)):
            named = list(modules[0].items())
        else:
            named = [(str(i), m) for i, m in enumerate(modules)]
        for name, m in named:
            if not isinstance(m, Module):
                raise TypeError(
                    f"Sequential: layer {name!r} must be a diy_nn Module, got {type(m).__name__}"
                )
        self._named: list[tuple[str, Module]] = named  # type: ignore[assignment]
        self._inputs: list[np.ndarray] = []
        self._chain = DenseChain.of(self._leaves())
        # After a fused forward: (the input given, that input cast, every layer's output).
        self._fused: tuple[object, np.ndarray, list[np.ndarray]] | None = None
        # Without a whole chain: the layers cut into maximal dense runs (each with
        # its DenseChain) and the other layers (chain None), if there is a run.
        self._runs = _runs(self.layers) if self._chain is None else []
        # After a forward by runs: (the input, what each run kept for its backward).
        self._run_state: tuple[object, list[tuple[Any, Any]]] | None = None

    def _leaves(self) -> list[Module]:
        """The layers with nested plain ``Sequential`` s (and ``AutoEncoder`` s) opened."""
        leaves: list[Module] = []
        for _, m in self._named:
            leaves.extend(m._leaves() if type(m) in (Sequential, AutoEncoder) else [m])  # type: ignore[attr-defined]
        return leaves

    def children(self) -> list[tuple[str, Module]]:
        return list(self._named)

    @property
    def layers(self) -> list[Module]:
        return [m for _, m in self._named]

    def forward(self, X: np.ndarray) -> np.ndarray:
        if self._chain is not None:
            x = self._chain.input(X)
            if x is not None:
                outputs = self._chain.forward(x)
                self._inputs, self._fused = [], (X, x, outputs)
                return outputs[-1]
        if self._runs:
            return self._forward_runs(X)
        return self._forward_layers(X)

    def _forward_runs(self, X: np.ndarray) -> np.ndarray:
        """The forward pass run by run: one Rust call per dense run."""
        self._fused, self._inputs, input = None, [], X
        state: list[tuple[Any, Any]] = []
        for layers, chain in self._runs:
            x = chain.input(X) if chain is not None else None
            if chain is not None and x is not None:
                outputs = chain.forward(x)
                state.append((x, outputs))
                X = outputs[-1]
            else:
                inputs = []
                for layer in layers:
                    inputs.append(X)
                    X = layer.forward(X)
                state.append((inputs, None))
        self._run_state = (input, state)
        return X

    def _backward_runs(self, input: np.ndarray, delta: np.ndarray, input_delta: bool) -> object:
        """The backward pass run by run; d loss / d input if ``input_delta``."""
        if self._run_state is None or self._run_state[0] is not input:
            self._forward_runs(input)
        assert self._run_state is not None
        for i in reversed(range(len(self._runs))):
            (layers, chain), (kept, outputs) = self._runs[i], self._run_state[1][i]
            need = input_delta or i > 0
            if outputs is not None:
                delta = chain.backward(kept, outputs, delta, need)  # type: ignore[union-attr,assignment]
                continue
            for j in reversed(range(len(layers))):
                x = kept[j]
                if j == 0 and not need:
                    layers[j].backward_update_gradient(x, delta)
                else:
                    delta = layers[j].backward(x, delta)
        return delta

    def _forward_layers(self, X: np.ndarray) -> np.ndarray:
        """The forward pass one layer at a time, keeping each layer's input."""
        self._fused = self._run_state = None
        inputs = []
        for layer in self.layers:
            inputs.append(X)
            X = layer.forward(X)
        self._inputs = inputs
        return X

    def _layer_inputs(self, input: np.ndarray) -> list[np.ndarray]:
        if not self._inputs or self._inputs[0] is not input:
            self._forward_layers(input)
        return self._inputs

    def zero_grad(self) -> None:
        if self._chain is not None:
            self._chain.zero_grad()
        else:
            super().zero_grad()

    def _train_step(self, X: np.ndarray, Y: np.ndarray, loss: object, lr: float) -> float | None:
        """A whole plain-SGD step in one Rust call when the chain and ``loss``
        allow it (see ``DenseChain.train_step``); None otherwise."""
        cls = type(self)
        if (
            self._chain is None
            or cls.forward is not Sequential.forward
            or cls.backward_update_gradient is not Sequential.backward_update_gradient
            or cls.zero_grad is not Sequential.zero_grad
        ):
            return None
        cost = self._chain.train_step(X, Y, loss, lr)  # type: ignore[arg-type]
        if cost is not None and (self._inputs or self._fused is not None):
            # Drop the layer inputs kept from an earlier forward pass (the
            # check first: an assignment goes through Module.__setattr__).
            self._inputs, self._fused = [], None
        return cost

    def _fused_backward(self, input: object, delta: object, input_delta: bool) -> object:
        """The fused backward pass; ``_NOT_FUSED`` when the chain cannot take ``input``."""
        if self._chain is None:
            return _NOT_FUSED
        if self._fused is None or self._fused[0] is not input:
            x = self._chain.input(input)
            if x is None:
                return _NOT_FUSED
            self._fused = (input, x, self._chain.forward(x))
        _, x, outputs = self._fused
        return self._chain.backward(x, outputs, delta, input_delta)

    def backward(self, input: np.ndarray, delta: np.ndarray) -> np.ndarray:
        """Updates every layer's gradients and returns d loss / d input, in one pass."""
        fused = self._fused_backward(input, delta, input_delta=True)
        if fused is not _NOT_FUSED:
            return fused  # type: ignore[return-value]
        if self._runs:
            return self._backward_runs(input, delta, input_delta=True)  # type: ignore[return-value]
        for layer, x in zip(
            reversed(self.layers), reversed(self._layer_inputs(input)), strict=True
        ):
            delta = layer.backward(x, delta)
        return delta

    def backward_update_gradient(self, input: np.ndarray, delta: np.ndarray) -> None:
        """Updates every layer's gradients; d loss / d input of the first layer is not computed."""
        if (
            self._fused_backward(input, delta, input_delta=False) is not _NOT_FUSED
            or not self._named
        ):
            return
        if self._runs:
            self._backward_runs(input, delta, input_delta=False)
            return
        layers, inputs = self.layers, self._layer_inputs(input)
        for layer, x in zip(reversed(layers[1:]), reversed(inputs[1:]), strict=True):
            delta = layer.backward(x, delta)
        layers[0].backward_update_gradient(inputs[0], delta)

    def backward_delta(self, input: np.ndarray, delta: np.ndarray) -> np.ndarray:
        for layer, x in zip(
            reversed(self.layers), reversed(self._layer_inputs(input)), strict=True
        ):
            delta = layer.backward_delta(x, delta)
        return delta

    def __len__(self) -> int:
        return len(self._named)

    def __getitem__(self, index: int | str | slice) -> Module:
        if isinstance(index, slice):
            return Sequential(OrderedDict(self._named[index]))
        if isinstance(index, str):
            return dict(self._named)[index]
        return self._named[index][1]

    def __iter__(self):
        return iter(self.layers)

    def __repr__(self) -> str:
        lines = [f"  ({name}): {layer!r}".replace("\n", "\n  ") for name, layer in self._named]
        body = "\n".join(lines)
        return f"{type(self).__name__}(\n{body}\n)  # {self.n_parameters():,} parameters"


Sequentiel = Sequential  # the course's French name


def _runs(layers: list[Module]) -> list[tuple[list[Module], DenseChain | ConvPool | None]]:
    """``layers`` cut into fused runs (maximal dense runs with their
    ``DenseChain``, convolution + max-pooling pairs with their ``ConvPool``)
    and groups of other layers (with None); empty when nothing is fused."""
    runs: list[tuple[list[Module], DenseChain | ConvPool | None]] = []
    i = 0
    while i < len(layers):
        j = i + 1
        pair = ConvPool.of(layers[i : i + 2])
        if pair is not None:
            j = i + 2
            runs.append((layers[i:j], pair))
        elif DenseChain.of(layers[i:j]) is not None:
            while j < len(layers) and DenseChain.of(layers[i : j + 1]) is not None:
                j += 1
            runs.append((layers[i:j], DenseChain.of(layers[i:j])))
        elif runs and runs[-1][1] is None:
            runs[-1][0].append(layers[i])
        else:
            runs.append(([layers[i]], None))
        i = j
    return runs if any(chain is not None for _, chain in runs) else []


_NOT_FUSED = object()


class AutoEncoder(Sequential):
    """An encoder followed by a decoder: ``forward(x) = decode(encode(x))``.

    Args:
        encoder: maps an input to its code (any ``Module``, e.g. a ``Sequential``).
        decoder: maps a code back to the input space.

    The two are its children ``encoder`` and ``decoder`` (parameter names
    ``encoder.0._parameters``..., saved as ``encoder.0.weight``...); training
    goes through the whole chain as for a ``Sequential``.

    Example:
        >>> ae = AutoEncoder(Sequential(Linear(256, 10), TanH()),
        ...                  Sequential(Linear(10, 256), Sigmoid()))
        >>> ae.encode(np.zeros((5, 256))).shape
        (5, 10)
    """

    def __init__(self, encoder: Module, decoder: Module) -> None:
        super().__init__(OrderedDict([("encoder", encoder), ("decoder", decoder)]))
        self.encoder, self.decoder = encoder, decoder

    def encode(self, X: np.ndarray) -> np.ndarray:
        """The code of ``X``: ``encoder.forward(X)``."""
        return self.encoder.forward(X)

    def decode(self, Z: np.ndarray) -> np.ndarray:
        """The reconstruction from a code ``Z``: ``decoder.forward(Z)``."""
        return self.decoder.forward(Z)
