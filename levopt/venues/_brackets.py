"""Tiered maintenance-margin tables: Binance "brackets", Bybit "risk limits", Hyperliquid "margin tiers".

All three venues publish the same shape of rule. A position of notional N falls in the tier n with
floor_n < N ≤ cap_n, and

    maintenance margin = N × MMR_n − A_n,
    A_1 = 0,   A_n = floor_n × (MMR_n − MMR_{n−1}) + A_{n−1},

so that the requirement is a continuous, piecewise-linear function of N (Binance FAQ "How to
Calculate Liquidation Price of USDⓈ-M Futures Contracts": "Maintenance Amount on Level 3 =
250,000 × (1% − 0.5%) + 50 = 1,300"; Hyperliquid Docs "Margin tiers": maintenance_deduction(n) =
maintenance_deduction(n − 1) + notional_position_lower_bound(n) × (rate(n) − rate(n − 1))). Binance
calls A the maintenance amount ("cum"), Bybit and Hyperliquid the maintenance (margin) deduction.

Tables are read from CSV or YAML with :func:`load_brackets` and validated on construction;
:func:`write_brackets` writes one as a CSV file that reads back to the same table.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from levopt.errors import ConfigError
from levopt.io import atomic_write_text

COLUMNS = ("floor", "cap", "maintenance_rate", "maintenance_amount", "max_leverage")
"""Columns of a bracket table; ``maintenance_rate`` and ``maintenance_amount`` may be omitted."""

_REQUIRED = ("floor", "cap", "max_leverage")
_META_KEYS = ("symbol", "source", "published", "venue", "table", "note")
_CENT = 0.01


@dataclass(frozen=True)
class Bracket:
    """One notional tier of a venue's margin table: it holds positions with floor < notional ≤ cap.

    Attributes:
        floor: lower notional bound (quote currency), exclusive.
        cap: upper notional bound, inclusive; ``inf`` for an open-ended last tier.
        maintenance_rate: MMR, the maintenance margin per unit notional in this tier.
        maintenance_amount: Binance "cum" / Bybit and Hyperliquid "maintenance deduction".
        max_leverage: the largest leverage the venue allows for a position in this tier.
    """

    floor: float
    cap: float
    maintenance_rate: float
    maintenance_amount: float
    max_leverage: float

    @property
    def initial_margin_rate(self) -> float:
        """Initial margin per unit notional at the tier's maximum leverage, 1 / max_leverage."""
        return 1.0 / self.max_leverage

    def maintenance_margin(self, notional: float) -> float:
        """notional × MMR − maintenance amount, the requirement of a position in this tier."""
        return notional * self.maintenance_rate - self.maintenance_amount


