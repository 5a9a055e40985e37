"""What ``levopt evaluate | run`` show in the terminal: metric, policy and constraint tables with
units and standard errors, the optimizer's progress bar, and strict JSON for ``--json``.

Numbers are worded as in the report (:mod:`levopt.report`): fractions as percent over the horizon
or %/yr, leverages as 0.33x, each value rounded to the 2 significant digits of its standard error,
and a degenerate standard error said in words instead of printed as 1e-16.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
from rich.console import Console, Group
from rich.markup import escape
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from levopt.fmt import fmt_duration, fmt_lev, fmt_number, num
from levopt.io import dumps_json
from levopt.optimize import SearchProgress
from levopt.report import (
    describe_policy,
    fmt_metric,
    goal,
    metric_title,
    policy_class,
    round_to_stderr,
    stderr_state,
)
from levopt.results import parameter_arrays, parameter_label

# ---------------------------------------------------------------------------------------------
# Metrics


def metrics_table(
    title: str, metrics: dict[str, Any], stderr: dict[str, Any], config: dict[str, Any] | None = None
) -> Table:
    """One row per metric: its title with horizon and options, value with unit, ± one s.e."""
    config = config or {}
    table = Table(title=title, title_justify="left", caption="± one Monte Carlo standard error")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("± s.e.", justify="left")
    for label, value in metrics.items():
        shown, err = fmt_metric(label, value, stderr.get(label))
        table.add_row(escape(metric_title(label, config)), shown, err or "–")
    return table


# ---------------------------------------------------------------------------------------------
# The policy


def _asset_names(config: dict[str, Any], n: int) -> list[str]:
    """The model's column names when it has them (a bootstrap of named columns), else asset 1..n."""
    columns = (config.get("model") or {}).get("columns")
    if isinstance(columns, list) and len(columns) == n:
        return [str(c) for c in columns]
    return [f"asset {i + 1}" for i in range(n)]


def _param_text(name: str, value: float, se: float) -> tuple[str, str]:
    """A policy parameter and its s.e.: leverages as 0.33x, the value rounded to the s.e."""
    lev = "leverage" in name or name == "weights"
    if not math.isfinite(value):
        return fmt_number(value), "–"
    if stderr_state(value, se) == "ok":
        shown, err = round_to_stderr(value, se)
        return shown + ("x" if lev else ""), f"± {err}"
    err = "± 0 (all searches agree)" if stderr_state(value, se) == "degenerate" else "–"
    return (fmt_lev(value) if lev else fmt_number(value, 4)), err


def _flag(label: str, loose: set[str]) -> str:
    return "[yellow]not identified[/]" if label in loose else ""


def policy_table(result: dict[str, Any]) -> Table:
    """The optimized policy: a schedule as segments with their day ranges (one column per asset
    when there are several), other policies one row per parameter (per asset for weights); each
    value with its s.e. over the replicate searches and the "not identified" flag."""
    config = result.get("config") or {}
    spec = config.get("policy") or {}
    policy = result.get("policy") or {}
    errors = result.get("policy_stderr") or {}
    loose = set(result.get("not_identified") or [])
    searches = (result.get("optimizer") or {}).get("replicates", 1)
    caption = (
        f"± s.e.: spread of the optimum over {searches} independent searches"
        if searches and searches > 1
        else "one search: no standard error (set optimizer.replicates >= 2)"
    )
    table = Table(title="optimized policy", title_justify="left", caption=caption)
    cls = policy_class(spec.get("kind"))
    horizon = num(config.get("horizon_days"))
    for name, values, se in parameter_arrays(policy, errors):
        if cls is not None and cls.segmented and values.ndim >= 1:
            _segment_rows(table, name, values, se, horizon, config, loose)
        else:
            _parameter_rows(table, name, values, se, config, loose)
    return table


