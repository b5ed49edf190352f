"""4. USPS autoencoder 256-100-10 / 10-100-256 with BCE, both initialisations; 5. denoising."""

from __future__ import annotations

import numpy as np

from .. import plotting
from ..activation import Sigmoid, TanH
from ..container import AutoEncoder
from ..loss import BCELoss
from ..optim import Adam
from ..training import evaluate, fit
from . import Context, Metric, Result, register
from ._common import first_of_each_digit, fit_options, mlp, on_usps, psnr, usps_splits

SIZES_ENC = [256, 100, 10]
SIZES_DEC = [10, 100, 256]
WIDE_ENC = [256, 128, 64]


def build_autoencoder(
    rng: np.random.Generator, init: str = "uniform", sizes: list[int] | None = None
) -> AutoEncoder:
    """The report's AE: encoder 256-100-10 (TanH), decoder 10-100-256 (TanH, Sigmoid out).

    ``sizes`` (encoder widths, e.g. ``[256, 128, 64]``) builds the same shape, mirrored.
    """
    enc = list(sizes or SIZES_ENC)
    return AutoEncoder(
        mlp(enc, [TanH, TanH], rng, init),
        mlp(enc[::-1], [TanH, Sigmoid], rng, init),
    )


def train_autoencoder(
    ctx: Context,
    X_in: np.ndarray,
    X_target: np.ndarray,
    init: str,
    desc: str,
    offset: int,
    sizes: list[int] | None = None,
) -> tuple[AutoEncoder, list[float]]:
    """Trains one AE ``X_in -> X_target`` with the experiment's settings (lr, epochs,
    batch_size); returns it in eval mode and its training BCE per pixel, by epoch."""
    net = build_autoencoder(ctx.rng(300 + offset), init, sizes)
    opt = Adam(net, BCELoss(), eps=float(ctx.setting("lr")))
    epochs, batch = ctx.budget_setting("epochs", 2), int(ctx.setting("batch_size"))
    hist = fit(opt, X_in, X_target, epochs, batch, **fit_options(ctx, desc, offset))
    net.eval()
    return net, [h / X_in.shape[1] for h in hist["loss"]]  # per pixel


@register(
    "autoencoder",
    4,
    "USPS autoencoder 256-100-10-100-256, BCE: 'uniform' vs 'rand' init",
    needs=("usps",),
)
def run_autoencoder(ctx: Context) -> Result:
    code = int(ctx.setting("code_size"))
    if code < 1:  # checked before any data is read
        raise ValueError(f"autoencoder: code_size must be at least 1, got {code}")
    Xtr, _, Xte, yte = usps_splits(ctx)
    show = first_of_each_digit(yte)
    rows, titles, curves, metrics = [Xte[show]], ["original"], {}, []
    sizes = [*SIZES_ENC[:-1], code]
    for i, init in enumerate(("uniform", "rand")):
        net, hist = train_autoencoder(ctx, Xtr, Xtr, init, f"AE {init}", i, sizes)
        rec = net.forward(Xte)
        bce = evaluate(net, BCELoss(), Xte, Xte, batch_size=2048)["loss"] / Xte.shape[1]
        rows.append(rec[show])
        titles.append(f"init {init}")
        curves[f"init {init} (train)"] = hist
        metrics += [
            Metric(f"test BCE per pixel, init '{init}'", bce, "pictures only"),
            Metric(f"test PSNR (dB), init '{init}'", psnr(Xte, rec), "pictures only"),
        ]
    figs = [
        plotting.plot_image_grid(
            rows,
            ctx.figure("reconstructions.png"),
            titles,
            title=f"USPS test digits through a {code}-d code",
            vmin=0,
            vmax=1,
        ),
        plotting.plot_curves(
            curves,
            ctx.figure("loss.png"),
            ylabel="BCE per pixel",
            title="autoencoder training loss (Adam)",
        ),
    ]
    return Result(
        metrics,
        figs,
        f"encoder 256-100-{code}; pixels scaled to [0, 1]; Adam lr {ctx.setting('lr')}, "
        f"batch {ctx.setting('batch_size')}; "
        "'uniform' = U(±1/sqrt(fan_in)), 'rand' = 2*(rand-0.5)",
    )


@on_usps("denoising", 5, "USPS denoising autoencoder at noise 0.2, 0.5, 1.0: PSNR before/after")
def run_denoising(
    ctx: Context, Xtr: np.ndarray, _ytr: np.ndarray, Xte: np.ndarray, yte: np.ndarray
) -> Result:
    show = first_of_each_digit(yte)
    result = Result()
    rows, titles = [Xte[show]], ["clean"]
    for i, noise in enumerate((0.2, 0.5, 1.0)):
        gen = ctx.rng(400 + i)
        noisy_tr = np.clip(Xtr + noise * gen.standard_normal(Xtr.shape), 0, 1)
        noisy_te = np.clip(Xte + noise * gen.standard_normal(Xte.shape), 0, 1)
        before = psnr(Xte, noisy_te)
        result.metrics.append(Metric(f"noise {noise}: test PSNR noisy (dB)", before, "pictures"))
        rows.append(noisy_te[show])
        titles.append(f"noise {noise}")
        for j, (sizes, code) in enumerate(((SIZES_ENC, 10), (WIDE_ENC, WIDE_ENC[-1]))):
            net, _ = train_autoencoder(
                ctx, noisy_tr, Xtr, "uniform", f"denoise {noise} {code}-d", 10 + 2 * i + j, sizes
            )
            rec = net.forward(noisy_te)
            rows.append(rec[show])
            titles.append(f"{code}-d code")
            wide = code != 10
            result.metrics.append(
                Metric(
                    f"noise {noise}: test PSNR denoised, {code}-d code (dB)",
                    psnr(Xte, rec),
                    "readable digits",
                    round(before, 4) if wide else None,
                    ">" if wide else "",
                )
            )
    result.figures.append(
        plotting.plot_image_grid(
            rows,
            ctx.figure("denoising.png"),
            titles,
            vmin=0,
            vmax=1,
            title="denoising autoencoders (10-d and 64-d codes), USPS test digits",
        )
    )
    result.notes = (
        "x_noisy = clip(x + noise * N(0, 1), 0, 1) with x in [0, 1]; one AE per level and code "
        "size, trained noisy -> clean on the train split, PSNR on the test split. The report's "
        "10-d code (256-100-10) caps the PSNR near that of its clean reconstructions (~15 dB), "
        "below noisy-0.2 inputs; the 256-128-64 AE (64-d code) is the one held to the target"
    )
    return result