@dataclass(frozen=True)
class BracketTable:
    """A validated, immutable tier table for one symbol.

    Construction checks that tiers start at zero notional, are contiguous and increasing, that
    rates lie in (0, 1), leverages are at least 1 and that the maintenance amounts chain
    continuously (module docstring). A violation raises :class:`~levopt.errors.ConfigError`
    naming the column, the row and what is allowed.

    Attributes:
        brackets: the tiers in increasing notional order.
        symbol: the instrument, e.g. ``"BTCUSDT"``.
        source: the document the figures come from (title and URL).
        published: when that document was published or the table took effect.
        path: the file the table was read from, used in error messages.
    """

    brackets: tuple[Bracket, ...]
    symbol: str = ""
    source: str = ""
    published: str = ""
    path: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "brackets", tuple(self.brackets))
        _validate(self.brackets, self.path or self.symbol or "bracket table")

    def __len__(self) -> int:
        return len(self.brackets)

    def __iter__(self):
        return iter(self.brackets)

    def __getitem__(self, index: int) -> Bracket:
        return self.brackets[index]

    @property
    def boundaries(self) -> tuple[float, ...]:
        """The notionals where one tier ends and the next begins (every cap but the last)."""
        return tuple(b.cap for b in self.brackets[:-1])

    def column(self, name: str) -> np.ndarray:
        """One column as a float64 array of shape (tiers,), e.g. ``column("maintenance_rate")``."""
        if name not in COLUMNS:
            raise ConfigError("column", f"unknown column {name!r}; allowed: {', '.join(COLUMNS)}")
        return np.array([getattr(b, name) for b in self.brackets], dtype=np.float64)

    def index(self, notional: float) -> int:
        """The 0-based tier holding ``|notional|``; notionals above the last cap map to the last tier."""
        return int(np.searchsorted(np.asarray(self.boundaries, dtype=np.float64), abs(notional), side="left"))

    @classmethod
    def from_rows(
        cls,
        rows: Iterable[Mapping[str, object]],
        *,
        symbol: str = "",
        source: str = "",
        published: str = "",
        path: str = "",
    ) -> BracketTable:
        """Build a table from mappings with the :data:`COLUMNS` keys.

        A row without ``maintenance_rate`` gets half the initial margin at its maximum leverage,
        1 / (2 × max_leverage) (Hyperliquid's rule); a row without ``maintenance_amount`` gets the
        continuous chaining A_n = floor_n × (MMR_n − MMR_{n−1}) + A_{n−1}.
        """
        where = path or symbol or "bracket table"
        brackets: list[Bracket] = []
        for i, row in enumerate(rows, start=1):
            unknown = sorted(set(row) - set(COLUMNS))
            if unknown:
                raise ConfigError(
                    unknown[0], f"{where} row {i}: unknown column; allowed: {', '.join(COLUMNS)}"
                )
            values = {}
            for name in COLUMNS:
                raw = row.get(name)
                if raw is None or (isinstance(raw, str) and not raw.strip()):
                    if name in _REQUIRED:
                        raise ConfigError(
                            name, f"{where} row {i}: missing; allowed: rows with {', '.join(_REQUIRED)}"
                        )
                    continue
                values[name] = _to_float(raw, name, f"{where} row {i}")
            if "maintenance_rate" not in values:
                lev = values["max_leverage"]
                values["maintenance_rate"] = 1.0 / (2.0 * lev) if lev > 0 else math.nan
            if "maintenance_amount" not in values:
                if brackets:
                    prev = brackets[-1]
                    values["maintenance_amount"] = (
                        values["floor"] * (values["maintenance_rate"] - prev.maintenance_rate)
                        + prev.maintenance_amount
                    )
                else:
                    values["maintenance_amount"] = 0.0
            brackets.append(Bracket(**values))
        return cls(tuple(brackets), symbol=symbol, source=source, published=published, path=path)


def _to_float(raw: object, name: str, where: str) -> float:
    if isinstance(raw, bool):
        raise ConfigError(name, f"{where}: {raw!r} is not a number")
    try:
        return float(str(raw).replace("_", "")) if isinstance(raw, str) else float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ConfigError(name, f"{where}: {raw!r} is not a number") from None


