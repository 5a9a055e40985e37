"""Reading a run directory's saved results, and the wording shared by the plots and the HTML.

The report reads only what ``levopt run | evaluate | sweep | calibrate`` saved; it never simulates.
Everything here is defensive: a missing file or field means a missing section, not an error.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from levopt.errors import ConfigError

RESULT_FILES = ("results.json", "result.json", "evaluate.json")
"""Single-run result files, in order of preference: ``levopt run`` writes ``results.json``;
``levopt evaluate --out`` may be pointed at any of these names."""

INPUT_FILES = (*RESULT_FILES, "results.parquet", "sweep.json", "posterior.json", "draws.parquet", "ppc.json")

METRIC_INFO: dict[str, tuple[str, str]] = {
    # name: (what it is, how to show it: "pct" for fractions shown as percent, "pct_yr" per year, "num")
    "log_growth": ("annualized expected log-growth E[log W_T/W_0]/T", "pct_yr"),
    "mean_return": ("expected return over the horizon E[W_T/W_0 − 1]", "pct"),
    "cvar": ("expected shortfall of the log-loss over the horizon", "pct"),
    "var": ("value-at-risk of the log-loss over the horizon", "pct"),
    "liquidation_probability": ("probability of liquidation (continuous monitoring)", "pct"),
    "liquidation_probability_discrete": ("probability of liquidation (checked at steps)", "pct"),
    "max_drawdown": ("expected maximum drawdown of equity", "pct"),
    "gross_leverage": ("largest gross leverage Σ|w|", "lev"),
}

PARAM_UNITS: dict[str, str] = {
    "mu": "drift μ (per year)",
    "sigma": "volatility σ (per year)",
    "lam": "jump intensity λ (jumps per year)",
    "jump_mean": "mean jump (log-price)",
    "jump_std": "jump s.d. (log-price)",
    "omega": "GARCH ω (variance per step)",
    "alpha": "GARCH α (per step)",
    "beta": "GARCH β (per step)",
    "gamma": "GJR γ (per step)",
    "nu": "Student-t degrees of freedom ν",
    "h_last": "last conditional variance (per step)",
    "persistence": "persistence α + β + γ/2",
    "vol_long_run": "long-run volatility (per year)",
    "vol_last": "volatility at end of data (per year)",
    "vol_total": "total volatility (per year)",
}


@dataclass
class RunInputs:
    """What a run directory holds. Every field is ``None`` when its file is absent."""

    run_dir: Path
    results: dict[str, Any] | None = None
    results_file: Path | None = None
    sweep: Any = None  # pandas.DataFrame of results.parquet
    sweep_meta: dict[str, Any] | None = None
    posterior: dict[str, Any] | None = None
    posterior_source: str | None = None
    draws: Any = None  # pandas.DataFrame of draws.parquet
    ppc: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def kind(self) -> str | None:
        """``run`` (an optimized policy), ``evaluate`` (metrics of a given policy) or ``None``."""
        if not self.results:
            return None
        return "run" if "out_of_sample" in self.results or "policy" in self.results else "evaluate"

    @property
    def config(self) -> dict[str, Any]:
        if self.results and isinstance(self.results.get("config"), dict):
            return self.results["config"]
        if self.sweep_meta and isinstance(self.sweep_meta.get("config"), dict):
            return self.sweep_meta["config"]
        return {}

    @property
    def swept_keys(self) -> list[str]:
        """The sweep's keys (sweep.json), else the table's columns that are not results."""
        if self.sweep is None:
            return []
        keys = [k for k in (self.sweep_meta or {}).get("keys") or [] if k in self.sweep.columns]
        if keys:
            return keys
        reserved = ("point", "point_id", "wall_s", "converged", "iterations")
        return [
            c
            for c in self.sweep.columns
            if c not in reserved and not c.startswith(("metrics.", "stderr.", "constraints.", "policy."))
        ]


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(str(path), f"cannot read it as JSON ({exc})") from None


def _read_parquet(path: Path) -> Any:
    import pandas as pd

    try:
        return pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several unrelated types for a damaged file
        raise ConfigError(str(path), f"cannot read it as Parquet ({type(exc).__name__}: {exc})") from None


def load_inputs(run_dir: str | Path) -> RunInputs:
    """Read every result file present in ``run_dir``.

    Raises:
        ConfigError: the directory does not exist, holds none of the known result files, or a file
            is not valid JSON / Parquet.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        what = "is a file, not a run directory" if run_dir.exists() else "does not exist"
        raise ConfigError(
            "run_dir", f"{run_dir} {what}; give the --out directory of levopt run, sweep or calibrate"
        )
    if not any((run_dir / name).is_file() for name in INPUT_FILES):
        raise ConfigError(
            "run_dir",
            f"no results.json in {run_dir} (nor result.json, results.parquet, sweep.json or posterior.json); "
            "run 'levopt run CONFIG --out DIR' (or sweep / calibrate --out DIR) first",
        )
    inputs = RunInputs(run_dir)
    for name in RESULT_FILES:
        path = run_dir / name
        if path.is_file():
            data = _read_json(path)
            if not isinstance(data, dict):
                raise ConfigError(str(path), f"expected a JSON object of results, got {type(data).__name__}")
            inputs.results, inputs.results_file = data, path
            break
    if (run_dir / "sweep.json").is_file():
        meta = _read_json(run_dir / "sweep.json")
        inputs.sweep_meta = meta if isinstance(meta, dict) else None
    if (run_dir / "results.parquet").is_file():
        table = _read_parquet(run_dir / "results.parquet")
        inputs.sweep = table if len(table) else None
        if not len(table):
            inputs.notes.append("results.parquet has no finished sweep points yet.")
    if (run_dir / "posterior.json").is_file():
        inputs.posterior, inputs.posterior_source = _read_json(run_dir / "posterior.json"), "posterior.json"
    elif inputs.results and isinstance(inputs.results.get("calibration"), dict):
        inputs.posterior, inputs.posterior_source = (
            inputs.results["calibration"],
            "results.json (calibration)",
        )
    if (run_dir / "draws.parquet").is_file():
        inputs.draws = _read_parquet(run_dir / "draws.parquet")
    if (run_dir / "ppc.json").is_file():
        ppc = _read_json(run_dir / "ppc.json")
        inputs.ppc = ppc if isinstance(ppc, dict) else None
    return inputs


