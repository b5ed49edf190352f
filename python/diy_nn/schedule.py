"""Learning-rate schedules: each changes its optimizer's ``eps`` (the learning rate).

``step()`` moves to the next epoch and follows torch's ``torch.optim.lr_scheduler``
sequence of learning rates. A schedule is also a ``fit`` callback: in
``fit(..., callbacks=[schedule])`` it steps at the end of every epoch
(``ReduceLROnPlateau`` on the epoch's ``val_loss``, or ``loss`` without validation data).

Example:
    >>> opt = Adam(net, CELogSoftMax(), eps=1e-2)  # doctest: +SKIP
    >>> fit(opt, X, y, epochs=30, callbacks=[StepLR(opt, step_size=10)])  # doctest: +SKIP
"""

from __future__ import annotations

import math

from ._validation import check_positive_int
from .optim import Optimizer, _check_number
from .training import Callback

__all__ = ["LRScheduler", "StepLR", "ExponentialLR", "CosineAnnealingLR", "ReduceLROnPlateau"]


class LRScheduler(Callback):
    """Base of the epoch-based schedules: ``step()`` sets ``optimizer.eps`` to ``_lr()``.

    Attributes:
        optimizer: the optimizer whose ``eps`` changes.
        base_lr: its ``eps`` when the schedule was made.
        last_epoch: the number of ``step()`` calls so far.
    """

    def __init__(self, opt: Optimizer) -> None:
        if not isinstance(opt, Optimizer):
            raise TypeError(f"{type(self).__name__}: opt must be a diy_nn Optimizer, got {opt!r}")
        self.optimizer = opt
        self.base_lr = float(opt.eps)
        self.last_epoch = 0
        self.stop_training = False

    def set_optimizer(self, opt: Optimizer) -> None:
        if opt is not self.optimizer:
            raise ValueError(
                f"{type(self).__name__}: this schedule drives another optimizer than the one "
                "given to fit"
            )

    def _lr(self) -> float:
        raise NotImplementedError

    def step(self) -> float:
        """Moves to the next epoch; returns the new learning rate."""
        self.last_epoch += 1
        self.optimizer.eps = self._lr()
        return self.optimizer.eps

    def get_last_lr(self) -> float:
        """The learning rate set last (the optimizer's ``eps``)."""
        return self.optimizer.eps

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
        self.step()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(last_epoch={self.last_epoch}, lr={self.optimizer.eps})"


class StepLR(LRScheduler):
    """Multiplies the learning rate by ``gamma`` every ``step_size`` epochs.

    ``lr = base_lr * gamma ** (epoch // step_size)`` (applied as a multiplication at each
    boundary, so a learning rate changed by hand in between is scaled from there).

    Args:
        opt: the optimizer.
        step_size: epochs between two decays (>= 1).
        gamma: the factor (default 0.1), finite and >= 0.
    """

    def __init__(self, opt: Optimizer, step_size: int, gamma: float = 0.1) -> None:
        super().__init__(opt)
        self.step_size = check_positive_int(step_size, "StepLR: step_size")
        self.gamma = _check_number(gamma, "StepLR: gamma", low=0.0)

    def _lr(self) -> float:
        lr = self.optimizer.eps
        return lr * self.gamma if self.last_epoch % self.step_size == 0 else lr


class ExponentialLR(LRScheduler):
    """Multiplies the learning rate by ``gamma`` every epoch: ``base_lr * gamma ** epoch``.

    Args:
        opt: the optimizer.
        gamma: the factor, finite and >= 0.
    """

    def __init__(self, opt: Optimizer, gamma: float) -> None:
        super().__init__(opt)
        self.gamma = _check_number(gamma, "ExponentialLR: gamma", low=0.0)

    def _lr(self) -> float:
        return self.optimizer.eps * self.gamma


class CosineAnnealingLR(LRScheduler):
    """Cosine annealing from ``base_lr`` down to ``eta_min`` over ``T_max`` epochs.

    ``lr = eta_min + (base_lr - eta_min) (1 + cos(pi epoch / T_max)) / 2``; past
    ``T_max`` the cosine goes on (back up, period ``2 T_max``), as torch's.

    Args:
        opt: the optimizer.
        T_max: the half period in epochs (>= 1).
        eta_min: the lowest learning rate (default 0), finite and >= 0.
    """

    def __init__(self, opt: Optimizer, T_max: int, eta_min: float = 0.0) -> None:
        super().__init__(opt)
        self.T_max = check_positive_int(T_max, "CosineAnnealingLR: T_max")
        self.eta_min = _check_number(eta_min, "CosineAnnealingLR: eta_min", low=0.0)

    def _lr(self) -> float:
        cos = math.cos(math.pi * self.last_epoch / self.T_max)
        return self.eta_min + (self.base_lr - self.eta_min) * (1 + cos) / 2


