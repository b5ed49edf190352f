"""Data sets of the report: the course's 2-D generator and loaders for USPS, ECG5000, iris, digits.

USPS and ECG5000 ship with the repository (``data/``, see its README). A loader takes a
file or a folder; without one it looks at ``$DIY_NN_DATA``, the source tree's ``data/``
(when diy_nn runs from a clone), the user cache (``$XDG_CACHE_HOME/diy_nn`` or
``~/.cache/diy_nn``), and then downloads the file into that cache, checking its sha256
(``DIY_NN_OFFLINE=1`` turns downloads off; ``DIY_NN_DATA_URL`` names mirrors). A file
found nowhere raises ``FileNotFoundError`` naming every place looked and how to provide
it. The search and the download are in ``diy_nn._datafiles``; importing diy_nn downloads
nothing.

Pixel convention for USPS: the course files hold pixels in ``[0, 2]``; the ESL
``zip.train``/``zip.test`` files hold the same images in ``[-1, 1]`` (course =
ESL + 1, see the data README). ``load_usps`` returns whichever range ``scale``
asks for (``"course"`` [0, 2] by default, ``"unit"`` [0, 1], ``"esl"`` [-1, 1]),
whatever the format of the file.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from ._datafiles import DATA_ENV, DATA_URL_ENV, OFFLINE_ENV, cache_dir, locate

__all__ = [
    "DATA_ENV",
    "DATA_URL_ENV",
    "OFFLINE_ENV",
    "gen_arti",
    "load_usps",
    "load_ecg5000",
    "load_iris",
    "load_digits",
    "data_file",
    "fetch_all",
    "cache_dir",
    "train_test_split",
]

PathLike = str | os.PathLike


# --- the course's 2-D generator -------------------------------------------------------
def gen_arti(
    centerx: float = 1,
    sigma: float = 0.1,
    nbex: int = 1000,
    data_type: int = 0,
    epsilon: float = 0.02,
    rng: None | int | np.random.Generator = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Draws the course's artificial 2-D binary data.

    Args:
        centerx: ``c``, the distance of the Gaussian centres from the axes.
        sigma: the *variance* of each Gaussian (covariance ``diag(sigma, sigma)``).
        nbex: the number of points.
        data_type: 0: two Gaussians, ``(c, c)`` labelled +1 and ``(-c, -c)`` labelled -1;
            1 (XOR): ``(c, c)``, ``(-c, -c)`` are +1, ``(-c, c)``, ``(c, -c)`` are -1;
            2 (checkerboard): uniform on ``[-4, 4]²``, label
            ``2 * ((ceil(x1) + ceil(x2)) mod 2) - 1``.
        epsilon: standard deviation of the Gaussian noise then added to every coordinate.
        rng: None (numpy's default generator, unseeded), a seed or a Generator.

    Returns:
        ``(X, y)``: ``X`` ``(nbex, 2)`` float64, ``y`` ``(nbex,)`` float64 in {-1, +1}, shuffled.
        When ``nbex`` does not split evenly, the first groups get one point more.

    Example:
        >>> X, y = gen_arti(nbex=8, data_type=1, rng=0)
        >>> X.shape, sorted(set(y))
        ((8, 2), [-1.0, 1.0])
    """
    if data_type not in (0, 1, 2):
        raise ValueError(f"gen_arti: data_type must be 0, 1 or 2, got {data_type!r}")
    if int(nbex) != nbex or nbex < 1:
        raise ValueError(f"gen_arti: nbex must be a positive integer, got {nbex!r}")
    if sigma < 0 or epsilon < 0:
        raise ValueError(f"gen_arti: sigma and epsilon must be >= 0, got {sigma}, {epsilon}")
    nbex = int(nbex)
    gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    c = float(centerx)
    if data_type == 2:
        X = gen.uniform(-4, 4, (nbex, 2))
        y = 2.0 * ((np.ceil(X[:, 0]) + np.ceil(X[:, 1])) % 2) - 1
    else:
        if data_type == 0:
            centres, labels = [(c, c), (-c, -c)], [1.0, -1.0]
        else:
            centres, labels = [(c, c), (-c, -c), (-c, c), (c, -c)], [1.0, 1.0, -1.0, -1.0]
        k = len(centres)
        sizes = [nbex // k + (i < nbex % k) for i in range(k)]
        cov = np.diag([sigma, sigma])
        X = np.vstack(
            [
                gen.multivariate_normal(m, cov, n)
                for m, n in zip(centres, sizes, strict=True)
                if n > 0
            ]
        )
        y = np.concatenate([np.full(n, lab) for lab, n in zip(labels, sizes, strict=True)])
    X = X + gen.normal(0.0, epsilon, X.shape)
    order = gen.permutation(nbex)
    return X[order], y[order]


# --- finding files ---------------------------------------------------------------------
def data_file(name: str, path: PathLike | None = None) -> Path:
    """The file of a shipped data set, found or downloaded (see the module docstring).

    Args:
        name: ``"usps_train"``, ``"usps_test"`` or ``"ecg5000"``.
        path: a file (returned as is), a folder holding it (``usps/USPS_train.txt.gz``...),
            or None: ``$DIY_NN_DATA``, the source tree's ``data/``, the cache, a download.

    Raises:
        FileNotFoundError: naming every place looked, every download tried and how to
            provide the file. A ``path`` or ``$DIY_NN_DATA`` that lacks the file is an
            error too (it says whether the folder is missing, empty or without the file).
    """
    return locate(name, path)


def fetch_all(names: Iterable[str] = ("usps_train", "usps_test", "ecg5000")) -> list[Path]:
    """Finds every shipped data set, downloading the missing ones; returns their files.

    An installed package (no clone beside it) fills its cache this way before going offline.
    """
    return [locate(n) for n in names]


def _open_text(path: Path):
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="ascii")
    return open(path, encoding="ascii")