# ---------------------------------------------------------------------------------------------
# Numbers and words


def num(value: Any) -> float:
    """A JSON number as a float: ``null`` -> nan, ``"inf"``/``"-inf"`` (how io.write_json stores them)."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def is_number(value: Any) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        or (isinstance(value, str) and value in ("inf", "-inf"))
    )


def base_metric(label: str) -> str:
    """``cvar(level=0.95)`` -> ``cvar``."""
    return label.split("(", 1)[0]


def metric_style(label: str) -> str:
    return METRIC_INFO.get(base_metric(label), ("", "num"))[1]


def metric_description(label: str) -> str:
    return METRIC_INFO.get(base_metric(label), ("", "num"))[0]


_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def fmt_number(value: Any, digits: int = 4) -> str:
    """A number with ``digits`` significant digits; blanks for missing, words for infinities."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    x = num(value)
    if math.isnan(x):
        return "–" if not isinstance(value, str) else str(value)
    if math.isinf(x):
        return "∞" if x > 0 else "−∞"
    if x == 0:
        return "0"
    if isinstance(value, int) and abs(value) < 10**9:
        return f"{value:,}"
    text = f"{x:.{digits}g}"
    if "e" in text:
        mantissa, exp = text.split("e")
        return f"{mantissa}×10{str(int(exp)).translate(_SUPERSCRIPT)}"
    return text.replace("-", "−")


def fmt_metric(label: str, value: Any, stderr: Any = None) -> tuple[str, str]:
    """``(value, ± stderr)`` formatted for the metric: percentages for fractions."""
    style = metric_style(label)
    x = num(value)
    se = num(stderr) if stderr is not None else math.nan
    if style in ("pct", "pct_yr") and math.isfinite(x):
        unit = " %/yr" if style == "pct_yr" else " %"
        text = _sig(100 * x)
        err = "" if math.isnan(se) else f"± {100 * se:.2g}" if math.isfinite(se) else "± ∞"
        return text.replace("-", "−") + unit, err
    if style == "lev" and math.isfinite(x):
        return fmt_lev(x), "" if math.isnan(se) else f"± {se:.2g}"
    return fmt_number(value), "" if math.isnan(se) else f"± {fmt_number(se, 2)}"


