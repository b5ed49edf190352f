"""The 2-D generator and the data loaders: small files built in tmp_path, the shipped ones
in data/, and downloads from an http.server on 127.0.0.1 started by the tests."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from diy_nn import _datafiles, data

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "data"


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


def _write_lines(path: Path, lines: list[str]) -> None:
    """Writes the lines to ``path``, gzip-compressed when it ends in ``.gz``."""
    text = "\n".join(lines) + "\n"
    if path.suffix == ".gz":
        with gzip.open(path, "wt") as fh:
            fh.write(text)
    else:
        path.write_text(text)


def _write_course(path: Path, pixels: np.ndarray, labels: np.ndarray) -> None:
    lines = ["10 256"]
    pairs = zip(labels, pixels, strict=True)
    lines += [" ".join([str(lab)] + [_fmt(v) for v in row]) for lab, row in pairs]
    lines.append("-1")
    _write_lines(path, lines)


def _write_esl(path: Path, pixels: np.ndarray, labels: np.ndarray) -> None:
    pairs = zip(labels, pixels, strict=True)
    lines = [" ".join([f"{lab:.4f}"] + [f"{v - 1:.3f}" for v in row]) for lab, row in pairs]
    _write_lines(path, lines)


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


def test_load_usps_missing_names_file_and_places(tmp_path, monkeypatch, no_local_data):
    with pytest.raises(FileNotFoundError) as err:
        data.load_usps(tmp_path, split="train")
    msg = str(err.value)
    assert "USPS_train.txt.gz" in msg and str(tmp_path / "usps" / "USPS_train.txt.gz") in msg
    assert str(tmp_path / "zip.train") in msg and "DIY_NN_DATA" in msg
    monkeypatch.setenv(data.OFFLINE_ENV, "1")
    with pytest.raises(FileNotFoundError, match="DIY_NN_DATA") as err:
        data.load_usps()
    assert str(no_local_data / "usps" / "USPS_train.txt.gz") in str(err.value)
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


# --- the shipped files ---------------------------------------------------------------------
def test_real_files():
    X, y = data.load_usps(SHIPPED, "train")
    assert X.shape == (7291, 256) and X.min() == 0 and X.max() == 2
    assert np.bincount(y).tolist()[:3] == [1194, 1005, 731]
    X, y = data.load_usps(SHIPPED, "test")
    assert X.shape == (2007, 256) and np.bincount(y)[0] == 359
    X, y = data.load_ecg5000(SHIPPED)
    assert X.shape == (4998, 140) and int(y.sum()) == 2919


def test_shipped_files_have_the_known_checksums():
    readme = (SHIPPED / "README.md").read_text()
    shipped = sorted(p.relative_to(SHIPPED).as_posix() for p in SHIPPED.rglob("*.gz"))
    assert shipped == sorted(n for n in _datafiles.CHECKSUMS if n.endswith(".gz"))
    for name, expected in _datafiles.CHECKSUMS.items():
        if name.endswith(".gz"):
            got = _datafiles.sha256_of(SHIPPED / name)
        else:  # the text file: what the .gz holds
            got = hashlib.sha256(gzip.decompress((SHIPPED / (name + ".gz")).read_bytes()))
            got = got.hexdigest()
        assert got == expected, name
        assert expected in readme, f"{name}'s sha256 is not in data/README.md"


def test_fresh_clone_finds_data_from_any_directory(tmp_path):
    """A clone on a machine with nothing else: no $DIY_NN_DATA, an empty home, offline."""
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIY_NN_")}
    env.update(
        PYTHONPATH=str(REPO / "python"),
        HOME=str(home),
        XDG_CACHE_HOME=str(home / ".cache"),
        DIY_NN_OFFLINE="1",
    )
    code = (
        "from diy_nn import data\n"
        "for name in ('usps_train', 'usps_test', 'ecg5000'):\n"
        "    print(data.data_file(name))\n"
        "print(data.load_usps(split='test')[0].shape, data.load_ecg5000()[0].shape)\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[:3] == [
        str(SHIPPED / "usps" / "USPS_train.txt.gz"),
        str(SHIPPED / "usps" / "USPS_test.txt.gz"),
        str(SHIPPED / "ecg5000" / "ecg.csv.gz"),
    ]
    assert lines[3] == "(2007, 256) (4998, 140)"
    assert not any(home.rglob("*")), "nothing may be written to the cache"


# --- finding and downloading ----------------------------------------------------------------
@pytest.fixture
def no_local_data(tmp_path, monkeypatch) -> Path:
    """No $DIY_NN_DATA, no source tree, an empty cache; returns the cache folder."""
    for var in (data.DATA_ENV, data.DATA_URL_ENV, data.OFFLINE_ENV):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(_datafiles, "source_tree_data", lambda: None)
    return tmp_path / "xdg" / "diy_nn"


@dataclass
class Served:
    """What the test server holds and what it was asked for."""

    url: str = ""
    files: dict[str, bytes] = field(default_factory=dict)
    cut: set[str] = field(default_factory=set)  # paths whose body stops half way
    requests: list[str] = field(default_factory=list)


@pytest.fixture
def server() -> Iterator[Served]:
    """An http.server on 127.0.0.1 (a free port) in a thread, stopped after the test."""
    served = Served()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            served.requests.append(self.path)
            body = served.files.get(self.path)
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.path in served.cut:  # announce it all, send half, hang up
                self.wfile.write(body[: len(body) // 2])
                self.close_connection = True
                return
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    served.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        yield served
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


def _files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


TEST_GZ = "usps/USPS_test.txt.gz"


def test_download_is_checked_and_cached(server, no_local_data, monkeypatch):
    server.files["/mirror/" + TEST_GZ] = (SHIPPED / TEST_GZ).read_bytes()
    # the first mirror lacks the file (404): the second one serves it
    monkeypatch.setenv(data.DATA_URL_ENV, f"{server.url}/empty {server.url}/mirror/")
    X, y = data.load_usps(split="test")
    assert X.shape == (2007, 256) and np.bincount(y)[0] == 359
    assert server.requests == ["/empty/" + TEST_GZ, "/mirror/" + TEST_GZ]
    assert _files(no_local_data) == [TEST_GZ]  # no temporary file left beside it
    cached = no_local_data / TEST_GZ
    assert _datafiles.sha256_of(cached) == _datafiles.CHECKSUMS[TEST_GZ]
    assert data.data_file("usps_test") == cached
    assert len(server.requests) == 2  # the second time comes from the cache


def test_download_removes_temporary_files_of_killed_downloads(server, no_local_data, monkeypatch):
    server.files["/" + TEST_GZ] = (SHIPPED / TEST_GZ).read_bytes()
    monkeypatch.setenv(data.DATA_URL_ENV, server.url)
    folder = no_local_data / "usps"
    folder.mkdir(parents=True)
    old, young = folder / ".USPS_test.txt.gz.old1.tmp", folder / ".USPS_test.txt.gz.new1.tmp"
    old.write_bytes(b"part")
    young.write_bytes(b"part")
    two_days_ago = time.time() - 2 * 24 * 3600
    os.utime(old, (two_days_ago, two_days_ago))
    data.load_usps(split="test")
    assert _files(no_local_data) == sorted([TEST_GZ, "usps/" + young.name])  # may be busy


def test_corrupted_download_is_refused_and_not_cached(server, no_local_data, monkeypatch):
    body = bytearray((SHIPPED / TEST_GZ).read_bytes())
    body[1000] ^= 0xFF
    server.files["/" + TEST_GZ] = bytes(body)
    monkeypatch.setenv(data.DATA_URL_ENV, server.url)
    with pytest.raises(FileNotFoundError) as err:
        data.load_usps(split="test")
    msg = str(err.value)
    assert f"{server.url}/{TEST_GZ}" in msg and "sha256" in msg
    assert _datafiles.CHECKSUMS[TEST_GZ] in msg
    assert _files(no_local_data) == []


def test_interrupted_download_leaves_no_file(server, no_local_data, monkeypatch):
    server.files["/" + TEST_GZ] = (SHIPPED / TEST_GZ).read_bytes()
    server.cut.add("/" + TEST_GZ)
    monkeypatch.setenv(data.DATA_URL_ENV, server.url)
    with pytest.raises(FileNotFoundError, match="incomplete"):
        data.load_usps(split="test")
    assert len(server.requests) == 1
    assert _files(no_local_data) == []


def test_ctrl_c_during_download_leaves_no_file(server, no_local_data, monkeypatch):
    server.files["/" + TEST_GZ] = (SHIPPED / TEST_GZ).read_bytes()
    monkeypatch.setenv(data.DATA_URL_ENV, server.url)

    class Interrupting:
        def update(self, n: int) -> None:
            raise KeyboardInterrupt

        def close(self) -> None:
            pass

    monkeypatch.setattr(_datafiles, "_progress", lambda total, desc: Interrupting())
    with pytest.raises(KeyboardInterrupt):
        data.load_usps(split="test")
    assert _files(no_local_data) == []


def test_offline_makes_no_request(server, no_local_data, monkeypatch):
    server.files["/" + TEST_GZ] = (SHIPPED / TEST_GZ).read_bytes()
    monkeypatch.setenv(data.DATA_URL_ENV, server.url)
    monkeypatch.setenv(data.OFFLINE_ENV, "1")
    with pytest.raises(FileNotFoundError) as err:
        data.load_usps(split="test")
    assert "DIY_NN_OFFLINE=1" in str(err.value) and str(no_local_data / TEST_GZ) in str(err.value)
    assert server.requests == []
    monkeypatch.setenv(data.OFFLINE_ENV, "0")  # "0" means online
    assert data.load_usps(split="test")[0].shape == (2007, 256)
    assert len(server.requests) == 1


def test_bad_cached_file_is_not_used_and_gets_replaced(server, no_local_data, monkeypatch):
    server.files["/" + TEST_GZ] = (SHIPPED / TEST_GZ).read_bytes()
    monkeypatch.setenv(data.DATA_URL_ENV, server.url)
    monkeypatch.setenv(data.OFFLINE_ENV, "1")
    cached = no_local_data / TEST_GZ
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"not the file")
    with pytest.raises(FileNotFoundError, match="not used"):
        data.load_usps(split="test")
    monkeypatch.delenv(data.OFFLINE_ENV)
    assert data.load_usps(split="test")[0].shape == (2007, 256)
    assert _datafiles.sha256_of(cached) == _datafiles.CHECKSUMS[TEST_GZ]
    assert _files(no_local_data) == [TEST_GZ]


def test_original_sources_text_and_zip(server, no_local_data, monkeypatch):
    """The default sources' two kinds: a text file, and a member of a zip archive."""
    text = gzip.decompress((SHIPPED / TEST_GZ).read_bytes())
    server.files["/course/USPS_test.txt"] = text
    csv = gzip.decompress((SHIPPED / "ecg5000" / "ecg.csv.gz").read_bytes())
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("ecg.csv", csv)
    server.files["/ecg.zip"] = buf.getvalue()
    server.files["/wrong.csv"] = csv[:-1]
    zip_sha = hashlib.sha256(buf.getvalue()).hexdigest()
    sets = dict(_datafiles.DATASETS)
    usps_src = _datafiles.Source(f"{server.url}/course/USPS_test.txt", "usps/USPS_test.txt")
    sets["usps_test"] = replace(sets["usps_test"], sources=(usps_src,))
    ecg_srcs = (
        _datafiles.Source(f"{server.url}/wrong.csv", "ecg5000/ecg.csv"),
        _datafiles.Source(f"{server.url}/ecg.zip", "ecg5000/ecg.csv", zip_sha256="0" * 64),
        _datafiles.Source(f"{server.url}/ecg.zip", "ecg5000/ecg.csv", zip_sha256=zip_sha),
    )
    sets["ecg5000"] = replace(sets["ecg5000"], sources=ecg_srcs)
    monkeypatch.setattr(_datafiles, "DATASETS", sets)

    X, y = data.load_usps(split="test")
    np.testing.assert_array_equal(X, data.load_usps(SHIPPED, split="test")[0])
    X, y = data.load_ecg5000()  # the wrong csv and the wrong zip are refused first
    assert X.shape == (4998, 140) and int(y.sum()) == 2919
    assert server.requests == ["/course/USPS_test.txt", "/wrong.csv", "/ecg.zip", "/ecg.zip"]
    assert _files(no_local_data) == ["ecg5000/ecg.csv", "usps/USPS_test.txt"]
    monkeypatch.setenv(data.OFFLINE_ENV, "1")  # now both come from the cache
    assert data.data_file("ecg5000") == no_local_data / "ecg5000" / "ecg.csv"
    assert data.data_file("usps_test") == no_local_data / "usps" / "USPS_test.txt"


