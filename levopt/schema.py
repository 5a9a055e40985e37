"""The base of every config schema: unknown keys and non-finite numbers are errors."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, ValidationError

from levopt.errors import ConfigError


class StrictModel(BaseModel):
    """A frozen pydantic model that rejects unknown keys, NaN and ±inf."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


_SCALAR_TAGS = {"float", "int", "str", "bool", "none"}


def _is_type_tag(part: object) -> bool:
    """pydantic's names for union members and validators in an error location (``float``,
    ``list[float]``, ``FreeParam``, ``function-after[...]``): not config keys."""
    if not isinstance(part, str):
        return False
    return part in _SCALAR_TAGS or "[" in part or part[:1].isupper() or part.startswith("function-")


def format_validation_error(exc: ValidationError, prefix: str = "") -> ConfigError:
    """Turn pydantic's report into one line naming the offending field: the first error that
    reaches deepest into the config (in a union such as ``float | {init, min, max}``, the member
    the value was meant for, e.g. ``policy.leverage.init`` rather than ``policy.leverage``)."""
    errors = exc.errors()
    err = max(errors, key=lambda e: sum(not _is_type_tag(p) for p in e["loc"]))
    loc = ".".join(str(p) for p in err["loc"] if not _is_type_tag(p))
    field = ".".join(p for p in (prefix, loc) if p)
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        parent = field.rsplit(".", 1)[0] if "." in field else "top level"
        return ConfigError(field, f"unknown key (not allowed in {parent})")
    if err["type"] == "missing":
        return ConfigError(field, "required key is missing")
    if "input" in err and "got" not in msg and not isinstance(err["input"], dict):
        msg = f"{msg} (got {err['input']!r})"
    return ConfigError(field, msg)