def _sig(x: float, digits: int = 3) -> str:
    """``x`` with ``digits`` significant digits, keeping trailing zeros (37.0, 0.250); 0 as 0."""
    if x == 0:
        return "0"
    if abs(x) >= 10**digits:
        return f"{x:,.0f}"
    text = f"{x:#.{digits}g}"
    if "e" in text:
        return f"{x:.{digits - 1}e}"
    return text.rstrip(".")


def fmt_lev(x: float) -> str:
    x = num(x)
    if not math.isfinite(x):
        return fmt_number(x)
    text = f"{x:.1f}x" if abs(x) >= 10 else f"{x:.2f}x"
    return text.replace("-", "−")


def fmt_duration(seconds: Any) -> str:
    s = num(seconds)
    if not math.isfinite(s):
        return "–"
    if s < 1:
        return f"{1000 * s:.0f} ms"
    if s < 120:
        return f"{s:.1f} s"
    return f"{s / 60:.1f} min"


def goal(config: dict[str, Any]) -> tuple[str, float] | None:
    """``(metric label, +1 maximize / -1 minimize)`` of a config's objective, or None."""
    obj = config.get("objective")
    if not isinstance(obj, dict):
        return None
    for verb, sign in (("maximize", 1.0), ("minimize", -1.0)):
        spec = obj.get(verb)
        if isinstance(spec, str):
            return spec, sign
        if isinstance(spec, dict) and "metric" in spec:
            opts = ",".join(f"{k}={v}" for k, v in sorted(spec.items()) if k != "metric")
            return (f"{spec['metric']}({opts})" if opts else spec["metric"]), sign
    return None


def rebalance_words(config: dict[str, Any]) -> str:
    policy = config.get("policy") or {}
    every = policy.get("rebalance", 1)
    if every == "never":
        return "opened at the start and held without rebalancing"
    steps_per_day = num(config.get("steps_per_day", 1)) or 1.0
    try:
        days = float(every) / steps_per_day
    except (TypeError, ValueError):
        return f"rebalanced every {every} steps"
    if math.isclose(days, 1.0):
        return "rebalanced daily"
    if math.isclose(days, 7.0):
        return "rebalanced weekly"
    if days < 1:
        hours = 24 * days
        return "rebalanced hourly" if math.isclose(hours, 1.0) else f"rebalanced every {hours:.3g} hours"
    return f"rebalanced every {days:.3g} days"


def policy_values(
    inputs_results: dict[str, Any] | None, config: dict[str, Any]
) -> tuple[dict[str, Any], set[str]]:
    """The policy's parameter values (optimized ones override the config) and the optimized names.

    A free parameter that was not optimized (``{init, min, max}`` in an evaluated config) takes its
    ``init``.
    """
    spec = config.get("policy") or {}
    values: dict[str, Any] = {}
    for name, value in spec.items():
        if isinstance(value, dict):
            if "init" in value:
                values[name] = value["init"]
        else:
            values[name] = value
    optimized = dict((inputs_results or {}).get("policy") or {})
    values.update(optimized)
    return values, set(optimized)


def _flat(value: Any) -> list[float] | None:
    """A number or a (nested) list of numbers as a flat list, else None."""
    if is_number(value):
        return [num(value)]
    if isinstance(value, list):
        out: list[float] = []
        for v in value:
            sub = _flat(v)
            if sub is None:
                return None
            out.extend(sub)
        return out
    return None


def _scalar(value: Any) -> float | None:
    flat = _flat(value)
    return flat[0] if flat is not None and len(flat) == 1 else None