class ReduceLROnPlateau(Callback):
    """Multiplies the learning rate by ``factor`` when a monitored value stops improving.

    ``step(value)``: the value improves when it is below ``best * (1 - threshold)``
    (``threshold_mode="rel"``) or ``best - threshold`` (``"abs"``), above the mirror
    bound in ``mode="max"``. After more than ``patience`` epochs without improvement
    the learning rate becomes ``max(lr * factor, min_lr)`` (a change smaller than
    1e-8 is skipped, as torch's ``eps``) and ``cooldown`` epochs pass before
    counting again. torch's ``ReduceLROnPlateau`` rule.

    Args:
        opt: the optimizer.
        factor: in [0, 1) (default 0.1).
        patience: epochs without improvement tolerated (default 10).
        min_lr: the lowest learning rate (default 0).
        mode: ``"min"`` (a loss) or ``"max"`` (an accuracy).
        threshold: the least relative (or absolute) improvement, >= 0 (default 1e-4).
        threshold_mode: ``"rel"`` or ``"abs"``.
        cooldown: epochs to wait after a reduction (default 0).
        monitor: the key of ``fit``'s epoch logs used as a callback; None:
            ``val_loss`` when present, else ``loss``.
    """

    def __init__(
        self,
        opt: Optimizer,
        factor: float = 0.1,
        patience: int = 10,
        min_lr: float = 0.0,
        mode: str = "min",
        threshold: float = 1e-4,
        threshold_mode: str = "rel",
        cooldown: int = 0,
        monitor: str | None = None,
    ) -> None:
        if not isinstance(opt, Optimizer):
            raise TypeError(f"ReduceLROnPlateau: opt must be a diy_nn Optimizer, got {opt!r}")
        self.optimizer = opt
        self.factor = _check_number(factor, "ReduceLROnPlateau: factor", low=0.0)
        if self.factor >= 1:
            raise ValueError(f"ReduceLROnPlateau: factor must be in [0, 1), got {factor}")
        self.patience = check_positive_int(patience, "ReduceLROnPlateau: patience", minimum=0)
        self.min_lr = _check_number(min_lr, "ReduceLROnPlateau: min_lr", low=0.0)
        if mode not in ("min", "max"):
            raise ValueError(f"ReduceLROnPlateau: mode must be 'min' or 'max', got {mode!r}")
        if threshold_mode not in ("rel", "abs"):
            raise ValueError(
                f"ReduceLROnPlateau: threshold_mode must be 'rel' or 'abs', got {threshold_mode!r}"
            )
        self.mode, self.threshold_mode = mode, threshold_mode
        self.threshold = _check_number(threshold, "ReduceLROnPlateau: threshold", low=0.0)
        self.cooldown = check_positive_int(cooldown, "ReduceLROnPlateau: cooldown", minimum=0)
        self.monitor = monitor
        self.best = math.inf if mode == "min" else -math.inf
        self.num_bad_epochs = 0
        self.cooldown_counter = 0
        self.last_epoch = 0
        self.stop_training = False

    def set_optimizer(self, opt: Optimizer) -> None:
        if opt is not self.optimizer:
            raise ValueError(
                "ReduceLROnPlateau: this schedule drives another optimizer than the one given "
                "to fit"
            )

    def _improves(self, value: float) -> bool:
        rel = self.threshold_mode == "rel"
        if self.mode == "min":
            bound = self.best * (1 - self.threshold) if rel else self.best - self.threshold
            return value < bound
        bound = self.best * (1 + self.threshold) if rel else self.best + self.threshold
        return value > bound

    def step(self, value: float) -> float:
        """Records the epoch's monitored ``value``; returns the learning rate."""
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            and not hasattr(value, "__float__")
        ):
            raise TypeError(f"ReduceLROnPlateau.step: value must be a number, got {value!r}")
        value = float(value)
        self.last_epoch += 1
        if self._improves(value):
            self.best, self.num_bad_epochs = value, 0
        else:
            self.num_bad_epochs += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0
        if self.num_bad_epochs > self.patience:
            old = self.optimizer.eps
            new = max(old * self.factor, self.min_lr)
            if old - new > 1e-8:
                self.optimizer.eps = new
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0
        return self.optimizer.eps

    def get_last_lr(self) -> float:
        return self.optimizer.eps

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
        key = self.monitor or ("val_loss" if "val_loss" in logs else "loss")
        if key not in logs:
            raise KeyError(f"ReduceLROnPlateau: no {key!r} in the epoch's logs {sorted(logs)}")
        self.step(logs[key])
