"""Reading a run directory's saved results, and the wording shared by the plots and the HTML.

The report reads only what ``levopt run | evaluate | sweep | calibrate`` saved; it never simulates.
Result files are validated against their typed models (:mod:`levopt.results`) when read: a
damaged or foreign file is one error naming the file and the field. A missing file means a
missing section of the report, not an error.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from levopt.errors import ConfigError
from levopt.fmt import fmt_lev, fmt_number, num, sig
from levopt.objectives import METRICS, Metric, MetricRef, get_metric
from levopt.policies import POLICIES, Policy
from levopt.results import parse_result

RESULT_FILES = ("results.json", "result.json", "evaluate.json")
"""Single-run result files, in order of preference: ``levopt run`` writes ``results.json``;
``levopt evaluate --out`` may be pointed at any of these names."""

INPUT_FILES = (*RESULT_FILES, "results.parquet", "sweep.json", "posterior.json", "draws.parquet", "ppc.json")

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
            parse_result(data, source=str(path))  # typed check: one error naming the file and field
            inputs.results, inputs.results_file = data, path
            break
    if (run_dir / "sweep.json").is_file():
        meta = _read_json(run_dir / "sweep.json")
        parse_result(meta, "sweep", str(run_dir / "sweep.json"))
        inputs.sweep_meta = meta
    if (run_dir / "results.parquet").is_file():
        table = _read_parquet(run_dir / "results.parquet")
        inputs.sweep = table if len(table) else None
        if not len(table):
            inputs.notes.append("results.parquet has no finished sweep points yet.")
    if (run_dir / "posterior.json").is_file():
        posterior = _read_json(run_dir / "posterior.json")
        parse_result(posterior, "calibration", str(run_dir / "posterior.json"))
        inputs.posterior, inputs.posterior_source = posterior, "posterior.json"
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


def base_metric(label: str) -> str:
    """``cvar(level=0.95)`` -> ``cvar``."""
    return label.split("(", 1)[0]


def _catalogue(label: str) -> Metric | None:
    name = base_metric(label)
    return get_metric(name) if name in METRICS else None


def metric_style(label: str) -> str:
    """How a metric is shown (the catalogue's unit; ``num`` for metrics this process does not know)."""
    metric = _catalogue(label)
    return metric.unit if metric is not None else "num"


def metric_description(label: str) -> str:
    metric = _catalogue(label)
    return metric.description if metric is not None else ""


DEGENERATE_RELATIVE = 1e-12
"""A standard error at or below this fraction of its value (or exactly 0) is degenerate: every path
(every tail path, for a quantile statistic) gave the same number, and the s.e. is rounding noise."""


def stderr_state(value: Any, stderr: Any) -> str:
    """``"missing"`` (None or NaN), ``"infinite"``, ``"degenerate"`` (see
    :data:`DEGENERATE_RELATIVE`) or ``"ok"``."""
    x, se = num(value), num(stderr) if stderr is not None else math.nan
    if math.isnan(se):
        return "missing"
    if math.isinf(se):
        return "infinite"
    if se == 0 or (math.isfinite(x) and abs(se) <= DEGENERATE_RELATIVE * abs(x)):
        return "degenerate"
    return "ok"


def degenerate_words(label: str) -> str:
    """What a degenerate standard error of the metric means, in words."""
    metric = _catalogue(label)
    if metric is not None and metric.fn is None:
        return "exact (not simulated)"
    if metric is not None and metric.aggregate == "statistic":
        return "± 0 (all tail paths identical)"
    return "± 0 (same on every path)"


def round_to_stderr(value: float, stderr: float, digits: int = 2) -> tuple[str, str]:
    """``value`` and ``stderr`` as text: the s.e. to ``digits`` significant digits and the value
    rounded to the same decimal place (1.3124 ± 0.4123 -> "1.31", "0.41"). Both finite, s.e. > 0."""
    decimals = digits - 1 - math.floor(math.log10(abs(stderr)))
    if abs(round(stderr, decimals)) >= 10 ** (digits - decimals):  # 0.0996 rounds up to 0.100
        decimals -= 1

    def text(x: float) -> str:
        if decimals > 0:
            return f"{round(x, decimals):.{decimals}f}"
        return f"{round(x, decimals):,.0f}"

    return text(value).replace("-", "−"), text(abs(stderr))


def fmt_metric(label: str, value: Any, stderr: Any = None) -> tuple[str, str]:
    """``(value, ± stderr)`` formatted for the metric: percentages for fractions, leverages as
    0.33x; with a standard error the value is rounded to its 2 significant digits, and a degenerate
    s.e. (:func:`stderr_state`) is said in words."""
    style = metric_style(label)
    x = num(value)
    state = stderr_state(value, stderr)
    factor = 100.0 if style in ("pct", "pct_yr") else 1.0
    unit = {"pct": " %", "pct_yr": " %/yr", "lev": "x"}.get(style, "")
    if state == "ok" and math.isfinite(x):
        shown, err = round_to_stderr(factor * x, factor * num(stderr))
        return shown + unit, f"± {err}"
    err = {"missing": "", "infinite": "± ∞", "degenerate": degenerate_words(label)}.get(state, "")
    if not math.isfinite(x):
        return fmt_number(value), err
    if style == "lev":
        return fmt_lev(x), err
    if style in ("pct", "pct_yr"):
        return sig(100 * x).replace("-", "−") + unit, err
    return fmt_number(value), err


_SHORT_NAMES = {
    "log_growth": "expected log-growth",
    "cvar": "CVaR",
    "var": "VaR",
    "liquidation_probability_discrete": "liquidation probability (checked at steps)",
    "max_drawdown": "expected max drawdown",
}
"""Names of built-in metrics for people where ``name`` with spaces reads badly."""


def metric_ref(label: str, config: dict[str, Any]) -> MetricRef | None:
    """The metric and options behind a result label: a labelled entry of the config's ``metrics``
    or ``objective``, a catalogue name, or ``name(option=value,...)``; None if unknown."""
    entries: list[Any] = list(config.get("metrics") or [])
    objective = config.get("objective") or {}
    if isinstance(objective, dict):
        entries += [objective.get("maximize"), objective.get("minimize")]
        entries += list(objective.get("constraints") or [])
    for entry in entries:
        if isinstance(entry, dict) and "metric" in entry:
            body = {k: v for k, v in entry.items() if k not in ("min", "max")}
            try:
                ref = MetricRef.model_validate(body)
            except ValueError:
                continue
            if ref.key == label:
                return ref
    name, _, rest = label.partition("(")
    if name not in METRICS:
        return None
    options: dict[str, Any] = {}
    for part in filter(None, rest.rstrip(")").split(",")):
        key, _, text = part.partition("=")
        try:
            options[key.strip()] = float(text)
        except ValueError:
            options[key.strip()] = text.strip()
    return MetricRef.model_validate({"metric": name, **options})


def metric_title(label: str, config: dict[str, Any]) -> str:
    """A result label in words with its horizon and options: ``cvar(level=0.95)`` of a 90-day run
    -> "CVaR 95% of 90-day log-loss"; ``mean_return`` -> "mean return over 90 days"."""
    ref = metric_ref(label, config)
    metric = _catalogue(ref.metric) if ref is not None else None
    if ref is None or metric is None:
        return label
    options = metric.defaults() | ref.options
    horizon = num(config.get("horizon_days"))
    days = f"{fmt_number(horizon, 4)}-day" if math.isfinite(horizon) else "horizon"
    words = [_SHORT_NAMES.get(ref.metric, ref.metric.replace("_", " "))]
    if isinstance(options.get("level"), int | float):
        words.append(f"{100 * options['level']:g}%")
    if "returns" in options:
        words.append(f"of {days} " + ("log-loss" if options["returns"] == "log" else "loss (simple return)"))
    elif metric.unit == "pct" and math.isfinite(horizon):
        words.append(f"over {fmt_number(horizon, 4)} days")
    return " ".join(words) + (f" [{ref.label}]" if ref.label else "")


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
            return MetricRef.model_validate(spec).key, sign
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


def policy_class(kind: Any) -> type[Policy] | None:
    """The registered policy class of a saved config's kind (None for kinds this process lacks)."""
    return POLICIES.get(kind) if isinstance(kind, str) and kind in POLICIES else None


def describe_policy(
    results: dict[str, Any] | None, config: dict[str, Any]
) -> tuple[str, dict[str, Any] | None]:
    """The policy in plain words, and a table ``{"columns": [...], "rows": [[...]]}`` where the kind
    has one (a schedule's segments): asked of the policy's class (:meth:`~levopt.policies.Policy.describe`).

    Examples: "Hold 2.30x leverage, rebalanced daily." / "Follow a 6-segment leverage schedule ...".
    """
    spec = config.get("policy") or {}
    kind = spec.get("kind", "constant")
    values, _ = policy_values(results, config)
    policy_cls = policy_class(kind) or Policy
    return policy_cls.describe(values, spec, num(config.get("horizon_days")), rebalance_words(config))