# --- USPS --------------------------------------------------------------------------------
_USPS_SCALES = ("course", "unit", "esl")


def read_usps_file(path: PathLike, fmt: str = "auto") -> tuple[np.ndarray, np.ndarray, str]:
    """Parses a USPS file; returns ``(pixels as stored, labels, format)``.

    The course format has a ``10 256`` header, rows ``label p1 .. p256`` in [0, 2] and
    a final ``-1``; lines with at most 2 tokens are skipped, as the course loader does.
    The ESL format (``zip.train``) has no header and pixels in [-1, 1]. ``fmt="auto"``
    tells them apart by the header, then by negative pixels.
    """
    if fmt not in ("auto", "course", "esl"):
        raise ValueError(f"read_usps_file: fmt must be 'auto', 'course' or 'esl', got {fmt!r}")
    rows, header = [], False
    with _open_text(Path(path)) as fh:
        for i, line in enumerate(fh):
            tokens = line.split()
            if len(tokens) <= 2:
                header = header or (i == 0 and len(tokens) == 2)
                continue
            if len(tokens) != 257:
                raise ValueError(
                    f"{path}, line {i + 1}: expected a label and 256 pixels, "
                    f"got {len(tokens)} values"
                )
            rows.append(tokens)
    if not rows:
        raise ValueError(f"{path}: no USPS rows (label and 256 pixels) found")
    data = np.array(rows, dtype=np.float64)
    labels, pixels = data[:, 0].astype(np.int64), data[:, 1:]
    if fmt == "auto":
        fmt = "course" if header or pixels.min() >= 0 else "esl"
    return pixels, labels, fmt