def _segment_rows(
    table: Table,
    name: str,
    values: np.ndarray,
    se: np.ndarray,
    horizon: float,
    config: dict[str, Any],
    loose: set[str],
) -> None:
    n = values.shape[0]
    per_asset = values.ndim == 2
    assets = _asset_names(config, values.shape[1]) if per_asset else [name]
    if not table.columns:
        table.add_column("segment", justify="right")
        table.add_column("days", justify="right")
        for asset in assets:
            table.add_column(escape(asset), justify="right")
            table.add_column("± s.e.")
        if loose:
            table.add_column("")
    for i in range(n):
        days = f"{horizon * i / n:.4g}–{horizon * (i + 1) / n:.4g}" if math.isfinite(horizon) else "–"
        cells, flags = [], []
        for a in range(len(assets)):
            idx = (i, a) if per_asset else (i,)
            label = parameter_label(name, idx)
            cells += _param_text(name, float(values[idx]), float(se[idx]))
            if label in loose:
                flags.append(f"{assets[a]} " if per_asset else "")
        note = [f"[yellow]{escape(''.join(flags))}not identified[/]" if flags else ""] if loose else []
        table.add_row(str(i + 1), days, *cells, *note)


def _parameter_rows(
    table: Table, name: str, values: np.ndarray, se: np.ndarray, config: dict[str, Any], loose: set[str]
) -> None:
    if not table.columns:
        table.add_column("parameter")
        table.add_column("value", justify="right")
        table.add_column("± s.e.")
        if loose:
            table.add_column("")
    names = _asset_names(config, values.shape[-1]) if values.ndim == 1 and values.size > 1 else None
    for idx in np.ndindex(values.shape):
        label = parameter_label(name, idx)
        shown = f"{name} {names[idx[0]]}" if names else label
        note = [_flag(label, loose)] if loose else []
        table.add_row(escape(shown), *_param_text(name, float(values[idx]), float(se[idx])), *note)


# ---------------------------------------------------------------------------------------------
# Constraints and the optimizer


def constraints_table(result: dict[str, Any]) -> Table | None:
    """Each constraint: its limit, the out-of-sample value ± s.e., the in-sample value and whether it
    holds (within two standard errors, as :class:`~levopt.results.ConstraintResult` decides)."""
    rows = result.get("constraints") or []
    if not rows:
        return None
    config = result.get("config") or {}
    table = Table(
        title="constraints, out of sample",
        title_justify="left",
        caption="ok: holds within 2 standard errors; violated: beyond them",
    )
    for column, justify in (
        ("constraint", "left"),
        ("limit", "right"),
        ("value", "right"),
        ("± s.e.", "left"),
        ("in sample", "right"),
        ("", "left"),
    ):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for c in rows:
        label = str(c.get("metric"))
        sense = "≤" if c.get("sense") == "max" else "≥"
        limit, _ = fmt_metric(label, c.get("limit"))
        value, err = fmt_metric(label, c.get("value"), c.get("stderr"))
        in_sample = fmt_metric(label, c.get("in_sample"))[0] if c.get("in_sample") is not None else "–"
        if not c.get("satisfied"):
            status = "[red]violated[/]"
        elif c.get("strictly_satisfied") is False:
            status = "[yellow]ok within 2 s.e.[/]"
        else:
            status = "[green]ok[/]"
        table.add_row(
            escape(metric_title(label, config)), f"{sense} {limit}", value, err or "–", in_sample, status
        )
    return table


def optimizer_text(result: dict[str, Any]) -> Text:
    """One line on the search: method, iterations, convergence, wall time, searches."""
    opt = result.get("optimizer") or {}
    method = opt.get("method", "?")
    if opt.get("solver"):
        method += f" ({opt['solver']})"
    parts = [f"{method}: {fmt_number(opt.get('iterations'))} iterations"]
    converged = opt.get("converged")
    parts.append("converged" if converged else "did not converge")
    parts.append(fmt_duration(opt.get("wall_s")))
    if (opt.get("replicates") or 1) > 1:
        parts.append(f"{opt['replicates']} searches")
    text = Text("optimizer: " + ", ".join(parts))
    if converged is False:
        text.stylize("yellow")
    return text


