"""The 2-D generator and the data loaders (small files built in tmp_path, real ones if present)."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import pytest
from diy_nn import data

REPO = Path(__file__).resolve().parents[1]


def _real_data_dir() -> Path | None:
    for cand in (os.environ.get(data.DATA_ENV), REPO.parent / "shared" / "data"):
        if cand and (Path(cand) / "usps").is_dir():
            return Path(cand)
    return None


# --- gen_arti ------------------------------------------------------------------------
@pytest.mark.parametrize("data_type", [0, 1, 2])
def test_gen_arti_shapes_and_labels(data_type):
    X, y = data.gen_arti(nbex=400, data_type=data_type, rng=0)
    assert X.shape == (400, 2) and y.shape == (400,)
    assert set(np.unique(y)) == {-1.0, 1.0}


def test_gen_arti_type0_centres():
    X, y = data.gen_arti(centerx=2, sigma=0.01, nbex=200, data_type=0, epsilon=0, rng=1)
    assert np.sum(y == 1) == 100
    np.testing.assert_allclose(X[y == 1].mean(0), [2, 2], atol=0.05)
    np.testing.assert_allclose(X[y == -1].mean(0), [-2, -2], atol=0.05)
    # sigma is a variance: std = sqrt(0.01) = 0.1
    assert abs(X[y == 1].std() - 0.1) < 0.02


def test_gen_arti_xor_quadrants():
    X, y = data.gen_arti(centerx=1, sigma=0.01, nbex=400, data_type=1, epsilon=0, rng=2)
    assert np.sum(y == 1) == 200
    np.testing.assert_array_equal(np.sign(X[:, 0] * X[:, 1]), y)


def test_gen_arti_checkerboard_rule_and_noise():
    X, y = data.gen_arti(nbex=2000, data_type=2, epsilon=0, rng=3)
    assert X.min() >= -4 and X.max() <= 4
    expected = 2 * ((np.ceil(X[:, 0]) + np.ceil(X[:, 1])) % 2) - 1
    np.testing.assert_array_equal(y, expected)
    Xn, yn = data.gen_arti(nbex=2000, data_type=2, epsilon=0.5, rng=3)
    np.testing.assert_array_equal(yn, y)  # the label is drawn before the noise
    assert 0.4 < np.std(Xn - X) < 0.6


def test_gen_arti_seeded_and_shuffled():
    a = data.gen_arti(nbex=100, rng=5)
    b = data.gen_arti(nbex=100, rng=5)
    np.testing.assert_array_equal(a[0], b[0])
    assert 0 < np.sum(np.diff(a[1]) != 0)  # shuffled, not sorted by class
    assert np.sum(np.diff(a[1]) != 0) > 10


def test_gen_arti_bad_type():
    with pytest.raises(ValueError, match="data_type"):
        data.gen_arti(data_type=3)


# --- USPS ------------------------------------------------------------------------------
def _usps_rows(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    gen = np.random.default_rng(seed)
    pixels = np.round(gen.uniform(0, 2, (n, 256)), 3)
    pixels[:, :10] = 0.0
    pixels[:, 10] = 2.0
    return pixels, gen.integers(0, 10, n)


def _fmt(v: float) -> str:
    return f"{v:.4f}".rstrip("0").rstrip(".") or "0"


def _write_course(path: Path, pixels: np.ndarray, labels: np.ndarray) -> None:
    lines = ["10 256"]
    pairs = zip(labels, pixels, strict=True)
    lines += [" ".join([str(lab)] + [_fmt(v) for v in row]) for lab, row in pairs]
    lines.append("-1")
    text = "\n".join(lines) + "\n"
    if path.suffix == ".gz":
        with gzip.open(path, "wt") as fh:
            fh.write(text)
    else:
        path.write_text(text)


def _write_esl(path: Path, pixels: np.ndarray, labels: np.ndarray) -> None:
    pairs = zip(labels, pixels, strict=True)
    lines = [" ".join([f"{lab:.4f}"] + [f"{v - 1:.3f}" for v in row]) for lab, row in pairs]
    text = "\n".join(lines) + "\n"
    if path.suffix == ".gz":
        with gzip.open(path, "wt") as fh:
            fh.write(text)
    else:
        path.write_text(text)


@pytest.mark.parametrize("name", ["USPS_train.txt", "USPS_train.txt.gz"])
def test_load_usps_course_format(tmp_path, name):
    pixels, labels = _usps_rows(7)
    _write_course(tmp_path / name, pixels, labels)
    X, y = data.load_usps(tmp_path / name)
    assert X.shape == (7, 256) and X.dtype == np.float64 and y.dtype == np.int64
    np.testing.assert_allclose(X, pixels, atol=1e-9)
    np.testing.assert_array_equal(y, labels)
    Xu, _ = data.load_usps(tmp_path / name, scale="unit")
    np.testing.assert_allclose(Xu, pixels / 2, atol=1e-9)
    Xe, _ = data.load_usps(tmp_path / name, scale="esl")
    np.testing.assert_allclose(Xe, pixels - 1, atol=1e-9)


@pytest.mark.parametrize("name", ["zip.test", "zip.test.gz"])
def test_load_usps_esl_format(tmp_path, name):
    pixels, labels = _usps_rows(5, seed=1)
    (tmp_path / "usps").mkdir()
    _write_esl(tmp_path / "usps" / name, pixels, labels)
    X, y = data.load_usps(tmp_path, split="test")  # found in the folder
    np.testing.assert_allclose(X, pixels, atol=1e-9)  # converted to the course's [0, 2]
    np.testing.assert_array_equal(y, labels)
    Xe, _ = data.load_usps(tmp_path, split="test", scale="esl")
    np.testing.assert_allclose(Xe, pixels - 1, atol=1e-9)


def test_load_usps_from_env_folder(tmp_path, monkeypatch):
    pixels, labels = _usps_rows(3)
    (tmp_path / "usps").mkdir()
    _write_course(tmp_path / "usps" / "USPS_test.txt.gz", pixels, labels)
    monkeypatch.setenv(data.DATA_ENV, str(tmp_path))
    X, y = data.load_usps(split="test")
    assert X.shape == (3, 256)


def test_load_usps_missing_names_file_and_places(tmp_path, monkeypatch):
    monkeypatch.delenv(data.DATA_ENV, raising=False)
    with pytest.raises(FileNotFoundError) as err:
        data.load_usps(tmp_path, split="train")
    msg = str(err.value)
    assert "USPS_train.txt.gz" in msg and str(tmp_path / "usps" / "USPS_train.txt.gz") in msg
    assert str(tmp_path / "zip.train") in msg and "DIY_NN_DATA" in msg
    with pytest.raises(FileNotFoundError, match="DIY_NN_DATA"):
        data.load_usps()
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        data.load_usps(tmp_path / "nope.txt")


def test_load_usps_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="split"):
        data.load_usps(tmp_path, split="valid")
    with pytest.raises(ValueError, match="scale"):
        data.load_usps(tmp_path, scale="bytes")
    bad = tmp_path / "USPS_train.txt"
    bad.write_text("10 256\n1 2 3 4\n")
    with pytest.raises(ValueError, match="256 pixels"):
        data.load_usps(bad)


# --- ECG5000 ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["ecg.csv", "ecg.csv.gz"])
def test_load_ecg5000(tmp_path, name):
    gen = np.random.default_rng(0)
    beats = gen.normal(size=(6, 140))
    labels = np.array([1, 0, 1, 1, 0, 0])
    pairs = zip(beats, labels, strict=True)
    text = "\n".join(",".join([f"{v:.8g}" for v in row] + [f"{lab:.1f}"]) for row, lab in pairs)
    (tmp_path / "ecg5000").mkdir()
    path = tmp_path / "ecg5000" / name
    if name.endswith(".gz"):
        with gzip.open(path, "wt") as fh:
            fh.write(text + "\n")
    else:
        path.write_text(text + "\n")
    X, y = data.load_ecg5000(tmp_path)
    np.testing.assert_allclose(X, beats, rtol=1e-7)
    np.testing.assert_array_equal(y, labels)
    X2, _ = data.load_ecg5000(path)
    np.testing.assert_array_equal(X2, X)


def test_load_ecg5000_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="ecg.csv"):
        data.load_ecg5000(tmp_path)


# --- bundled sets and the split ------------------------------------------------------------
def test_iris_and_digits():
    X, y = data.load_iris()
    assert X.shape == (150, 4) and set(y) == {0, 1, 2}
    X, y = data.load_digits()
    assert X.shape == (1797, 64) and y.max() == 9


def test_train_test_split_stratified_and_fixed():
    y = np.repeat([0, 1, 2], [50, 30, 20])
    tr, te = data.train_test_split(len(y), 0.2, seed=4, stratify=y)
    assert len(te) == 20 and np.bincount(y[te]).tolist() == [10, 6, 4]
    assert not set(tr) & set(te) and len(tr) + len(te) == 100
    tr2, te2 = data.train_test_split(len(y), 0.2, seed=4, stratify=y)
    np.testing.assert_array_equal(te, te2)


# --- the real files, when they are there ---------------------------------------------------
@pytest.mark.skipif(
    _real_data_dir() is None, reason="no data folder ($DIY_NN_DATA, ../shared/data)"
)
def test_real_files():
    root = _real_data_dir()
    X, y = data.load_usps(root, "train")
    assert X.shape == (7291, 256) and X.min() == 0 and X.max() == 2
    assert np.bincount(y).tolist()[:3] == [1194, 1005, 731]
    X, y = data.load_usps(root, "test")
    assert X.shape == (2007, 256) and np.bincount(y)[0] == 359
    X, y = data.load_ecg5000(root)
    assert X.shape == (4998, 140) and int(y.sum()) == 2919
