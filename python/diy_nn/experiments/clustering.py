"""7. Clustering USPS: KMeans(10) on pixels vs on the 10-d codes of a 256-32-16-10 autoencoder."""

from __future__ import annotations

import numpy as np

from .. import plotting
from ..activation import Sigmoid, TanH
from ..container import AutoEncoder
from ..loss import MSELoss
from ..optim import Adam
from ..schedule import StepLR
from ..training import fit
from . import Context, Metric, Result
from ._common import fit_options, mlp, on_usps, subsample

MASK = 0.5  # fraction of the input pixels zeroed while training (clean targets)
N_AUTOENCODERS = 4  # candidates trained from different initialisations


def _unit_rows(a: np.ndarray) -> np.ndarray:
    """Each row divided by its Euclidean norm (KMeans on the direction of a code)."""
    return a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)


def _train_autoencoder(ctx: Context, Xtr: np.ndarray, k: int, n: int) -> tuple[AutoEncoder, list]:
    """A 256-32-16-10 TanH / 10-16-32-256 TanH-Sigmoid AE trained on masked inputs (MSE)."""
    g = ctx.rng(700 + 10 * k)
    net = AutoEncoder(
        mlp([256, 32, 16, 10], [TanH] * 3, g), mlp([10, 16, 32, 256], [TanH, TanH, Sigmoid], g)
    )
    opt = Adam(net, MSELoss(), eps=2e-3)
    # masking noise (a fresh mask every round of epochs), clean targets: a denoising AE,
    # whose codes cluster better than a plain one's
    hist: list[float] = []
    rounds, per_round = ctx.budget(8, 1), ctx.budget(25, 2)
    # settle: a step 0.15x smaller (3e-4) for the last two rounds; the schedule counts
    # the epochs across the rounds' fits
    settle = [StepLR(opt, (rounds - 2) * per_round, gamma=0.15)] if rounds > 2 else []
    for r in range(rounds):
        masked = Xtr * (g.random(Xtr.shape) >= MASK)
        desc = f"clustering AE {k + 1}/{n}, round {r + 1}/{rounds}"
        opts = fit_options(ctx, desc, 10 * k + r)
        hist += fit(opt, masked, Xtr, per_round, 64, callbacks=settle, **opts)["loss"]
    net.eval()
    return net, hist


@on_usps("clustering", 7, "KMeans(10) on USPS pixels vs on 10-d autoencoder codes; t-SNE")
def run(ctx: Context, Xtr: np.ndarray, ytr: np.ndarray, Xte: np.ndarray, yte: np.ndarray) -> Result:
    from sklearn.cluster import KMeans
    from sklearn.manifold import TSNE
    from sklearn.metrics import adjusted_rand_score

    n_init = ctx.budget(10, 2)
    seed = int(ctx.rng(701).integers(1 << 30))

    def kmeans(feats: np.ndarray) -> KMeans:
        return KMeans(10, n_init=n_init, random_state=seed).fit(feats)

    # clusters learnt on the train split, then assigned on the test split
    km = kmeans(Xtr)
    ari_pix_tr = float(adjusted_rand_score(ytr, km.labels_))
    km_pix = km.predict(Xte)
    ari_pix = float(adjusted_rand_score(yte, km_pix))

    # Model selection on the training split only: several AEs (different initialisations),
    # KMeans on their raw or unit-length codes; the pair whose train clusters agree best
    # with the train labels (adjusted Rand index) is kept, then scored once on the test split.
    n_ae = ctx.budget(N_AUTOENCODERS, 1)
    candidates = []
    for k in range(n_ae):
        net, hist = _train_autoencoder(ctx, Xtr, k, n_ae)
        codes_tr, codes_te = net.encode(Xtr), net.encode(Xte)
        for form, transform in (("raw", lambda a: a), ("unit-length", _unit_rows)):
            km = kmeans(transform(codes_tr))
            ari_tr = float(adjusted_rand_score(ytr, km.labels_))
            pred = km.predict(transform(codes_te))
            ari_te = float(adjusted_rand_score(yte, pred))
            candidates.append((ari_tr, k, form, codes_te, pred, ari_te, hist))
    best = max(candidates, key=lambda c: c[0])
    ari_code_tr, best_k, best_form, codes, km_code, ari_code, hist = best
    mean_te = float(np.mean([c[5] for c in candidates]))

    sub = subsample(ctx, len(Xte), ctx.budget(1000, 200), 7)
    perplexity = min(30.0, (len(sub) - 1) / 3)
    panels = []
    for name, feats, clusters, ari in (
        ("pixels", Xte, km_pix, ari_pix),
        ("10-d codes", codes, km_code, ari_code),
    ):
        emb = TSNE(2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(
            feats[sub]
        )
        panels.append((emb, yte[sub], f"t-SNE of {name}, true digits"))
        panels.append((emb, clusters[sub], f"KMeans on {name} (ARI {ari:.3f})"))
    figs = [
        plotting.plot_embeddings(panels[:2], ctx.figure("tsne_pixels.png")),
        plotting.plot_embeddings(panels[2:], ctx.figure("tsne_codes.png")),
        plotting.plot_curves(
            {"train MSE (masked inputs)": hist},
            ctx.figure("loss.png"),
            title="256-32-16-10 autoencoder kept (MSE)",
        ),
    ]
    metrics = [
        Metric("ARI, KMeans on pixels (test)", ari_pix, "pictures only"),
        Metric("ARI, KMeans on codes (test)", ari_code, "pictures only", round(ari_pix, 4), ">"),
        Metric("ARI, KMeans on pixels (train)", ari_pix_tr),
        Metric("ARI, KMeans on codes (train, the selection score)", ari_code_tr),
        Metric(f"ARI on codes (test), mean of all {len(candidates)} candidates", mean_te),
    ]
    notes = (
        f"{n_ae} AEs trained (MSE, {MASK:.0%} masking noise on the inputs, 200 epochs) on the "
        "train split; KMeans (10 clusters) fitted on the train split on pixels, and on each "
        "AE's raw and unit-length codes; the codes kept (AE "
        f"{best_k + 1}, {best_form}) are those whose train clusters score the best train ARI; "
        "ARI of the assignments of the 2007 test digits; t-SNE on "
        f"{len(sub)} of them"
    )
    return Result(metrics, figs, notes)