def describe_policy(
    results: dict[str, Any] | None, config: dict[str, Any]
) -> tuple[str, dict[str, Any] | None]:
    """The policy in plain words, and a schedule table ``{"columns": [...], "rows": [[...]]}`` when
    the policy is a schedule.

    Examples: "Hold 2.30x leverage, rebalanced daily." / "Follow a 6-segment leverage schedule ...".
    """
    spec = config.get("policy") or {}
    kind = spec.get("kind", "constant")
    values, _ = policy_values(results, config)
    rebalance = rebalance_words(config)
    cap = _scalar(values.get("max_leverage"))
    cap_words = f", capped at {fmt_lev(cap)}" if cap is not None else ""
    if kind in ("constant", "schedule"):
        lev = values.get("leverage", values.get("weights"))
        is_weights = "leverage" not in values and "weights" in values
        if lev is None:
            return f"Policy '{kind}' (no leverage recorded).", None
        if kind == "constant":
            flat = _flat(lev)
            if flat is None:
                return f"Hold leverage {lev}, {rebalance}.", None
            if len(flat) == 1:
                return f"Hold {fmt_lev(flat[0])} leverage, {rebalance}.", None
            legs = ", ".join(f"asset {i + 1}: {fmt_lev(w)}" for i, w in enumerate(flat))
            return f"Hold {legs} (gross {fmt_lev(sum(abs(w) for w in flat))}), {rebalance}.", None
        return _describe_schedule(lev, is_weights, config, rebalance)
    if kind == "vol_target":
        target = _scalar(values.get("target_vol"))
        est = spec.get("estimator", "ewma")
        how = (
            "the model's conditional volatility"
            if est == "model"
            else (f"an EWMA estimate (half-life {fmt_number(spec.get('half_life_days', 10), 3)} days)")
        )
        target_words = f"{100 * target:.3g}%" if target is not None else str(values.get("target_vol"))
        return (
            f"Scale leverage to target {target_words} annualized volatility, using {how}{cap_words}, "
            f"{rebalance}."
        ), None
    if kind == "cppi":
        m, floor = _scalar(values.get("multiplier")), _scalar(values.get("floor"))
        m_words = fmt_number(m, 3) if m is not None else str(values.get("multiplier"))
        f_words = f"{100 * floor:.3g}%" if floor is not None else str(values.get("floor"))
        return (
            f"CPPI: exposure = {m_words} × (equity − a floor at {f_words} of initial equity){cap_words}, "
            f"{rebalance}."
        ), None
    if kind == "fractional_kelly":
        c = _scalar(values.get("fraction"))
        c_words = fmt_number(c, 3) if c is not None else str(values.get("fraction"))
        hl = fmt_number(spec.get("half_life_days", 90), 3)
        return (
            f"Hold {c_words} × the Kelly leverage (μ − r)/σ², from EWMA estimates with a {hl}-day "
            f"half-life{cap_words}, {rebalance}."
        ), None
    shown = ", ".join(f"{k} = {v}" for k, v in values.items() if k not in ("kind", "rebalance"))
    return f"Policy '{kind}': {shown}; {rebalance}.", None


def _describe_schedule(lev: Any, is_weights: bool, config: dict[str, Any], rebalance: str) -> tuple[str, Any]:
    horizon = num(config.get("horizon_days"))
    rows_in = lev if isinstance(lev, list) else [lev]
    segments = int(num((config.get("policy") or {}).get("segments", len(rows_in)))) or len(rows_in)
    if len(rows_in) == 1 and segments > 1:
        rows_in = rows_in * segments
    per_seg = [(_flat(r) or [math.nan]) for r in rows_in]
    n_assets = max(len(r) for r in per_seg)
    gross = [sum(abs(w) for w in r) for r in per_seg]
    n = len(per_seg)
    span = f" over {fmt_number(horizon, 4)} days" if math.isfinite(horizon) else ""
    what = "gross leverage" if n_assets > 1 or is_weights else "leverage"
    text = (
        f"Follow a {n}-segment leverage schedule{span}: {what} from {fmt_lev(min(gross))} to "
        f"{fmt_lev(max(gross))} (mean {fmt_lev(sum(gross) / n)}), {rebalance}."
    )
    columns = ["segment", "days"] + (
        ["leverage"] if n_assets == 1 else [f"asset {a + 1}" for a in range(n_assets)] + ["gross"]
    )
    rows = []
    for i, r in enumerate(per_seg):
        if math.isfinite(horizon):
            lo, hi = horizon * i / n, horizon * (i + 1) / n
            days = f"{lo:.4g}–{hi:.4g}"
        else:
            days = "–"
        cells = [str(i + 1), days] + [fmt_lev(w) for w in r]
        if n_assets > 1:
            cells.append(fmt_lev(gross[i]))
        rows.append(cells)
    return text, {"columns": columns, "rows": rows}
