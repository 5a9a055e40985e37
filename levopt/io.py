"""Files in and out: atomic writes (a crash mid-write never leaves a truncated result behind),
strict JSON (every non-finite number is written as ``null``; ``NaN``/``Infinity`` never appear),
and bounded, checked reads of user text files (configs, position lists)."""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile
from pathlib import Path
from typing import IO, Any

import numpy as np

from levopt.errors import ConfigError

MAX_TEXT_BYTES = 10 * 2**20
"""Largest config or other user text file read (10 MiB): a bigger one is not a hand-written config."""


def _jsonable(obj: Any) -> Any:
    """Plain JSON data: numpy and JAX arrays as lists, paths as strings, NaN and ±inf as None."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray) or hasattr(obj, "__array__") and not isinstance(obj, str | bytes):
        return _jsonable(np.asarray(obj).tolist())
    if isinstance(obj, np.generic):
        return _jsonable(obj.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        # Undefined (a standard error from one path) or unbounded (the log-growth of ruin): null.
        return None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def dumps_json(obj: Any, *, indent: int | None = 2) -> str:
    """``obj`` as strict JSON text (RFC 8259): non-finite numbers become ``null``.

    Raises:
        ValueError: never for data from :func:`_jsonable`; ``allow_nan=False`` guards the contract.
    """
    return json.dumps(_jsonable(obj), indent=indent, allow_nan=False)


def write_json_stream(obj: Any, stream: IO[str] | None = None) -> None:
    """Write ``obj`` as strict, indented JSON and a newline to ``stream`` (default: stdout)."""
    stream = sys.stdout if stream is None else stream
    stream.write(dumps_json(obj) + "\n")
    stream.flush()


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same directory and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp creates 0600 files; results are ordinary files, readable as the umask allows.
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """:func:`atomic_write_bytes` of UTF-8 text."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, obj: Any) -> Path:
    """Atomically write ``obj`` as indented strict JSON (non-finite -> null, numpy -> lists)."""
    return atomic_write_text(path, dumps_json(obj) + "\n")


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def read_text(path: str | Path, field: str, *, max_bytes: int = MAX_TEXT_BYTES) -> str:
    """The UTF-8 text of a user file (a UTF-8 byte-order mark is dropped), checked first.

    Args:
        path: the file.
        field: how the user named it (``config``, ``--positions``): errors start with it.
        max_bytes: largest size read.

    Raises:
        ConfigError: naming ``field`` and the file when it is missing, not a regular file, larger
            than ``max_bytes``, unreadable, binary (a NUL byte) or not UTF-8 (the byte offset).
    """
    path = Path(path)
    if not path.exists():
        raise ConfigError(field, f"file not found: {path}")
    if path.is_dir():
        raise ConfigError(field, f"{path} is a directory, not a file")
    if not path.is_file():
        raise ConfigError(field, f"{path} is not a regular file")
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise ConfigError(
                field,
                f"{path} has {size:,} bytes; allowed: at most {max_bytes:,} ({max_bytes / 2**20:g} MiB), "
                "is it the right file?",
            )
        with path.open("rb") as fh:
            data = fh.read(max_bytes + 1)
    except OSError as exc:
        raise ConfigError(field, f"cannot read {path} ({exc.strerror or exc})") from None
    if len(data) > max_bytes:  # grew while being read, or a size stat does not report
        raise ConfigError(field, f"{path} is larger than {max_bytes:,} bytes; allowed: at most that")
    nul = data.find(b"\x00")
    if nul >= 0:
        raise ConfigError(field, f"{path} is a binary file (NUL byte at offset {nul}), not UTF-8 text")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError(
            field,
            f"{path} is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}, line {line}); "
            "allowed: UTF-8, save the file in that encoding",
        ) from None
