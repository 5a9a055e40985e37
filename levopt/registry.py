"""Name -> object registries, so users extend levopt without editing it."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from levopt.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """A mapping from names to registered objects (path models, policies, objectives).

    Besides registered names, ``"package.module:attribute"`` resolves by import, so a config can
    point at user code that was never registered.
    """

    def __init__(self, what: str):
        self.what = what
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            if name in self._items and self._items[name] is not obj:
                raise ValueError(f"{self.what} {name!r} is already registered")
            self._items[name] = obj
            return obj

        return decorator

    def get(self, name: str, field: str = "kind") -> T:
        if name in self._items:
            return self._items[name]
        if ":" in name:
            module, _, attr = name.partition(":")
            try:
                return getattr(importlib.import_module(module), attr)
            except (ImportError, AttributeError) as exc:
                raise ConfigError(field, f"cannot import {name!r} ({exc})") from None
        raise ConfigError(
            field,
            f"unknown {self.what} {name!r}; allowed: {', '.join(sorted(self._items))} "
            "or 'package.module:name'",
        )

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._items))


def check_implements(cls: type, base: type, what: str) -> None:
    """Raise TypeError when ``cls`` leaves abstract methods or declared fields of ``base`` undefined."""
    missing = sorted(getattr(cls, "__abstractmethods__", ()))
    missing += [f"field {v}" for v in sorted(getattr(cls, "__abstractvars__", ()))]
    if not isinstance(getattr(cls, "Config", None), type):
        missing.append("class attribute Config (the pydantic schema of its config section)")
    if not isinstance(getattr(cls, "example", None), dict):
        missing.append("class attribute example (a config section that builds it)")
    if missing:
        raise TypeError(f"{what} {cls.__name__} does not implement {', '.join(missing)} of {base.__name__}")
