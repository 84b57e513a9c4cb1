"""Writing outputs so that nothing on disk is ever half-written: write beside the target, then rename."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator

from .errors import ShuffleTVMError


def check_writable(path: Path) -> None:
    """Fail before any work if `path` could not be written."""
    if path.is_dir():
        raise ShuffleTVMError(f"output '{path}' is a directory; give a file name inside it")
    parent = path.parent
    if not parent.is_dir():
        raise ShuffleTVMError(f"output folder '{parent}' does not exist; create it first")
    if not os.access(parent, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise ShuffleTVMError(f"cannot write '{path}': permission denied; choose another output path")


@contextlib.contextmanager
def atomic_output(path: Path, mode: int = 0o644) -> Iterator[Path]:
    """Yield a temporary path in `path`'s folder; on success it replaces `path`, on any failure it is removed
    and `path` keeps what it had."""
    path = Path(path)
    check_writable(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent)
    except OSError as err:
        raise ShuffleTVMError(f"cannot write '{path}': {err.strerror}; choose another output path") from None
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def write_text_atomic(text: str, path: Path) -> None:
    with atomic_output(path) as tmp:
        tmp.write_text(text)
