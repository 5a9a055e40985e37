"""Shared fixtures and helpers. Monte Carlo tolerances are stated in standard errors (Z)."""

from __future__ import annotations

import copy
import os
import sys
import types
from pathlib import Path

import pytest

# No persistent compilation cache in the test process: within one process it saves little, and
# the cross-process tests of test_cache.py start their own interpreters with a directory of their own.
os.environ.setdefault("LEVOPT_CACHE_DIR", "off")

Z = 4.0
"""Tolerance in standard errors for Monte Carlo checks: a correct implementation fails one such
check with probability about 6e-5."""

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

BASE = {
    "seed": 0,
    "paths": 20000,
    "horizon_days": 30,
    "steps_per_day": 1,
    "precision": "float64",
    "model": {"kind": "gbm", "mu": 0.0, "sigma": 0.8},
    "market": {
        "borrow_rate": 0.0,
        "cash_rate": 0.0,
        "fee": 0.0,
        "maintenance_margin": 0.005,
        "liquidation_fee": 0.0,
    },
    "policy": {"kind": "constant", "leverage": 5.0, "rebalance": "never"},
}


def make_config(**overrides) -> dict:
    """The base config with top-level keys replaced and ``section__key`` entries set inside sections."""
    cfg = copy.deepcopy(BASE)
    for key, value in overrides.items():
        if "__" in key:
            section, sub = key.split("__", 1)
            cfg[section][sub] = value
        else:
            cfg[key] = value
    return cfg


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not available")
    return SHARED_DATA


@pytest.fixture(scope="session", autouse=True)
def _x64():
    """Tests that call the engine's low-level functions directly need JAX's x64 mode for float64
    arrays; levopt's public entry points enable it themselves. Tests marked ``no_x64`` run with it
    off (see ``_no_x64``), which is how ``test_architecture.py`` checks that scoping."""
    import jax

    with jax.enable_x64(True):
        yield


@pytest.fixture(autouse=True)
def _no_x64(request):
    if request.node.get_closest_marker("no_x64") is None:
        yield
        return
    import jax

    with jax.enable_x64(False):
        yield


@pytest.fixture(scope="module", autouse=True)
def _release_compiled_programs():
    """Drop JAX's compiled programs after each test module. Every compiled CPU program keeps about
    three memory mappings (measured: 400 small programs add 1,270, and clear_caches returns them),
    and a process may hold 65,530 (vm.max_map_count). Without this, XLA segfaulted about 80% of
    the way through the suite, inside a compilation or a cache write, in three full runs and in
    different tests: the signature of running out of mappings."""
    yield
    import gc

    import jax

    jax.clear_caches()
    gc.collect()


@pytest.fixture
def ray_local():
    """A local Ray instance for one test (starting Ray takes ~10 s), shut down after it; levopt's
    executors use an instance that is already running and leave it running."""
    ray = pytest.importorskip("ray")
    import warnings

    with warnings.catch_warnings():
        # Ray forks its raylet from a process where JAX threads already run; harmless here.
        warnings.filterwarnings("ignore", message=r"os\.fork\(\) was called", category=RuntimeWarning)
        ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


# --- a fake ccxt -----------------------------------------------------------------------------------


class FakeBaseError(Exception):
    """ccxt.BaseError of the fake module."""


class FakeNetworkError(FakeBaseError):
    """ccxt.NetworkError of the fake module."""


class FakeAuthenticationError(FakeBaseError):
    """ccxt.AuthenticationError of the fake module."""


def install_fake_ccxt(
    monkeypatch, classes: dict[str, type], exchanges: list[str] | None = None, **attrs
) -> list:
    """Put a fake ``ccxt`` module in ``sys.modules``: its error hierarchy, ``exchanges`` (default:
    the ids of ``classes``), one class per id (a subclass of the given class that records each
    instance made) and ``attrs``; returns the list of instances made."""
    module = types.ModuleType("ccxt")
    module.BaseError = FakeBaseError
    module.NetworkError = FakeNetworkError
    module.AuthenticationError = FakeAuthenticationError
    module.exchanges = list(exchanges if exchanges is not None else classes)
    for name, value in attrs.items():
        setattr(module, name, value)
    made: list = []
    for ident, base in classes.items():

        def __init__(self, options=None, _base=base):
            _base.__init__(self, options)
            made.append(self)

        setattr(module, ident, type(ident, (base,), {"id": ident, "__init__": __init__}))
    monkeypatch.setitem(sys.modules, "ccxt", module)
    return made
