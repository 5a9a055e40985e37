"""JAX's persistent compilation cache for levopt, switched on by levopt's first computation.

Compiling levopt's programs (the engine's scan over time, the metrics, an optimizer's step) takes
seconds; running them on a small config takes milliseconds. JAX can keep compiled programs on disk
(its persistent compilation cache) so that a later process running the same programs loads them
instead of compiling them again. levopt points that cache at a directory of its own:

* ``$LEVOPT_CACHE_DIR`` when it is set; ``LEVOPT_CACHE_DIR=off`` disables the cache (levopt then
  writes nothing anywhere);
* otherwise the user's cache directory: ``platformdirs.user_cache_dir("levopt")`` when platformdirs
  is installed, else ``$XDG_CACHE_HOME/levopt`` or ``~/.cache/levopt``.

Importing levopt changes no setting: :func:`enable_compilation_cache` runs when a public entry point
is first called (:func:`levopt.precision.scoped_x64`, which wraps every one, calls it), once per
process. A process that already set JAX's cache directory itself (``JAX_COMPILATION_CACHE_DIR`` or
``jax.config.update("jax_compilation_cache_dir", ...)``) keeps its own. A directory that cannot be
written disables the cache with one :class:`CacheWarning`, and the run goes on without it.

Cached programs are keyed by JAX on the program, the JAX and jaxlib versions, the device and the
compile options, so a stale entry is never used for another program. The directory grows with the
number of distinct programs (shapes, dtypes, models, policies) and may be deleted at any time: a
process killed while writing an entry can leave it truncated, which JAX then reports with a
warning at each load and compiles instead; deleting the directory clears it.
"""

from __future__ import annotations

import os
import tempfile
import threading
import warnings
from pathlib import Path

import jax

ENV_VAR = "LEVOPT_CACHE_DIR"
"""The environment variable that moves the cache (a directory) or disables it (``off``)."""

OFF = "off"

MIN_COMPILE_TIME_S = 0.0
"""Programs are cached whatever their compile time: levopt's runs compile tens of programs of
0.05-2 s each, whose sum is what a warm cache saves (JAX's own default, 1 s, keeps only a few)."""


class CacheWarning(UserWarning):
    """The compilation cache could not be used; levopt runs without it."""


_lock = threading.Lock()
_decided = False
_active: Path | None = None


def user_cache_root() -> Path:
    """levopt's per-user cache directory (platformdirs, else $XDG_CACHE_HOME or ~/.cache)."""
    try:
        import platformdirs
    except ImportError:
        xdg = os.environ.get("XDG_CACHE_HOME")
        base = Path(xdg) if xdg else Path.home() / ".cache"
        return base / "levopt"
    return Path(platformdirs.user_cache_dir("levopt"))


def cache_dir() -> Path | None:
    """The directory levopt's compiled programs go to, or None when ``LEVOPT_CACHE_DIR=off``.

    Read from the environment at each call; :func:`enable_compilation_cache` uses the value at the
    process's first levopt computation.
    """
    value = os.environ.get(ENV_VAR, "").strip()
    if value.lower() == OFF:
        return None
    return Path(value).expanduser() if value else user_cache_root()


def _writable(path: Path) -> OSError | None:
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".levopt-probe-"):
            pass
    except OSError as exc:
        return exc
    return None


def enable_compilation_cache() -> Path | None:
    """Point JAX's persistent compilation cache at :func:`cache_dir` (once per process).

    Returns:
        The directory in use: levopt's, or the one the process gave JAX itself; None when the cache
        is off or its directory cannot be written.
    """
    global _decided, _active
    if _decided:  # the common case, after the first call: no lock, no file system
        return _active
    with _lock:
        if _decided:
            return _active
        own = jax.config.jax_compilation_cache_dir
        if own:
            _active = Path(own)
        else:
            path = cache_dir()
            error = None if path is None else _writable(path)
            if error is not None:
                warnings.warn(
                    f"levopt: compilation cache disabled, {path} is not writable ({error.strerror or error}); "
                    f"set {ENV_VAR} to a writable directory, or to {OFF}",
                    CacheWarning,
                    stacklevel=3,
                )
            elif path is not None:
                # Changed only while at JAX's default, so that a user's own choice stands. (The
                # minimum entry size is left at JAX's default, 0: every size is cached.)
                if jax.config.jax_persistent_cache_min_compile_time_secs == 1.0:
                    jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_TIME_S)
                jax.config.update("jax_compilation_cache_dir", str(path))
                _active = path
        _decided = True
        return _active