def _validate(brackets: Sequence[Bracket], where: str) -> None:
    if not brackets:
        raise ConfigError("brackets", f"{where}: empty table; allowed: at least one tier starting at floor 0")
    last = len(brackets)
    for i, b in enumerate(brackets, start=1):
        row = f"{where} row {i}"
        if not (math.isfinite(b.max_leverage) and b.max_leverage >= 1.0):
            raise ConfigError("max_leverage", f"{row}: {b.max_leverage:g}; allowed: a leverage of at least 1")
        for name in COLUMNS:
            value = getattr(b, name)
            open_cap = name == "cap" and i == last and value == math.inf
            if not (math.isfinite(value) or open_cap):
                raise ConfigError(
                    name,
                    f"{row}: {value} is not finite; allowed: finite numbers (cap may be inf on the last row)",
                )
        if i == 1 and b.floor != 0.0:
            raise ConfigError("floor", f"{row}: floor {b.floor:g}; allowed: the first tier starts at 0")
        if not b.cap > b.floor:
            raise ConfigError(
                "cap",
                f"{row}: cap {b.cap:g} is not above floor {b.floor:g}; allowed: tiers increasing in notional",
            )
        if i > 1:
            prev = brackets[i - 2]
            if not math.isclose(b.floor, prev.cap, rel_tol=1e-12, abs_tol=1e-9):
                raise ConfigError(
                    "floor",
                    f"{row}: floor {b.floor:g} differs from the previous cap {prev.cap:g}; "
                    "allowed: contiguous tiers increasing in notional, each floor equal to the previous cap",
                )
        if not 0.0 < b.maintenance_rate < 1.0:
            raise ConfigError(
                "maintenance_rate",
                f"{row}: {b.maintenance_rate:g}; allowed: a fraction of notional in (0, 1)",
            )
        expected = 0.0
        if i > 1:
            prev = brackets[i - 2]
            expected = b.floor * (b.maintenance_rate - prev.maintenance_rate) + prev.maintenance_amount
        tolerance = max(_CENT, 1e-9 * b.floor * b.maintenance_rate)
        if abs(b.maintenance_amount - expected) > tolerance:
            rule = (
                "0 on the first tier"
                if i == 1
                else f"floor × (MMR_{i} − MMR_{i - 1}) + amount_{i - 1} = {expected:.2f}"
            )
            raise ConfigError(
                "maintenance_amount",
                f"{row} (floor {b.floor:g}): {b.maintenance_amount:g} makes the maintenance margin jump at the "
                f"tier boundary; allowed: {rule}",
            )


def parse_brackets(text: str, *, fmt: str, where: str, symbol: str | None = None) -> BracketTable:
    """Parse a bracket table from CSV or YAML text (see :func:`load_brackets` for the formats)."""
    if fmt == "csv":
        meta: dict[str, str] = {}
        body: list[str] = []
        for line in text.splitlines():
            stripped = line.strip()
            if stripped.startswith("#"):
                key, sep, value = stripped.lstrip("#").partition(":")
                if sep and key.strip() in _META_KEYS and key.strip() not in meta:
                    meta[key.strip()] = value.strip()
            elif stripped:
                body.append(line)
        reader = csv.DictReader(io.StringIO("\n".join(body)))
        header = [h.strip() for h in (reader.fieldnames or [])]
        missing = [c for c in _REQUIRED if c not in header]
        if missing:
            raise ConfigError(
                missing[0],
                f"{where}: header {','.join(header) or '(none)'} lacks it; allowed columns: {', '.join(COLUMNS)}",
            )
        rows = [{(k or "").strip(): v for k, v in r.items()} for r in reader]
    elif fmt == "yaml":
        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError("brackets", f"{where}: not valid YAML ({exc})") from None
        if isinstance(doc, list):
            doc = {"brackets": doc}
        if not isinstance(doc, dict) or not isinstance(doc.get("brackets"), list):
            raise ConfigError(
                "brackets", f"{where}: expected a list of tiers or a mapping with a 'brackets' list"
            )
        extra = sorted(set(doc) - {"brackets", *_META_KEYS})
        if extra:
            raise ConfigError(extra[0], f"{where}: unknown key; allowed: brackets, {', '.join(_META_KEYS)}")
        meta = {k: str(doc[k]) for k in _META_KEYS if doc.get(k) is not None}
        rows = doc["brackets"]
        for i, row in enumerate(rows, start=1):
            if not isinstance(row, dict):
                raise ConfigError(
                    "brackets", f"{where} row {i}: expected a mapping with keys {', '.join(COLUMNS)}"
                )
    else:
        raise ConfigError("format", f"{where}: unknown table format {fmt!r}; allowed: csv, yaml")
    return BracketTable.from_rows(
        rows,
        symbol=symbol or meta.get("symbol", ""),
        source=meta.get("source", ""),
        published=meta.get("published", ""),
        path=where,
    )


def _csv_number(x: float) -> str:
    """``x`` as text that ``float()`` reads back to the same float: integers without a fraction,
    others as Python's shortest round-trip repr, ``inf`` for an open-ended cap."""
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    if x.is_integer() and abs(x) < 1e21:
        return str(int(x))
    return repr(float(x))


