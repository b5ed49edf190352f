"""Where the course's data files (USPS, ECG5000) are found, and how a missing one is fetched.

A data set's file is looked for, in order (the first that applies decides):

1. the path the caller passed: a file, or a folder holding it;
2. ``$DIY_NN_DATA``, when set and not empty: a folder laid out like the repository's
   ``data/``; a missing folder, or one without the file, is an error, never skipped;
3. the source tree's ``data/``, when diy_nn runs from a clone (found from this file's
   place, so from any working directory);
4. the user cache, ``$XDG_CACHE_HOME/diy_nn`` or ``~/.cache/diy_nn`` (same layout); a
   cached file is used only if its sha256 is the known one;
5. a download into that cache, unless ``DIY_NN_OFFLINE=1``: from each folder URL in
   ``$DIY_NN_DATA_URL`` (space-separated copies of ``data/``), else from the original
   sources. The bytes stream into a temporary file in the cache folder; only once their
   sha256 is the known one is that file renamed into place, so a corrupted, truncated or
   interrupted download leaves nothing behind.

When all fail, ``FileNotFoundError`` names every place looked, every download tried and
why it failed, and how to provide the file. Nothing here runs when diy_nn is imported.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import time
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from http.client import HTTPException
from pathlib import Path
from typing import IO, Protocol

from ._fileio import atomic_writer

DATA_ENV = "DIY_NN_DATA"
DATA_URL_ENV = "DIY_NN_DATA_URL"
OFFLINE_ENV = "DIY_NN_OFFLINE"

# sha256 of every file name the cache may hold: the shipped gzip files and the text
# files some original sources serve (the data README gives both).
CHECKSUMS: dict[str, str] = {
    "usps/USPS_train.txt.gz": "5d4e43730b47eda49f12413c768659a3767d904d26d50023845b9c5c20f8a1e5",
    "usps/USPS_train.txt": "a8e1df2a0da5984447d3de7c7067ec4b9bcd0a6bb956e2276718d96d904bd0bc",
    "usps/USPS_test.txt.gz": "2ecf61f48bd829c0eaed20f1ce07dcaa79a80a64c6262a3df203448e43839f0c",
    "usps/USPS_test.txt": "f802e6ba3fbc8778cdea6a105311fb4a1a8251eb706b77882bb1966116bf87d2",
    "ecg5000/ecg.csv.gz": "27e450aff222fe55abaa4283ad44d7710ada076914ceb2e31659dca55005709e",
    "ecg5000/ecg.csv": "72ce7b040ca0c6ed36c3368e570c6ac4ddf20100476e47373c63b2395e012df1",
}

TIMEOUT_S = 30.0  # per blocking socket operation, not for the whole download
MAX_BYTES = 64 * 2**20  # no data file or archive here comes near this
STALE_S = 24 * 3600  # a download's temporary file this old was left by a killed process
_CHUNK = 1 << 16


@dataclass(frozen=True)
class Source:
    """One place a file can be downloaded from.

    Args:
        url: what to fetch.
        save_as: the name it gets in the cache (a key of ``CHECKSUMS``, which its bytes
            must match).
        zip_sha256: set when ``url`` serves a zip archive, whose sha256 this is; the
            member named like ``save_as`` is then extracted (and checked).
    """

    url: str
    save_as: str
    zip_sha256: str | None = None


@dataclass(frozen=True)
class DataSet:
    """A data file: its title, the names it may have in a folder, where to download it."""

    title: str
    file: str  # the name in the repository's data/ (and in a $DIY_NN_DATA_URL mirror)
    names: tuple[str, ...]  # every accepted name in a folder, in order of preference
    sources: tuple[Source, ...]


_GITHUB = "https://raw.githubusercontent.com/"
_COURSE = _GITHUB + "candicemyt/projetML/839e243e44d6ab7a6fe70ffde729d743ad91094d/data/"
_COURSE_MIRROR = (
    _GITHUB + "saliou7/DIY_Neural_Networks/e607d821bd4d5325186a78a4f048b93e42f27ea3/data/"
)
_ECG_TF = "https://storage.googleapis.com/download.tensorflow.org/data/ecg.csv"
_ECG_ZIP = (
    _GITHUB + "jeffwongqy/ECG-Anomaly-Detection/f481cab857eabbb6d120ae11a330864d1cc0c6d6/ecg.zip"
)
_ECG_ZIP_SHA256 = "c6c2cba49e9b9e35d45cd889091d960cf900c1062805f51f2516cb3e65bef2b3"


def _usps(split: str) -> DataSet:
    course, esl = f"USPS_{split}.txt", f"zip.{split}"
    names = (course + ".gz", course, esl + ".gz", esl)
    return DataSet(
        title=f"USPS {split}",
        file=f"usps/{course}.gz",
        names=tuple(f"usps/{n}" for n in names) + names,
        sources=(
            Source(_COURSE + course, f"usps/{course}"),
            Source(_COURSE_MIRROR + course, f"usps/{course}"),
        ),
    )


DATASETS: dict[str, DataSet] = {
    "usps_train": _usps("train"),
    "usps_test": _usps("test"),
    "ecg5000": DataSet(
        title="ECG5000",
        file="ecg5000/ecg.csv.gz",
        names=("ecg5000/ecg.csv.gz", "ecg5000/ecg.csv", "ecg.csv.gz", "ecg.csv"),
        sources=(
            Source(_ECG_TF, "ecg5000/ecg.csv"),
            Source(_ECG_ZIP, "ecg5000/ecg.csv", zip_sha256=_ECG_ZIP_SHA256),
        ),
    ),
}


class ChecksumError(ValueError):
    """Downloaded bytes whose sha256 is not the known one."""


class _Progress(Protocol):
    def update(self, n: int) -> object: ...
    def close(self) -> None: ...


# --- where to look ---------------------------------------------------------------------
def source_tree_data() -> Path | None:
    """The clone's ``data/`` folder when diy_nn runs from a source tree, else None.

    The package lives in ``<root>/python/diy_nn``; the root of a clone also holds
    ``pyproject.toml``. An installed wheel (``site-packages/diy_nn``) has no such root.
    """
    package = Path(__file__).resolve().parent
    root = package.parent.parent
    if package.parent.name != "python" or not (root / "pyproject.toml").is_file():
        return None
    folder = root / "data"
    return folder if folder.is_dir() else None


def cache_dir() -> Path:
    """The user cache: ``$XDG_CACHE_HOME/diy_nn`` (if set to an absolute path), else
    ``~/.cache/diy_nn``. Not created here."""
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"
    return base / "diy_nn"


def offline() -> bool:
    """True when ``$DIY_NN_OFFLINE`` is 1, true, yes or on (any case)."""
    return os.environ.get(OFFLINE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def _mirrors() -> list[str]:
    return os.environ.get(DATA_URL_ENV, "").replace(",", " ").split()


def _sources(ds: DataSet) -> tuple[Source, ...]:
    mirrors = _mirrors()
    if mirrors:
        return tuple(Source(m.rstrip("/") + "/" + ds.file, ds.file) for m in mirrors)
    return ds.sources


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _how_to_provide(ds: DataSet, chosen: bool) -> str:
    """The closing lines of a "not found" message; ``chosen``: the user named the folder."""
    ways = [
        f"set {DATA_ENV} (or pass a path / --data-dir) to a folder holding {ds.file}, "
        "such as the data/ folder of a clone of diy_nn",
        f"put the file at {cache_dir() / ds.file}",
    ]
    if chosen:
        ways.append(f"unset {DATA_ENV} to use a clone's data/, the cache or a download")
    elif offline():
        ways.append(f"unset {OFFLINE_ENV} to let diy_nn download and check it")
    else:
        ways.append(f"set {DATA_URL_ENV} to folder URLs laid out like data/ to download from")
    return "To provide it: " + "; or ".join(ways) + "."


def _in_folder(ds: DataSet, folder: Path, label: str) -> Path:
    """The file in a folder the user chose; raises, naming the folder, when it is not there."""
    looked = [folder / name for name in ds.names]
    for path in looked:
        if path.is_file():
            return path
    if not folder.exists():
        state = "does not exist"
    elif not folder.is_dir():
        state = "is not a folder"
    elif not any(folder.iterdir()):
        state = "is an empty folder"
    else:
        state = f"is a folder without {ds.file} (or another name below)"
    places = "\n  ".join(str(p) for p in looked)
    raise FileNotFoundError(
        f"{ds.title}: {label} {state}. Looked at:\n  {places}\n{_how_to_provide(ds, True)}"
    )


def locate(name: str, path: str | os.PathLike[str] | None = None) -> Path:
    """The file of data set ``name`` (a key of ``DATASETS``), found or downloaded.

    Args:
        name: ``"usps_train"``, ``"usps_test"`` or ``"ecg5000"``.
        path: a file (returned as is), a folder holding it, or None for the search order
            of this module's docstring.

    Raises:
        FileNotFoundError: the file is nowhere and could not be downloaded; the message
            names every place looked and every download tried.
    """
    ds = DATASETS[name]
    if path is not None:
        given = Path(path)
        if given.is_file():
            return given
        if not given.exists() and given.suffix:
            raise FileNotFoundError(
                f"{ds.title}: the file given, {given}, does not exist. Looked at:\n  {given}\n"
                f"{_how_to_provide(ds, True)}"
            )
        return _in_folder(ds, given, f"the folder given ({given})")
    env = os.environ.get(DATA_ENV, "")
    if env:
        return _in_folder(ds, Path(env), f"${DATA_ENV} ({env})")

    looked: list[str] = []
    tree = source_tree_data()
    if tree is None:
        looked.append("(no source tree: diy_nn is not running from a clone)")
    else:
        for candidate in (tree / n for n in ds.names):
            if candidate.is_file():
                return candidate
            looked.append(str(candidate))
    cache = cache_dir()
    for cached in _cache_names(ds):
        candidate = cache / cached
        if candidate.is_file():
            if sha256_of(candidate) == CHECKSUMS[cached]:
                return candidate
            looked.append(f"{candidate} (sha256 is not the known one: not used)")
        else:
            looked.append(str(candidate))
    tried: list[str] = []
    if offline():
        tried.append(f"no download: {OFFLINE_ENV}={os.environ.get(OFFLINE_ENV)}")
    else:
        for source in _sources(ds):
            try:
                return download(source, cache)
            except (OSError, HTTPException, ValueError, zipfile.BadZipFile) as err:
                tried.append(f"{source.url}: {err}")
    places = "\n  ".join(looked)
    attempts = "\n  ".join(tried)
    raise FileNotFoundError(
        f"{ds.title}: {DATA_ENV} is not set, and the file is in none of these places:\n"
        f"  {places}\nDownloads:\n  {attempts}\n{_how_to_provide(ds, False)}"
    )


def _cache_names(ds: DataSet) -> list[str]:
    names = [ds.file] + [s.save_as for s in ds.sources]
    return [n for n in dict.fromkeys(names) if n in CHECKSUMS]


# --- downloading ---------------------------------------------------------------------------
def _progress(total: int | None, desc: str) -> _Progress:
    """A tqdm byte counter on stderr when it is a terminal, else a silent one."""
    from tqdm.auto import tqdm

    return tqdm(
        total=total,
        desc=desc,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        leave=False,
        disable=not sys.stderr.isatty(),
    )


def _copy(
    src: IO[bytes], dst: IO[bytes], expected_size: int | None, on_chunk: Callable[[int], object]
) -> str:
    """Copies ``src`` to ``dst`` in chunks; returns the sha256 of what was copied.

    Raises ValueError past ``MAX_BYTES`` or when fewer bytes than ``expected_size`` came.
    """
    digest, n = hashlib.sha256(), 0
    for chunk in iter(lambda: src.read(_CHUNK), b""):
        n += len(chunk)
        if n > MAX_BYTES:
            raise ValueError(f"more than {MAX_BYTES} bytes: not a data file of diy_nn")
        digest.update(chunk)
        dst.write(chunk)
        on_chunk(len(chunk))
    if expected_size is not None and n != expected_size:
        raise ValueError(f"incomplete: got {n} of {expected_size} bytes")
    return digest.hexdigest()


def _check(got: str, expected: str, what: str) -> None:
    if got != expected:
        raise ChecksumError(f"sha256 of {what} is {got}, expected {expected}: not used")


def download(source: Source, cache: Path) -> Path:
    """Fetches ``source`` into ``cache``; returns the file, whose sha256 has been checked.

    Nothing is left in ``cache`` unless the whole file arrived with the right sha256.

    Raises:
        OSError, http.client.HTTPException: the transfer failed.
        ChecksumError: the bytes are not the known ones.
        ValueError: truncated or oversized.
    """
    target = cache / source.save_as
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(target)
    request = urllib.request.Request(source.url, headers={"User-Agent": "diy_nn"})
    print(f"diy_nn: downloading {source.url} to {target}", file=sys.stderr, flush=True)
    with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
        length = response.headers.get("Content-Length")
        size = int(length) if length and length.isdigit() else None
        if size is not None and size > MAX_BYTES:
            raise ValueError(f"{size} bytes announced: not a data file of diy_nn")
        bar = _progress(size, Path(source.save_as).name)
        try:
            if source.zip_sha256 is None:
                with atomic_writer(target) as out:
                    got = _copy(response, out, size, bar.update)
                    _check(got, CHECKSUMS[source.save_as], source.url)
                return target
            # An archive: kept in an unnamed temporary file while the member is extracted.
            with tempfile.TemporaryFile(dir=target.parent) as archive:
                got = _copy(response, archive, size, bar.update)
                _check(got, source.zip_sha256, source.url)
                archive.seek(0)
                _extract(archive, target, CHECKSUMS[source.save_as])
            return target
        finally:
            bar.close()


def _remove_stale_temps(target: Path) -> None:
    """Deletes the temporary files (``atomic_writer``'s names) of downloads of ``target``
    killed outright (SIGKILL, power loss) at least ``STALE_S`` ago; an exception removes
    its own at once, and a younger one may belong to a download running now."""
    now = time.time()
    for tmp in target.parent.glob(f".{target.name}.*.tmp"):
        try:
            if now - tmp.stat().st_mtime > STALE_S:
                tmp.unlink()
        except OSError:  # gone already, or not ours to remove
            pass


def _extract(archive: IO[bytes], target: Path, expected: str) -> None:
    with zipfile.ZipFile(archive) as zf:
        try:
            info = zf.getinfo(target.name)
        except KeyError:
            raise ValueError(f"the archive has no member {target.name}") from None
        if info.file_size > MAX_BYTES:
            raise ValueError(f"member {target.name} has {info.file_size} bytes: too large")
        with zf.open(info) as member, atomic_writer(target) as out:
            got = _copy(member, out, info.file_size, lambda n: None)
            _check(got, expected, f"{target.name} in the archive")
