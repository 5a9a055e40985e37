"""Bounds on the sizes a config may ask for, set by how the engine counts (not by taste)."""

from __future__ import annotations

MAX_INDEX = 2**31 - 1
"""Largest path count, step count, chunk size and scenario count: the engine indexes paths and
steps with 32-bit integers."""

MAX_SEED = 2**63 - 1
"""Largest seed: JAX's PRNG key takes a 64-bit signed integer."""
