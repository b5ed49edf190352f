"""Writing a file all at once: bytes go to a temporary file next to it, renamed over it."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


@contextmanager
def atomic_writer(target: str | os.PathLike[str]) -> Iterator[BinaryIO]:
    """Yields a binary file that becomes ``target`` when the ``with`` block ends cleanly.

    The bytes go to a temporary file in ``target``'s folder (so that the rename stays on
    one file system); at the end of the block it is flushed, synced to disk and
    ``os.replace``d onto ``target``, so a reader sees the previous file or the whole new
    one, never a part. If the block raises (``KeyboardInterrupt`` included) the temporary
    file is deleted and ``target`` is left as it was.
    """
    path = Path(target)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