def load_usps(
    path: PathLike | None = None, split: str = "train", scale: str = "course", fmt: str = "auto"
) -> tuple[np.ndarray, np.ndarray]:
    """Loads the USPS digits (7291 train / 2007 test, 16x16 images, row-major).

    Args:
        path: a USPS file, a folder holding ``usps/USPS_{split}.txt[.gz]`` (or
            ``USPS_{split}.txt[.gz]``, ``[usps/]zip.{split}[.gz]``), or None: ``$DIY_NN_DATA``,
            the clone's ``data/``, the user cache, then a checked download (see ``data_file``).
        split: ``"train"`` or ``"test"``.
        scale: pixel range returned: ``"course"`` [0, 2], ``"unit"`` [0, 1], ``"esl"`` [-1, 1].
        fmt: ``"auto"``, ``"course"`` or ``"esl"``: the format of the file.

    Returns:
        ``(X, y)``: ``X`` ``(N, 256)`` float64, ``y`` ``(N,)`` int64 in 0..9.

    Raises:
        FileNotFoundError: if no file is found or fetched (the message lists where it looked).
    """
    if split not in ("train", "test"):
        raise ValueError(f"load_usps: split must be 'train' or 'test', got {split!r}")
    if scale not in _USPS_SCALES:
        raise ValueError(f"load_usps: scale must be one of {sorted(_USPS_SCALES)}, got {scale!r}")
    file = data_file(f"usps_{split}", path)
    pixels, labels, found = read_usps_file(file, fmt)
    course = pixels if found == "course" else pixels + 1.0
    if scale == "esl":
        return course - 1.0, labels
    return (course / 2.0 if scale == "unit" else course), labels


# --- ECG5000 -----------------------------------------------------------------------------
def load_ecg5000(path: PathLike | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Loads the binary ECG5000 of the TensorFlow autoencoder tutorial (``ecg.csv``).

    Args:
        path: the csv (plain or .gz), a folder holding ``ecg5000/ecg.csv[.gz]`` (or
            ``ecg.csv[.gz]``), or None: ``$DIY_NN_DATA``, the clone's ``data/``, the user
            cache, then a checked download (see ``data_file``).

    Returns:
        ``(X, y)``: ``X`` ``(N, 140)`` float64 beats, ``y`` ``(N,)`` int64, 1 normal, 0 abnormal.
    """
    file = data_file("ecg5000", path)
    data = np.loadtxt(file, delimiter=",", dtype=np.float64, ndmin=2)
    if data.shape[1] != 141:
        raise ValueError(
            f"{file}: expected 141 columns (140 samples and a label), got {data.shape[1]}"
        )
    return data[:, :140], data[:, 140].astype(np.int64)


# --- scikit-learn's bundled sets -------------------------------------------------------
def load_iris() -> tuple[np.ndarray, np.ndarray]:
    """Iris (150 x 4 features, 3 classes), from scikit-learn: ``(X float64, y int64)``."""
    from sklearn import datasets

    bunch = datasets.load_iris()
    return bunch.data.astype(np.float64), bunch.target.astype(np.int64)


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """The 8x8 digits (1797 x 64 pixels in [0, 16], 10 classes), from scikit-learn."""
    from sklearn import datasets

    bunch = datasets.load_digits()
    return bunch.data.astype(np.float64), bunch.target.astype(np.int64)


def train_test_split(
    n: int, test_fraction: float = 0.25, seed: int = 0, stratify: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """A fixed, seeded split of ``range(n)``: returns ``(train_idx, test_idx)``, sorted.

    scikit-learn's ``train_test_split``; with ``stratify`` (labels), each class is split
    in the same proportion.
    """
    from sklearn.model_selection import train_test_split as split

    if not 0 < test_fraction < 1:
        raise ValueError(f"train_test_split: test_fraction must be in (0, 1), got {test_fraction}")
    labels = None if stratify is None else np.asarray(stratify)
    train_idx, test_idx = split(
        np.arange(n), test_size=test_fraction, random_state=seed, stratify=labels
    )
    return np.sort(train_idx), np.sort(test_idx)