def run_summary(result: dict[str, Any], name: str) -> Group:
    """``levopt run``: the policy, its out-of-sample metrics, the constraints and the optimizer."""
    config = result.get("config") or {}
    oos = result.get("out_of_sample") or {}
    horizon = fmt_number(num(config.get("horizon_days")), 4)
    sentence, _ = describe_policy(result, config)
    parts: list[Any] = [Text(f"policy: {sentence}", style="bold"), policy_table(result), Text()]
    parts.append(
        metrics_table(
            f"{name}, out of sample: {fmt_number(config.get('paths'))} fresh paths, {horizon}-day horizon",
            oos.get("metrics") or {},
            oos.get("stderr") or {},
            config,
        )
    )
    constraints = constraints_table(result)
    if constraints is not None:
        parts += [Text(), constraints]
    parts += [Text(), optimizer_text(result)]
    return Group(*parts)


def evaluate_summary(result: dict[str, Any], name: str) -> Group:
    """``levopt evaluate``: the policy in words and its metrics."""
    config = result.get("config") or {}
    sentence, _ = describe_policy(None, config)
    horizon = fmt_number(num(config.get("horizon_days")), 4)
    table = metrics_table(
        f"{name}: {fmt_number(config.get('paths'))} paths, {horizon}-day horizon",
        result.get("metrics") or {},
        result.get("stderr") or {},
        config,
    )
    return Group(Text(f"policy: {sentence}"), table)


def json_text(result: Any) -> str:
    """``result`` as strict JSON text with a final newline, non-finite numbers written as result
    files write them (:func:`levopt.io.dumps_json`): what ``--json`` prints."""
    return dumps_json(result) + "\n"


# ---------------------------------------------------------------------------------------------
# Progress


class SearchBar:
    """A rich progress bar fed by :class:`~levopt.optimize.SearchProgress` reports: which search,
    its step, the current in-sample objective, elapsed time and an estimate of the time left.

    Completed work is counted in iterations over all searches (each at most ``optimizer.steps``);
    a search that converges early jumps to its end, so the estimate errs on the long side.
    """

    def __init__(self, progress: Progress, config: dict[str, Any]):
        self.progress = progress
        found = goal(config)
        self.goal = found[0] if found else None
        self.title = metric_title(self.goal, config) if self.goal else "objective"
        self.task = progress.add_task("starting", total=None, step="", objective="")

    def __call__(self, p: SearchProgress) -> None:
        steps = max(p.steps, 1)
        done = steps if p.done else min(p.step, steps)
        value = "–" if not math.isfinite(p.objective) else fmt_metric(self.goal or "", p.objective)[0]
        what = f"search {p.search}/{p.searches}" if p.searches > 1 else "search"
        self.progress.update(
            self.task,
            description=what,
            completed=(p.search - 1) * steps + done,
            total=p.searches * steps,
            step=f"step {min(p.step, steps)}/{steps}",
            objective=escape(f"{self.title} {value} (in sample)"),
        )
        if p.done and p.search == p.searches:
            self.progress.update(self.task, description="testing out of sample", step="", objective="")


@contextmanager
def search_bar(console: Console, config: dict[str, Any], *, enabled: bool = True) -> Iterator[Any]:
    """A :class:`SearchBar` shown on ``console`` while the block runs (None when not ``enabled``)."""
    if not enabled:
        yield None
        return
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[step]}"),
        TextColumn("{task.fields[objective]}"),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
    )
    # Transient: the summary printed after the run replaces the bar. Four redraws a second keep
    # the bar's own cost below 2% of a core (a redraw takes about 4 ms), reports come per block.
    with Progress(*columns, console=console, transient=True, refresh_per_second=4) as progress:
        yield SearchBar(progress, config)


__all__ = [
    "SearchBar",
    "constraints_table",
    "evaluate_summary",
    "json_text",
    "metrics_table",
    "optimizer_text",
    "policy_table",
    "run_summary",
    "search_bar",
]


# ---------------------------------------------------------------------------------------------
# Position risk


