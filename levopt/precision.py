"""JAX's 64-bit mode, scoped to levopt's own calls.

``precision: float64`` needs JAX's x64 mode, but importing levopt must not change a process-wide
setting. Every public entry point that builds or computes arrays runs inside :func:`scoped_x64`: arrays
carry explicit dtypes, so a float32 config stays float32 and a float64 config is float64 whether
or not the user enabled x64. The mode is thread-local in JAX, so worker threads enter it themselves.

The same decorator switches on the persistent compilation cache (:mod:`levopt.cache`) at the first
levopt call of the process: entering levopt is the one moment levopt may change JAX's settings.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import jax

from levopt.cache import enable_compilation_cache

P = ParamSpec("P")
R = TypeVar("R")


def scoped_x64(fn: Callable[P, R]) -> Callable[P, R]:
    """Decorate an entry point so that it runs under ``jax.enable_x64(True)`` (nesting is harmless),
    with the compilation cache switched on (:func:`levopt.cache.enable_compilation_cache`)."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        enable_compilation_cache()
        with jax.enable_x64(True):
            return fn(*args, **kwargs)

    return wrapper
