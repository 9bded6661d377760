"""Writing files: key files created exclusively with an exact mode, never over an existing file;
results written all at once, so that a reader never sees half a file."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from linkage.errors import LinkageError

PRIVATE_FILE_MODE = 0o600


def write_new_file(path: Path, data: bytes, *, what: str, error: type[LinkageError], mode: int = PRIVATE_FILE_MODE) -> None:
    """Create ``path`` holding ``data`` with exactly ``mode`` (the umask aside); refuse if it exists.

    A partly written file is removed. Errors are ``error`` naming the path and ``what`` it holds.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        raise error(f"{path}: already exists; refusing to overwrite {what}") from None
    except OSError as exc:
        raise error(f"{path}: cannot create {what} file ({exc.strerror})") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), mode)  # os.open's mode passes through the umask; set it exactly
            handle.write(data)
    except OSError as exc:
        path.unlink(missing_ok=True)
        raise error(f"{path}: cannot write {what} ({exc.strerror})") from None


def read_file(path: Path, *, what: str, error: type[LinkageError]) -> bytes:
    """The bytes of ``path``; a missing or unreadable file is ``error`` naming the path and ``what``."""
    kind = f"{what} file" if what else "file"
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise error(f"{path}: {kind} not found") from None
    except OSError as exc:
        raise error(f"{path}: cannot read {kind} ({exc.strerror})") from None


def private_folder(path: Path) -> Path:
    """``path`` made (with parents) and set to mode 0700: a party's state is nobody else's to read."""
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o700)
    return path


def make_private(*paths: Path) -> None:
    """Files a party wrote, set to mode 0600 (those that exist)."""
    for path in paths:
        if path.exists():
            path.chmod(0o600)


def write_atomically(out: Path, write: Callable[[Path], object]) -> Path:
    """Write ``out`` all at once: ``write`` fills a temporary file beside it (mode 0600), which then
    replaces ``out``; a failed write leaves neither half a file nor the temporary one."""
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    os.close(fd)
    try:
        write(Path(temp))
        os.replace(temp, out)
    finally:
        if os.path.exists(temp):
            os.unlink(temp)
    return out
