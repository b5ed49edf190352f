"""Figures of the experiments, saved as PNG with matplotlib's Agg backend.

matplotlib is imported on first use, so ``import diy_nn`` stays light. Every
function draws one figure, writes it to ``path`` (folders created) and returns
the path.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "plot_decision_boundary",
    "plot_image_grid",
    "plot_confusion_matrix",
    "plot_curves",
    "plot_histograms",
    "plot_embeddings",
    "plot_signals",
    "plot_regression",
    "confusion_matrix",
]


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: str | Path) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    _plt().close(fig)
    return out


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts ``cm[true, predicted]``, shape ``(n_classes, n_classes)``."""
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)), 1)
    return cm


def plot_decision_boundary(
    predict: Callable[[np.ndarray], np.ndarray],
    X: np.ndarray,
    y: np.ndarray,
    path: str | Path,
    title: str = "",
    step: int = 200,
) -> Path:
    """Colours the plane by ``predict(grid)`` (scores; the boundary is at 0) and shows the points.

    ``predict`` maps ``(n, 2)`` points to ``(n,)`` (or ``(n, 1)``) scores whose sign is the class.
    """
    plt = _plt()
    pad = 0.5
    x0, x1 = X[:, 0].min() - pad, X[:, 0].max() + pad
    y0, y1 = X[:, 1].min() - pad, X[:, 1].max() + pad
    gx, gy = np.meshgrid(np.linspace(x0, x1, step), np.linspace(y0, y1, step))
    scores = np.asarray(predict(np.c_[gx.ravel(), gy.ravel()])).reshape(gx.shape)
    fig, ax = plt.subplots(figsize=(4.5, 4.2))
    ax.contourf(gx, gy, np.sign(scores), levels=[-2, 0, 2], colors=["#f4c7c3", "#c6dbef"])
    ax.contour(gx, gy, scores, levels=[0], colors="k", linewidths=1)
    for lab, colour, marker in ((-1, "#d62728", "x"), (1, "#1f77b4", "o")):
        pts = X[np.asarray(y).ravel() == lab]
        ax.scatter(pts[:, 0], pts[:, 1], s=6, c=colour, marker=marker, label=f"{lab:+d}")
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_title(title, fontsize=9)
    ax.legend(loc="upper right", fontsize=7)
    return _save(fig, path)


def plot_image_grid(
    rows: Sequence[np.ndarray],
    path: str | Path,
    row_titles: Sequence[str] | None = None,
    shape: tuple[int, int] = (16, 16),
    title: str = "",
    vmin: float | None = None,
    vmax: float | None = None,
) -> Path:
    """One row of images per array in ``rows`` (each ``(n, prod(shape))``), grey scale."""
    plt = _plt()
    n_rows, n_cols = len(rows), max(len(r) for r in rows)
    fig, axes = plt.subplots(
        n_rows, n_cols, figsize=(0.9 * n_cols + 1.2, 0.95 * n_rows + 0.4), squeeze=False
    )
    for i, images in enumerate(rows):
        for j in range(n_cols):
            ax = axes[i][j]
            ax.set_xticks([])
            ax.set_yticks([])
            if j < len(images):
                ax.imshow(np.asarray(images[j]).reshape(shape), cmap="gray_r", vmin=vmin, vmax=vmax)
            else:
                ax.axis("off")
        if row_titles is not None:
            axes[i][0].set_ylabel(row_titles[i], fontsize=7, rotation=0, ha="right", va="center")
    if title:
        fig.suptitle(title, fontsize=9)
    return _save(fig, path)


def plot_confusion_matrix(
    cm: np.ndarray, path: str | Path, labels: Sequence[str] | None = None, title: str = ""
) -> Path:
    """Confusion matrix ``cm[true, predicted]`` with the counts written in the cells."""
    plt = _plt()
    k = cm.shape[0]
    labels = list(labels) if labels is not None else [str(i) for i in range(k)]
    fig, ax = plt.subplots(figsize=(0.45 * k + 2.2, 0.45 * k + 1.8))
    ax.imshow(cm, cmap="Blues")
    threshold = cm.max() / 2 if cm.size else 0
    for i in range(k):
        for j in range(k):
            colour = "white" if cm[i, j] > threshold else "black"
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=7, color=colour)
    ax.set_xticks(range(k), labels, fontsize=7)
    ax.set_yticks(range(k), labels, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    return _save(fig, path)


def plot_curves(
    curves: Mapping[str, Sequence[float]],
    path: str | Path,
    title: str = "",
    xlabel: str = "epoch",
    ylabel: str = "loss",
    logy: bool = False,
) -> Path:
    """Line plot of named series (e.g. train and validation loss per epoch)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 3.4))
    for name, values in curves.items():
        ax.plot(np.arange(1, len(values) + 1), values, label=name)
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_histograms(
    samples: Mapping[str, np.ndarray],
    path: str | Path,
    threshold: float | None = None,
    title: str = "",
    xlabel: str = "",
    bins: int = 50,
) -> Path:
    """Overlaid histograms of named samples, with an optional vertical threshold line."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 3.4))
    values = [np.asarray(v).ravel() for v in samples.values()]
    edges = np.histogram_bin_edges(np.concatenate(values), bins=bins)
    for name, v in zip(samples, values, strict=True):
        ax.hist(v, bins=edges, alpha=0.55, label=name)
    if threshold is not None:
        ax.axvline(threshold, color="k", linestyle="--", label=f"threshold {threshold:.4g}")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("count")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    return _save(fig, path)


def plot_embeddings(
    panels: Sequence[tuple[np.ndarray, np.ndarray, str]], path: str | Path, title: str = ""
) -> Path:
    """Side-by-side 2-D scatter plots ``(points (n, 2), labels (n,), title)`` coloured by label."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4), squeeze=False)
    for ax, (pts, labels, sub) in zip(axes[0], panels, strict=True):
        sc = ax.scatter(pts[:, 0], pts[:, 1], c=labels, cmap="tab10", s=4, vmin=-0.5, vmax=9.5)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(sub, fontsize=9)
    fig.colorbar(sc, ax=axes[0].tolist(), ticks=range(10), shrink=0.8)
    if title:
        fig.suptitle(title, fontsize=9)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out


def plot_signals(
    panels: Sequence[tuple[str, Mapping[str, np.ndarray]]], path: str | Path, title: str = ""
) -> Path:
    """One panel per ``(title, {name: 1-D signal})``, e.g. a beat and its reconstruction."""
    plt = _plt()
    n = len(panels)
    cols = min(n, 4)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.4 * rows), squeeze=False)
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    for ax, (sub, series) in zip(axes.ravel(), panels, strict=False):
        for name, sig in series.items():
            ax.plot(np.asarray(sig), label=name, linewidth=1)
        ax.set_title(sub, fontsize=8)
        ax.tick_params(labelsize=6)
        ax.legend(fontsize=6)
    if title:
        fig.suptitle(title, fontsize=9)
    return _save(fig, path)


def plot_regression(
    x: np.ndarray,
    y: np.ndarray,
    lines: Mapping[str, tuple[float, float]],
    path: str | Path,
    title: str = "",
) -> Path:
    """Scatter of ``(x, y)`` with lines ``name: (slope, intercept)``."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 3.6))
    ax.scatter(x, y, s=10, c="grey", label="data")
    grid = np.linspace(np.min(x), np.max(x), 10)
    styles = ["-", "--", ":", "-."]
    for i, (name, (slope, intercept)) in enumerate(lines.items()):
        ax.plot(grid, slope * grid + intercept, styles[i % 4], linewidth=2, label=name)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    return _save(fig, path)