def test_chosen_folder_must_hold_the_file(server, no_local_data, monkeypatch, tmp_path):
    """$DIY_NN_DATA (or a path) that lacks the file is an error naming it: never skipped."""
    monkeypatch.setenv(data.DATA_URL_ENV, server.url)
    missing, empty, other = tmp_path / "missing", tmp_path / "empty", tmp_path / "other"
    empty.mkdir()
    (other / "usps").mkdir(parents=True)
    (other / "usps" / "notes.txt").write_text("x")
    for folder, state in [
        (missing, "does not exist"),
        (empty, "is an empty folder"),
        (other, "is a folder without"),
    ]:
        monkeypatch.setenv(data.DATA_ENV, str(folder))
        with pytest.raises(FileNotFoundError) as err:
            data.load_usps(split="test")
        msg = str(err.value)
        assert f"$DIY_NN_DATA ({folder}) {state}" in msg, msg
        assert str(folder / TEST_GZ) in msg and "unset DIY_NN_DATA" in msg
        if folder == other:
            assert f"without {TEST_GZ}" in msg
        with pytest.raises(FileNotFoundError, match=f"the folder given \\({folder}\\) {state}"):
            data.load_ecg5000(folder)
    assert server.requests == []


def test_cache_folder_follows_xdg_then_home(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert data.cache_dir() == tmp_path / "xdg" / "diy_nn"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert data.cache_dir() == tmp_path / "home" / ".cache" / "diy_nn"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert data.cache_dir() == tmp_path / "home" / ".cache" / "diy_nn"


def test_import_downloads_nothing(server, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIY_NN_")}
    env.update(
        PYTHONPATH=str(REPO / "python"),
        XDG_CACHE_HOME=str(tmp_path / "xdg"),
        DIY_NN_DATA_URL=server.url,
    )
    code = "import diy_nn, diy_nn.data, diy_nn.experiments\ndiy_nn.experiments.load_all()\n"
    run = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
    assert server.requests == [] and not (tmp_path / "xdg").exists()
