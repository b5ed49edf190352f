"""The training benchmark's jax implementation: ``jax.jit`` of the whole step.

One compiled function per workload does the forward pass, the summed loss, its
gradient (``jax.grad``) and the update (plain SGD, SGD with momentum or Adam,
torch's rules, written here), with the parameters and optimizer state donated
so that XLA may update them in place. Channels last, as diy_nn
(``NHWC``/``HWIO`` convolutions). jax is a benchmark-only dependency (the
``bench`` extra); without it ``jax_setup`` raises ``ImportError`` and the runner
reports a skip.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np
from training_workloads import ADAM_BETAS, ADAM_EPS, LR, MOMENTUM, Workload


def configure(threads: int) -> None:
    """Before jax is imported: XLA on one thread when asked for one (its documented
    flags); more threads use XLA's own pool, sized from the CPUs the process may run on."""
    if threads == 1:
        flags = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
        os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {flags}".strip()


def _init(w: Workload) -> list[tuple[np.ndarray, np.ndarray]]:
    """Uniform(+-1/sqrt(fan_in)) weights and biases, channels last (as torch's default)."""
    rng = np.random.default_rng(0)
    params = []
    for layer in w.layers:
        kind = layer[0]
        if kind == "linear":
            shape, fan_in = (layer[1], layer[2]), layer[1]
        elif kind in ("conv1d", "conv2d"):
            k, cin, cout = layer[1:4]
            nd = 1 if kind == "conv1d" else 2
            shape, fan_in = (k,) * nd + (cin, cout), k**nd * cin
        else:
            continue
        bound = 1 / np.sqrt(fan_in)
        params.append(
            (
                rng.uniform(-bound, bound, shape).astype(w.dtype),
                rng.uniform(-bound, bound, shape[-1]).astype(w.dtype),
            )
        )
    return params


def _forward(w: Workload) -> Callable[[Any, Any], Any]:
    import jax
    import jax.numpy as jnp
    from jax import lax

    def forward(params: Any, x: Any) -> Any:
        i = 0
        for layer in w.layers:
            kind = layer[0]
            if kind == "linear":
                W, b = params[i]
                i += 1
                x = x @ W + b
            elif kind in ("conv1d", "conv2d"):
                W, b = params[i]
                i += 1
                k, _, _, s, p = layer[1:]
                nd = 1 if kind == "conv1d" else 2
                dims = ("NWC", "WIO", "NWC") if nd == 1 else ("NHWC", "HWIO", "NHWC")
                x = lax.conv_general_dilated(x, W, (s,) * nd, [(p, p)] * nd, dimension_numbers=dims)
                x = x + b
            elif kind == "relu":
                x = jnp.maximum(x, 0)
            elif kind == "tanh":
                x = jnp.tanh(x)
            elif kind == "sigmoid":
                x = jax.nn.sigmoid(x)
            elif kind in ("maxpool1d", "maxpool2d", "avgpool2d"):
                k, s = layer[1:]
                nd = 1 if kind == "maxpool1d" else 2
                window, strides = (1, *(k,) * nd, 1), (1, *(s,) * nd, 1)
                # Python-scalar initial values: jax then knows the max and sum monoids
                # and can differentiate the windows.
                if kind == "avgpool2d":
                    x = lax.reduce_window(x, 0.0, lax.add, window, strides, "VALID") / (k * k)
                else:
                    x = lax.reduce_window(x, -jnp.inf, lax.max, window, strides, "VALID")
            elif kind == "flatten":
                x = x.reshape(x.shape[0], -1)
        return x

    return forward


def _loss(kind: str) -> Callable[[Any, Any], Any]:
    import jax
    import jax.numpy as jnp

    def ce(z: Any, y: Any) -> Any:
        picked = jnp.take_along_axis(z, y[:, None], axis=1)[:, 0]
        return jnp.sum(jax.nn.logsumexp(z, axis=1) - picked)

    def bce(p: Any, y: Any) -> Any:  # torch clamps the logs at -100
        lp, lq = jnp.maximum(jnp.log(p), -100), jnp.maximum(jnp.log1p(-p), -100)
        return -jnp.sum(y * lp + (1 - y) * lq)

    def mae(yhat: Any, y: Any) -> Any:
        return jnp.sum(jnp.abs(yhat - y))

    return {"ce": ce, "bce": bce, "mae": mae}[kind]


def _update(rule: str, dtype: Any) -> tuple[Callable[..., Any], Callable[[Any], Any]]:
    """(update(params, grads, state) -> (params, state), init_state(params))."""
    import jax
    import jax.numpy as jnp

    tree = jax.tree_util.tree_map
    b1, b2 = ADAM_BETAS

    if rule == "momentum":

        def momentum(params: Any, grads: Any, v: Any) -> Any:
            v = tree(lambda vi, g: MOMENTUM * vi + g, v, grads)
            return tree(lambda p, vi: p - LR * vi, params, v), v

        return momentum, lambda params: tree(jnp.zeros_like, params)

    if rule == "adam":

        def adam(params: Any, grads: Any, state: Any) -> Any:
            t, m, v = state
            t = t + 1
            c1, c2 = 1 - jnp.power(dtype(b1), t), 1 - jnp.power(dtype(b2), t)
            m = tree(lambda mi, g: b1 * mi + (1 - b1) * g, m, grads)
            v = tree(lambda vi, g: b2 * vi + (1 - b2) * g * g, v, grads)
            new = tree(
                lambda p, mi, vi: p - LR * (mi / c1) / (jnp.sqrt(vi / c2) + ADAM_EPS), params, m, v
            )
            return new, (t, m, v)

        def adam_init(params: Any) -> Any:
            return (
                jnp.zeros((), dtype),
                tree(jnp.zeros_like, params),
                tree(jnp.zeros_like, params),
            )

        return adam, adam_init

    def sgd(params: Any, grads: Any, state: Any) -> Any:
        return tree(lambda p, g: p - LR * g, params, grads), state

    return sgd, lambda params: ()


def jax_setup(w: Workload, x: np.ndarray, y: np.ndarray) -> Callable[[], None]:
    import jax

    # 64-bit types on (float64 workloads, int64 labels); every array's dtype is explicit.
    jax.config.update("jax_enable_x64", True)
    forward = _forward(w)
    params: Any = jax.device_put(_init(w))
    b = w.batch
    xs = [jax.device_put(x[i : i + b]) for i in range(0, len(x), b)]
    if w.mode == "infer":
        infer_step = jax.jit(forward)

        def infer() -> None:
            for xb in xs:  # one result at a time, as a caller of a batch-1 forward waits
                infer_step(params, xb).block_until_ready()

        return infer
    ys = [jax.device_put(y[i : i + b]) for i in range(0, len(y), b)]
    loss = _loss(w.loss)
    grad = jax.grad(lambda p, xb, yb: loss(forward(p, xb), yb))
    update, init_state = _update(w.optimizer, np.dtype(w.dtype).type)

    def step(p: Any, state: Any, xb: Any, yb: Any) -> Any:
        return update(p, grad(p, xb, yb), state)

    jit_step = jax.jit(step, donate_argnums=(0, 1))
    state: Any = init_state(params)

    def epoch() -> None:
        nonlocal params, state
        for xb, yb in zip(xs, ys, strict=True):
            params, state = jit_step(params, state, xb, yb)
        jax.block_until_ready(params)

    return epoch
