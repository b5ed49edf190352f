"""7. Clustering USPS: KMeans(10) on pixels vs on the 10-d codes of a 256-32-16-10 autoencoder."""

from __future__ import annotations

from .. import plotting
from ..activation import Sigmoid, TanH
from ..container import AutoEncoder
from ..loss import MSELoss
from ..optim import Adam
from . import Context, Metric, Result, register
from ._common import fit, mlp, subsample, usps

MASK = 0.3


@register(
    "clustering",
    7,
    "KMeans(10) on USPS pixels vs on 10-d autoencoder codes; t-SNE",
    needs=("usps",),
)
def run(ctx: Context) -> Result:
    from sklearn.cluster import KMeans
    from sklearn.manifold import TSNE
    from sklearn.metrics import adjusted_rand_score

    Xtr, _ = usps(ctx, "train")
    Xte, yte = usps(ctx, "test")
    if ctx.quick:
        Xtr = Xtr[subsample(ctx, len(Xtr), 1000)]
    g = ctx.rng(700)
    net = AutoEncoder(
        mlp([256, 32, 16, 10], [TanH] * 3, g), mlp([10, 16, 32, 256], [TanH, TanH, Sigmoid], g)
    )
    opt = Adam(net, MSELoss(), eps=2e-3)
    # masking noise (30% of the input pixels zeroed, a fresh mask every 25 epochs), clean
    # targets: a denoising AE whose codes cluster a little more steadily than a plain one
    hist: list[float] = []
    rounds, per_round = ctx.budget(8, 1), ctx.budget(25, 2)
    for r in range(rounds):
        if r == rounds - 2:
            opt.eps = 3e-4  # settle: a smaller step for the last two rounds
        masked = Xtr * (g.random(Xtr.shape) >= MASK)
        hist += fit(ctx, opt, masked, Xtr, per_round, 64, f"clustering AE {r + 1}/{rounds}", r)

    codes = net.encode(Xte)
    n_init = ctx.budget(10, 2)
    seed = int(ctx.rng(701).integers(1 << 30))
    # clusters learnt on the train split, then assigned on the test split
    km_pix = KMeans(10, n_init=n_init, random_state=seed).fit(Xtr).predict(Xte)
    km_code = KMeans(10, n_init=n_init, random_state=seed).fit(net.encode(Xtr)).predict(codes)
    ari_pix = float(adjusted_rand_score(yte, km_pix))
    ari_code = float(adjusted_rand_score(yte, km_code))

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
            {"train MSE": hist}, ctx.figure("loss.png"), title="256-32-16-10 autoencoder (MSE)"
        ),
    ]
    metrics = [
        Metric("ARI, KMeans on pixels (test)", ari_pix, "pictures only"),
        Metric("ARI, KMeans on codes (test)", ari_code, "pictures only", round(ari_pix, 4), ">"),
    ]
    notes = (
        "AE trained (MSE, 30% masking noise on the inputs) on the train split; KMeans "
        "(10 clusters) fitted on the train split, ARI of its assignments of the 2007 test "
        f"digits; t-SNE on {len(sub)} of them"
    )
    return Result(metrics, figs, notes)
