"""Output paths checked before any computation: where results go must be writable, of the right
kind (a file or a directory), and must not hold a different run, so that a long computation never
ends in an error on writing, and never overwrites someone's earlier results.

A *run directory* (``levopt run --out DIR``, ``levopt calibrate --out DIR``) records what produced
it: ``results.json`` (a run or evaluation) and ``sweep.json`` (a sweep) hold the config,
``posterior.json`` (a calibration) the calibration's request. Writing into a directory that holds
the same config again is a re-run and allowed; a different one needs ``--force``.

The CLI also learns here where a crash report of the current command goes
(:func:`crash_log_dir`): the run directory once it has been checked, else a temporary file.
"""

from __future__ import annotations

import contextvars
import datetime as _dt
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Literal

from levopt.errors import ConfigError
from levopt.io import atomic_write_text, dumps_json

ERROR_LOG = "levopt-error.log"
"""Name of the crash report written into the run directory."""

RECORDS: dict[str, tuple[str, str]] = {
    "results.json": ("run", "config"),
    "sweep.json": ("sweep", "config"),
    "posterior.json": ("calibration", "request"),
    "funding_calibration.json": ("calibration", "request"),
}
"""The files that say what a run directory holds: file -> (kind, key of its identity)."""

Kind = Literal["run", "sweep", "calibration"]

_crash_dir: contextvars.ContextVar[Path | None] = contextvars.ContextVar("levopt_crash_dir", default=None)


def crash_log_dir() -> Path | None:
    """The run directory of the current command, once :func:`claim_run_dir` accepted it."""
    return _crash_dir.get()


def reset_crash_log_dir() -> None:
    """Forget the run directory (the CLI calls it before each command)."""
    _crash_dir.set(None)


def write_crash_log(text: str) -> Path:
    """Write a crash report to the run directory's :data:`ERROR_LOG`, or to a new temporary file
    when there is no run directory or it cannot be written. Returns where it went."""
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    body = f"levopt crashed at {stamp}\ncommand: {' '.join(sys.argv)}\n\n{text}"
    directory = crash_log_dir()
    if directory is not None:
        try:
            return atomic_write_text(directory / ERROR_LOG, body)
        except OSError:
            pass
    fd, name = tempfile.mkstemp(prefix="levopt-error-", suffix=".log")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(body)
    return Path(name)


def _deepest_existing(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and not path.is_symlink() and path != path.parent:
        path = path.parent
    return path


def _probe(directory: Path, flag: str, target: Path) -> None:
    """Create and delete a file in ``directory``: the only test of writability that holds for
    every user (root included), file system (read-only mounts) and quota."""
    try:
        fd, name = tempfile.mkstemp(dir=directory, prefix=".levopt-probe-")
        os.close(fd)
        os.unlink(name)
    except OSError as exc:
        raise ConfigError(
            flag,
            f"cannot write {target}: no new file can be created in {directory} ({exc.strerror or exc}); "
            "allowed: a path in a directory you can write to",
        ) from None


def check_target(path: str | Path, flag: str, want: Literal["file", "dir"]) -> Path:
    """Check that results can be written at ``path`` (a file or a directory, which need not exist).

    Raises:
        ConfigError: naming ``flag`` when ``path`` is a directory where a file is needed or the
            other way round, when a parent is a file, or when no file can be created there.
    """
    path = Path(path)
    if path.exists():
        if want == "dir" and not path.is_dir():
            raise ConfigError(flag, f"{path} is a file; allowed: a directory (new, or holding this run)")
        if want == "file" and path.is_dir():
            raise ConfigError(
                flag, f"{path} is a directory; allowed: a file path, e.g. {path / 'results.json'}"
            )
        if want == "file" and not path.is_file():
            raise ConfigError(flag, f"{path} is not a regular file; allowed: a regular file path")
    ancestor = _deepest_existing(path if want == "dir" else path.parent)
    if not ancestor.is_dir():
        raise ConfigError(flag, f"cannot write {path}: {ancestor} is a file, not a directory")
    _probe(ancestor, flag, path)
    return path


def canonical(value: Any) -> Any:
    """``value`` as it reads back from a JSON file (tuples as lists, non-finite numbers as null)."""
    return json.loads(dumps_json(value, indent=None))


def _read_record(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None


def recorded(directory: str | Path) -> tuple[Kind, str, Any] | None:
    """What a run directory holds: ``(kind, file name, identity)`` from the first of
    :data:`RECORDS` present (identity None when the file cannot be read), or None."""
    directory = Path(directory)
    for name, (kind, key) in RECORDS.items():
        path = directory / name
        if path.is_file():
            data = _read_record(path)
            return kind, name, data.get(key) if isinstance(data, dict) else None  # type: ignore[return-value]
    return None


def claim_run_dir(path: str | Path, flag: str, *, kind: Kind, identity: Any, force: bool = False) -> Path:
    """Check that ``path`` can be the run directory of a ``kind`` with ``identity`` (the config, or
    a calibration's request), before anything is computed; crash reports then go there.

    A directory holding the same kind and identity is a re-run (allowed); one holding another run
    is refused unless ``force``.

    Raises:
        ConfigError: naming ``flag``: not a directory, not writable, or holding a different run.
    """
    path = check_target(path, flag, "dir")
    held = recorded(path) if path.is_dir() else None
    if held is not None and not force:
        held_kind, name, held_identity = held
        if held_kind != kind:
            raise ConfigError(
                flag,
                f"{path} holds a {held_kind} ({name}), not a {kind}; pass --force to write over it, "
                f"or choose another {flag}",
            )
        if held_identity is None or canonical(held_identity) != canonical(identity):
            what = "config" if kind != "calibration" else "data or settings"
            raise ConfigError(
                flag,
                f"{path} holds a {kind} of a different {what} ({name}); pass --force to overwrite it, "
                f"or choose another {flag}",
            )
    _crash_dir.set(path)
    return path


def claim_file(path: str | Path, flag: str, *, identity: Any, force: bool = False) -> Path:
    """Check that a result file can be written at ``path`` before anything is computed.

    An existing file is overwritten only when it holds a result of the same config (a re-run) or
    with ``force``.

    Raises:
        ConfigError: naming ``flag``: a directory, not writable, or an existing other file.
    """
    path = check_target(path, flag, "file")
    if path.is_file() and not force:
        data = _read_record(path)
        held = data.get("config") if isinstance(data, dict) else None
        if held is None or canonical(held) != canonical(identity):
            what = "a result of a different config" if held is not None else "something else"
            raise ConfigError(
                flag,
                f"{path} exists and holds {what}; pass --force to overwrite it, or choose another {flag}",
            )
    return path
