"""Atomic writes: a file is either absent, the old version, or the complete new version."""

from __future__ import annotations

import errno
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _atomic(path: Path, write) -> None:
    """Writes through a temporary file in the same folder, then renames it over ``path``.
    The file gets the mode an ordinary write would (0666 less the umask: usually 0644), not
    mkstemp's 0600, so a shared results folder stays readable."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as error:
        raise _named(error, path) from None
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as error:
        Path(tmp).unlink(missing_ok=True)
        raise _named(error, path) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _named(error: OSError, path: Path) -> OSError:
    """The error as one line that names the file being written and the problem (a full disk:
    "no space left on device writing PATH"), the old file left in place."""
    if error.errno == errno.ENOSPC:
        what = "no space left on device"
    elif error.errno == errno.EDQUOT:
        what = "disk quota exceeded"
    else:
        what = error.strerror or str(error)
    return OSError(error.errno, f"{what} writing {path} (nothing was replaced)")


def write_text(path: Path, text: str) -> None:
    _atomic(path, lambda h: h.write(text.encode()))


def write_json(path: Path, data: Any) -> None:
    write_text(path, json.dumps(data, indent=1, allow_nan=True) + "\n")


def save_torch(path: Path, obj: Any) -> None:
    """Serialized in memory first: torch's writer reports a full disk as an internal error
    ("enforce fail at inline_container.cc"), an ordinary write as ENOSPC with the path."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    _atomic(path, lambda h: h.write(buffer.getbuffer()))


def write_bytes(path: Path, data: bytes) -> None:
    _atomic(path, lambda h: h.write(data))


def set_aside(path: Path, why: str, log=None, kind: str = "corrupt") -> Path:
    """Renames a file so that no job-file pattern matches it again (never deletes it), and
    says so in one line naming both paths (``log``, default stderr). ``kind`` names why in
    the new name: ``corrupt`` (unreadable or inconsistent) or ``superseded`` (valid, but of
    another config or code, replaced by a new run)."""
    path = Path(path)
    target = path.with_name(f"{path.name}.{kind}-{time.strftime('%Y%m%dT%H%M%S')}")
    path.rename(target)
    message = f"hsmlbench: {path}: {why}; set aside as {target}"
    if log is None:
        print(message, file=sys.stderr, flush=True)
    else:
        log(message)
    return target