def _meta_line(key: str, value: str) -> str:
    return f"# {key}: {' '.join(str(value).split())}"


def format_brackets(
    table: BracketTable,
    *,
    source: str | None = None,
    published: str | None = None,
    venue: str | None = None,
    notes: Sequence[str] = (),
) -> str:
    """``table`` as the CSV text :func:`parse_brackets` reads (see :func:`write_brackets`)."""
    meta = {
        "venue": venue or "",
        "symbol": table.symbol,
        "source": table.source if source is None else source,
        "published": table.published if published is None else published,
    }
    lines = [_meta_line(k, v) for k, v in meta.items() if str(v).strip()]
    lines += [_meta_line("note", n) for n in notes if str(n).strip()]
    lines.append(",".join(COLUMNS))
    lines += [",".join(_csv_number(getattr(b, c)) for c in COLUMNS) for b in table.brackets]
    return "\n".join(lines) + "\n"


def write_brackets(
    table: BracketTable,
    path: str | Path,
    *,
    source: str | None = None,
    published: str | None = None,
    venue: str | None = None,
    notes: Sequence[str] = (),
) -> Path:
    """Write ``table`` as a dated CSV file that :func:`load_brackets` reads back to the same tiers.

    Every column of :data:`COLUMNS` is written, the maintenance amounts included (so the file says
    the figures in force rather than leaving them to be derived), each number as the shortest text
    that reads back to the same float. Metadata go on ``#`` lines before the header, as in the
    shipped tables under ``levopt/venues/data/``: ``# venue:``, ``# symbol:``, ``# source:``,
    ``# published:`` and any ``# note:`` lines, each on one line. The file is written atomically
    (a temporary file and a rename), so a reader never sees half a table.

    Args:
        table: the tiers to write.
        path: the ``.csv`` file; its directory is created when missing.
        source: where the figures come from (default: ``table.source``).
        published: when they were published or fetched (default: ``table.published``).
        venue: the venue name for the ``# venue:`` line (left out when not given).
        notes: free-text lines, written as ``# note:`` comments.

    Returns:
        ``path``, as a :class:`~pathlib.Path`.
    """
    text = format_brackets(table, source=source, published=published, venue=venue, notes=notes)
    return atomic_write_text(path, text)


def load_brackets(path: str | Path, *, symbol: str | None = None) -> BracketTable:
    """Read and validate a bracket table from a ``.csv`` or ``.yaml``/``.yml`` file.

    CSV: a header row naming :data:`COLUMNS` (``maintenance_rate`` and ``maintenance_amount``
    optional), one tier per row, ``inf`` allowed as the last cap. Lines starting with ``#`` are
    comments; ``# source: ...``, ``# published: ...`` and ``# symbol: ...`` are kept as metadata.
    YAML: a list of tier mappings, or a mapping with ``brackets`` (that list) and optional
    ``symbol``, ``source``, ``published``.

    Args:
        path: the file.
        symbol: the instrument; defaults to the file's ``symbol`` metadata.

    Returns:
        The validated :class:`BracketTable`; use :meth:`levopt.venues.Venue.with_brackets` to put
        it in place of a venue's shipped table.

    Raises:
        ConfigError: unreadable file, unknown column, or a table that is not increasing in
            notional, has a rate outside (0, 1) or maintenance amounts that are not continuous.
    """
    p = Path(path)
    suffix = p.suffix.lower()
    fmt = {".csv": "csv", ".yaml": "yaml", ".yml": "yaml"}.get(suffix)
    if fmt is None:
        raise ConfigError(
            "path", f"{p}: unknown table format {suffix or '(none)'}; allowed: .csv, .yaml, .yml"
        )
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError("path", f"{p}: cannot read ({exc.strerror or exc})") from None
    return parse_brackets(text, fmt=fmt, where=str(p), symbol=symbol)