def _pm(value: Any, stderr: Any, scale: float = 1.0, unit: str = "") -> str:
    """``value ± s.e.`` rounded to the s.e., or the value alone when the s.e. is 0 or missing."""
    v, e = num(value) * scale, num(stderr) * scale
    if not math.isfinite(v):
        return fmt_number(v)
    if not (math.isfinite(e) and e > 0):
        return f"{fmt_number(v, 4)}{unit}"
    shown, err = round_to_stderr(v, e)
    return f"{shown}{unit} ± {err}{unit}"


def position_summary(result: dict[str, Any]) -> Group:
    """``levopt position``: where the liquidation price is, how likely it is hit within the
    horizon, the tail loss and funding, the model filtered to now, and the suggested trade."""
    ccy = "USDT" if str(result.get("symbol", "")).endswith("USDT") else ""
    money = f" {ccy}" if ccy else ""
    hours = num(result.get("horizon_hours"))
    horizon = f"{fmt_number(hours, 3)} h" if hours < 48 else f"{fmt_number(hours / 24, 3)} d"
    dist = result.get("distance") or {}
    model = result.get("model") or {}
    sugg = result.get("suggested") or {}
    funding = result.get("funding") or {}
    table = Table(
        title=f"{result.get('symbol')} on {result.get('venue')} ({result.get('mode')} margin), "
        f"price {fmt_number(result.get('price'), 8)} at {result.get('as_of')}",
        title_justify="left",
        caption="± one Monte Carlo standard error",
    )
    table.add_column("")
    table.add_column("value", justify="right")
    table.add_row("equity (wallet + unrealized P&L)", f"{fmt_number(result.get('equity'), 8)}{money}")
    table.add_row(
        "notional / leverage",
        f"{fmt_number(result.get('notional'), 8)}{money} / {fmt_lev(result.get('leverage'))}",
    )
    liq = num(result.get("liquidation_price"))
    if liq > 0:
        table.add_row(
            "liquidation price",
            f"{fmt_number(liq, 8)} ({fmt_number(dist.get('pct'), 3)}%, {fmt_number(dist.get('daily_sd'), 3)} daily s.d.)",
        )
    else:
        table.add_row("liquidation price", "none above 0")
    table.add_row(
        f"P(liquidated within {horizon})",
        _pm(result.get("liquidation_probability"), result.get("liquidation_probability_stderr"), 100.0, "%"),
    )
    level = fmt_number(100 * num(result.get("level")), 3)
    table.add_row(
        f"VaR {level}% over {horizon}", _pm(result.get("var"), result.get("var_stderr"), unit=money)
    )
    table.add_row(
        f"CVaR {level}% over {horizon}", _pm(result.get("cvar"), result.get("cvar_stderr"), unit=money)
    )
    table.add_row(
        f"funding expected over {horizon}",
        f"{fmt_number(funding.get('expected_cost'), 4)}{money} ({fmt_number(100 * num(funding.get('annual_rate')), 3)}%/yr, "
        f"{funding.get('source')})",
    )
    vol_now = _pm(model.get("vol_now_annual"), model.get("vol_now_annual_stderr"), 100.0, "%")
    table.add_row(
        "volatility now / long run (annualized)",
        f"{vol_now} / {fmt_number(100 * num(model.get('vol_long_run_annual')), 3)}%",
    )
    trade = sugg.get("trade") or {}
    table.add_row(
        f"suggested leverage (growth, P(liq) ≤ {fmt_number(100 * num(sugg.get('liquidation_cap')), 3)}%)",
        f"{fmt_lev(sugg.get('leverage'))}, bound by {sugg.get('bound_by')}",
    )
    table.add_row(
        "trade to get there",
        f"{trade.get('side')} {fmt_number(trade.get('quantity'), 6)} ({fmt_number(trade.get('notional'), 6)}{money})",
    )
    window = model.get("window") or {}
    lines = [
        table,
        Text(
            f"model: {model.get('kind')} ({model.get('dist')} shocks, {model.get('method')}) on "
            f"{window.get('returns')} {window.get('bar')} returns {window.get('first')} to {window.get('last')}"
        ),
    ]
    for warning in (result.get("feed") or {}).get("warnings") or ():
        lines.append(Text(f"warning: {warning}", style="yellow"))
    return Group(*lines)
