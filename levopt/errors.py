"""The exception hierarchy: user mistakes are `LevoptError`s with a one-line message."""

from __future__ import annotations


class LevoptError(Exception):
    """Base class of errors caused by the user's input; the CLI prints them as one line."""


class ConfigError(LevoptError, ValueError):
    """A configuration value is invalid: the message names the field, the value and what is allowed."""

    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(f"{field}: {message}" if field else message)


class ResourceError(ConfigError):
    """The computation a config asks for would not fit in memory: the message names the setting
    that scales it, the estimate, the memory available and the largest value that fits."""


class DataError(LevoptError, ValueError):
    """Price or returns data is malformed: the message names the file, the row and the problem."""


class InfeasibleError(LevoptError):
    """The constraints cannot be met; the message says which one binds and how to relax it."""


class SolverError(LevoptError):
    """A numerical solver failed (unbounded problem, NaN gradients, solver status)."""
