"""The report's pictures, drawn from saved results only (PNG, matplotlib's Agg renderer).

Each ``plot_*`` function takes the saved data it needs and the PNG path to write, and returns the
path, or ``None`` when the data for the picture is missing. Figures are built with
:class:`matplotlib.figure.Figure` directly, never through ``pyplot``: no global figure state, no
backend switch, nothing to close, safe in threads and in programs that use another backend.
matplotlib loads only when a picture is drawn.
"""

from __future__ import annotations

import io
import math
import re
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from levopt.fmt import fmt_lev, fmt_number, num
from levopt.io import atomic_write_bytes
from levopt.report._inputs import (
    PARAM_UNITS,
    RunInputs,
    base_metric,
    goal,
    load_inputs,
    metric_style,
    policy_class,
    policy_values,
    stderr_state,
)

DPI = 120
BLUE, RED, AMBER, GREEN, GREY = "#1f5fa8", "#c8414b", "#d98c1f", "#2e8b57", "#6b7280"
NAVY, BROWN = "#0b2e59", "#8a5208"

_STYLE = {
    "font.size": 10,
    "axes.titlesize": 12,
    "axes.titleweight": "bold",
    "axes.titlelocation": "left",
    "axes.labelsize": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.6,
    "legend.frameon": False,
    "legend.fontsize": 9,
    "figure.facecolor": "white",
    "savefig.facecolor": "white",
    "image.cmap": "viridis",
}


@contextmanager
def _style() -> Iterator[None]:

    with matplotlib.rc_context(_STYLE):
        yield


def _figure(width: float, height: float) -> Any:

    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def _save(fig: Any, path: Path) -> Path:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    return atomic_write_bytes(path, buffer.getvalue())


def _save_figure(fig: Any, path: Path) -> Path | None:
    """Save a ``figure_*`` result (None: nothing to draw)."""
    if fig is None:
        return None
    with _style():
        return _save(fig, path)


def _array(value: Any) -> np.ndarray | None:
    """A JSON list (of lists) of numbers as a float array (null -> nan), else None."""
    if not isinstance(value, list) or not value:
        return None
    try:
        return np.vectorize(num, otypes=[float])(np.asarray(value, dtype=object))
    except (ValueError, TypeError):
        return None


def _band_pairs(quantiles: Sequence[float]) -> tuple[list[tuple[int, int]], int | None]:
    """Index pairs (outermost first) of symmetric quantile bands, and the median's index."""
    order = list(np.argsort(quantiles))
    pairs = [(order[i], order[-1 - i]) for i in range(len(order) // 2)]
    mid = order[len(order) // 2] if len(order) % 2 else None
    return pairs, mid


def _pct(q: float) -> str:
    return f"{100 * q:.3g}"


# ---------------------------------------------------------------------------------------------
# Standard-error bands and what the legend may name

MIN_BAND_PX = 1.5
"""A shaded band whose mean height is below this many pixels cannot be seen: it is not drawn and
the legend does not name it."""

SE_MULTIPLE = 2
"""Bands of Monte Carlo estimates span ± this many standard errors."""


def _band_height_px(ax: Any, x: np.ndarray, lo: np.ndarray, hi: np.ndarray, step: bool = False) -> float:
    """Mean height in pixels of the region between ``lo`` and ``hi`` over ``x``, as drawn (after the
    figure's layout): a step band holds each value until the next x, a line band interpolates."""
    ax.figure.draw_without_rendering()
    ok = np.isfinite(x) & np.isfinite(lo) & np.isfinite(hi)
    if ok.sum() < 2:
        return 0.0
    x, lo, hi = x[ok], lo[ok], hi[ok]
    to_px = ax.transData.transform
    px_x = to_px(np.column_stack([x, lo]))[:, 0]
    height = np.abs(to_px(np.column_stack([x, hi]))[:, 1] - to_px(np.column_stack([x, lo]))[:, 1])
    widths = np.abs(np.diff(px_x))
    if widths.sum() <= 0:
        return 0.0
    per_interval = height[:-1] if step else (height[:-1] + height[1:]) / 2
    return float(np.sum(per_interval * widths) / widths.sum())


def _keep_visible(
    ax: Any, band: Any, x: np.ndarray, lo: np.ndarray, hi: np.ndarray, step: bool = False
) -> bool:
    """Remove ``band`` when it cannot be seen (:data:`MIN_BAND_PX`); returns whether it stays."""
    if _band_height_px(ax, x, lo, hi, step) >= MIN_BAND_PX:
        return True
    band.remove()
    return False


def _freeze_limits(*axes: Any) -> None:
    """Fix the current limits so that removing an invisible band does not rescale the axes."""
    for ax in axes:
        ax.set_xlim(ax.get_xlim())
        ax.set_ylim(ax.get_ylim())


# ---------------------------------------------------------------------------------------------
# A single run


def _trajectory(
    results: dict[str, Any] | None, name: str
) -> tuple[np.ndarray, list[float], np.ndarray] | None:
    traj = (results or {}).get("trajectories")
    if not isinstance(traj, dict):
        return None
    days, values = _array(traj.get("days")), _array(traj.get(name))
    quantiles = traj.get("quantiles")
    if days is None or values is None or values.ndim != 2 or not isinstance(quantiles, list):
        return None
    if values.shape != (len(quantiles), len(days)):
        return None
    return days, [num(q) for q in quantiles], values


def _median_ci(results: dict[str, Any] | None, name: str, days: np.ndarray) -> np.ndarray | None:
    """The saved ± 2 s.e. interval of the median over time (rows: lower, upper), if any."""
    ci = _array(((results or {}).get("trajectories") or {}).get(f"{name}_median_ci"))
    return ci if ci is not None and ci.shape == (2, len(days)) else None


def figure_equity_fan(results: dict[str, Any] | None) -> Figure | None:
    """Fan chart of equity W_t/W_0 over days: 5–95% and 25–75% bands, the median path and its
    ± 2 s.e. band (the order-statistic interval saved with the trajectories)."""
    data = _trajectory(results, "equity")
    if data is None:
        return None
    days, quantiles, equity = data
    pairs, mid = _band_pairs(quantiles)
    ci = _median_ci(results, "equity", days) if mid is not None else None
    with _style():
        fig = _figure(8, 4.5)
        ax = fig.add_subplot()
        bands = []
        for i, (lo, hi) in enumerate(pairs):
            band = ax.fill_between(
                days, equity[lo], equity[hi], color=BLUE, alpha=0.18 + 0.17 * i, linewidth=0
            )
            bands.append((band, lo, hi))
        median = ci_band = None
        if mid is not None:
            (median,) = ax.plot(days, equity[mid], color=BLUE, linewidth=2)
            if ci is not None:
                ci_band = ax.fill_between(days, ci[0], ci[1], color=NAVY, alpha=0.45, linewidth=0, zorder=3)
            ax.annotate(
                f"{equity[mid][-1]:.3g}",
                (days[-1], equity[mid][-1]),
                xytext=(4, 0),
                textcoords="offset points",
                va="center",
                color=BLUE,
                fontsize=9,
            )
        ax.axhline(1.0, color=GREY, linewidth=1, linestyle="--", label="initial equity")
        ax.set_xlim(days[0], days[-1])
        ax.set_xlabel("time (days)")
        ax.set_ylabel("equity $W_t / W_0$")
        ax.set_title("Equity over the horizon: quantiles across simulated paths")
        _freeze_limits(ax)
        for band, lo, hi in bands:
            if _keep_visible(ax, band, days, equity[lo], equity[hi]):
                band.set_label(f"{_pct(quantiles[lo])}–{_pct(quantiles[hi])}% of paths")
        if median is not None:
            median.set_label(_median_label(ax, ci_band, days, ci))
        ax.legend(loc="upper left")
        return fig


def _median_label(ax: Any, ci_band: Any, days: np.ndarray, ci: np.ndarray | None, step: bool = False) -> str:
    """The median line's legend entry; labels its ± 2 s.e. band when that can be seen."""
    if ci_band is None or ci is None:
        return "median (standard error not saved with these results)"
    if _keep_visible(ax, ci_band, days, ci[0], ci[1], step):
        ci_band.set_label(f"median ± {SE_MULTIPLE} s.e.")
        return "median"
    return f"median (± {SE_MULTIPLE} s.e. narrower than the line)"


def plot_equity_fan(results: dict[str, Any] | None, path: Path) -> Path | None:
    """:func:`figure_equity_fan` saved as PNG."""
    return _save_figure(figure_equity_fan(results), path)


def figure_leverage(results: dict[str, Any] | None) -> Figure | None:
    """Gross leverage over time: the median across paths with the quantile bands that can be seen,
    or the target step line of a fixed schedule when no trajectories were saved."""
    data = _trajectory(results, "leverage")
    steps_only = None
    if data is None:
        steps_only = _schedule_from_policy(results, for_plot=True)
        if steps_only is None:
            return None
    with _style():
        fig = _figure(8, 4)
        ax = fig.add_subplot()
        if data is not None:
            days, quantiles, lev = data
            pairs, mid = _band_pairs(quantiles)
            centre = lev[mid] if mid is not None else np.nanmean(lev, axis=0)
            (line,) = ax.step(days, centre, where="post", color=AMBER, linewidth=2)
            bands = []
            for i, (lo, hi) in enumerate(pairs):
                band = ax.fill_between(
                    days, lev[lo], lev[hi], step="post", color=AMBER, alpha=0.2 + 0.2 * i, linewidth=0
                )
                bands.append((band, lo, hi))
            ci = _median_ci(results, "leverage", days) if mid is not None else None
            ci_band = (
                ax.fill_between(
                    days, ci[0], ci[1], step="post", color=BROWN, alpha=0.5, linewidth=0, zorder=3
                )
                if ci is not None
                else None
            )
        else:
            days, centre = steps_only
            ax.step(
                days,
                centre,
                where="post",
                color=BLUE,
                linewidth=2,
                label="target leverage (at each rebalance)",
            )
        ax.set_xlim(days[0], days[-1])
        top = float(np.nanmax(centre)) if np.isfinite(np.nanmax(centre)) else 1.0
        ax.set_ylim(0 if np.nanmin(centre) >= 0 else None, top * 1.15 if top > 0 else None)
        ax.set_xlabel("time (days)")
        ax.set_ylabel("gross leverage (notional / equity)")
        ax.set_title("Leverage over time")
        if data is not None:
            _freeze_limits(ax)
            shown = 0
            for band, lo, hi in bands:
                if _keep_visible(ax, band, days, lev[lo], lev[hi], step=True):
                    band.set_label(f"{_pct(quantiles[lo])}–{_pct(quantiles[hi])}% of paths")
                    shown += 1
            spread = np.nanmax(lev, axis=0) - np.nanmin(lev, axis=0)
            if shown:
                line.set_label(_median_label(ax, ci_band, days, ci, step=True) if mid is not None else "mean")
            else:
                if ci_band is not None:
                    ci_band.remove()
                same = float(np.nanmax(spread, initial=0.0)) <= 1e-6 * max(
                    float(np.nanmax(np.abs(centre))), 1e-12
                )
                line.set_label(
                    "leverage (same on every path)"
                    if same
                    else "leverage (the spread across paths is narrower than the line)"
                )
        ax.legend(loc="best")
        return fig


def plot_leverage(results: dict[str, Any] | None, path: Path) -> Path | None:
    """:func:`figure_leverage` saved as PNG."""
    return _save_figure(figure_leverage(results), path)


def _schedule_from_policy(
    results: dict[str, Any] | None, for_plot: bool = False
) -> tuple[np.ndarray, np.ndarray] | None:
    """Days and gross leverage of a constant or schedule policy, from its parameters alone."""
    if not results:
        return None

    config = results.get("config") or {}
    spec = config.get("policy") or {}
    policy_cls = policy_class(spec.get("kind"))
    horizon = num(config.get("horizon_days"))
    if policy_cls is None or not math.isfinite(horizon):
        return None
    if for_plot and (policy_cls.static or spec.get("rebalance") == "never"):
        return None  # a flat line says nothing, and a held position's leverage drifts
    values, _ = policy_values(results, config)
    return policy_cls.target_gross(values, horizon)


def _profile_series(
    profile: dict[str, Any], key: str, name: str, shape: tuple[int, ...]
) -> np.ndarray | None:
    """``profile[key][name]`` (stderr, diff_stderr) as an array of ``shape``, or None."""
    block = profile.get(key)
    values = _array(block.get(name)) if isinstance(block, dict) else None
    return values if values is not None and values.shape == shape else None


_RISKS = (
    ("liquidation_probability", RED, "-", "liquidation probability"),
    ("cvar", AMBER, "--", "CVaR 95% of the{days} log-loss"),
)


def figure_growth_vs_leverage(results: dict[str, Any] | None) -> Figure | None:
    """Log-growth (left axis), liquidation probability and CVaR (right axis) as the chosen policy's
    leverage is scaled, each with a ± 2 s.e. band, and below them the growth's difference from the
    chosen policy (scale 1), whose paired standard errors are small because every scale uses the
    same paths."""
    profile = (results or {}).get("leverage_profile")
    if not isinstance(profile, dict):
        return None
    scale = _array(profile.get("scale"))
    growth = _array(profile.get("log_growth"))
    if scale is None or growth is None or scale.shape != growth.shape or scale.ndim != 1:
        return None
    config = (results or {}).get("config") or {}
    x, xlabel, on_leverage = _profile_axis(config, profile, scale)
    chosen = int(np.argmin(np.abs(scale - 1.0)))
    growth_se = _profile_series(profile, "stderr", "log_growth", scale.shape)
    diff_se = _profile_series(profile, "diff_stderr", "log_growth", scale.shape)
    horizon = num(config.get("horizon_days"))
    days = f" {fmt_number(horizon, 4)}-day" if math.isfinite(horizon) else ""
    with _style():
        fig = _figure(8, 6.4 if diff_se is not None else 5)
        if diff_se is not None:
            ax, lower = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1.3])
        else:
            ax, lower = fig.add_subplot(), None
        (growth_line,) = ax.plot(
            x, 100 * growth, color=BLUE, linewidth=2, marker="o", markersize=3, label="log-growth (left)"
        )
        handles = [growth_line]
        bands = []  # (axes, band, lo, hi) in percent
        if growth_se is not None:
            lo, hi = 100 * (growth - SE_MULTIPLE * growth_se), 100 * (growth + SE_MULTIPLE * growth_se)
            bands.append((ax, ax.fill_between(x, lo, hi, color=BLUE, alpha=0.18, linewidth=0), lo, hi))
        ax.set_ylabel("expected log-growth (% per year)", color=BLUE)
        ax.tick_params(axis="y", colors=BLUE)
        risk = ax.twinx()
        risk_handles, risk_bands = _draw_risks(risk, x, profile, days)
        handles += risk_handles
        bands += risk_bands
        ax.axvline(x[chosen], color=GREY, linestyle=":", linewidth=1.2)
        (star,) = ax.plot(
            [x[chosen]],
            [100 * growth[chosen]],
            marker="*",
            markersize=14,
            color=BLUE,
            markeredgecolor="white",
            linestyle="none",
            label=f"chosen policy ({fmt_lev(x[chosen]) if on_leverage else 'scale 1'})",
        )
        handles.append(star)
        mean_lev = _mean_gross(results)
        if not on_leverage and mean_lev is not None and mean_lev > 0:
            top = ax.secondary_xaxis("top", functions=(lambda s: s * mean_lev, lambda v: v / mean_lev))
            top.set_xlabel("mean gross leverage over the horizon", fontsize=9)
        if lower is not None:
            diff_line, diff_band = _draw_difference(lower, x, growth, chosen, diff_se)
            handles.append(diff_line)
            bands.append(diff_band)
            lower.set_xlabel(xlabel)
        else:
            ax.set_xlabel(xlabel)
        title = "Growth and risk as the chosen policy's leverage is scaled"
        fig.suptitle(title, x=0.02, ha="left", fontsize=12, fontweight="bold")
        ax.set_title(_profile_note(profile, growth_se), fontsize=9, fontweight="normal", color=GREY)
        _freeze_limits(ax, risk, *([lower] if lower is not None else []))
        visible = [band for axes, band, lo, hi in bands if _keep_visible(axes, band, x, lo, hi)]
        if visible:
            visible[0].set_label(f"shaded: ± {SE_MULTIPLE} standard errors")
            handles.append(visible[0])
        fig.legend(handles=handles, loc="outside lower center", ncols=2)
        return fig


def _profile_axis(
    config: dict[str, Any], profile: dict[str, Any], scale: np.ndarray
) -> tuple[np.ndarray, str, bool]:
    """The x values and label of the leverage profile, and whether they are gross leverages."""
    kind = (config.get("policy") or {}).get("kind", "constant")
    policy_cls = policy_class(kind)
    gross = _array(profile.get("gross_leverage"))
    # A static policy's gross leverage is its leverage; other policies' vary in time: use the scale.
    if policy_cls is not None and policy_cls.static and gross is not None and gross.shape == scale.shape:
        return gross, "gross leverage (notional / equity)", True
    return scale, f"scale factor on the {kind} policy's leverage (1 = chosen)", False


def _draw_risks(risk: Any, x: np.ndarray, profile: dict[str, Any], days: str) -> tuple[list, list]:
    """Liquidation probability and CVaR (percent, right axis) with their ± 2 s.e. bands; returns
    the lines and the bands as ``(axes, band, lo, hi)``."""
    risk.spines["right"].set_visible(True)
    risk.grid(False)
    handles, bands = [], []
    for name, color, style, words in _RISKS:
        y = _array(profile.get(name))
        if y is None or y.shape != x.shape:
            continue
        label = words.format(days=days) + " (right)"
        if np.all(y == 0):
            label += ": 0 at every scale"
        elif np.nanmax(np.abs(y)) < 5e-5:
            label += ": below 0.005% at every scale"
        (line,) = risk.plot(
            x, 100 * y, color=color, linestyle=style, linewidth=1.8, label=label, clip_on=False
        )
        handles.append(line)
        se = _profile_series(profile, "stderr", name, x.shape)
        if se is not None:
            lo, hi = 100 * (y - SE_MULTIPLE * se), 100 * (y + SE_MULTIPLE * se)
            bands.append((risk, risk.fill_between(x, lo, hi, color=color, alpha=0.15, linewidth=0), lo, hi))
    risk.set_ylabel("risk over the horizon (%)")
    risk.set_ylim(bottom=0)
    return handles, bands


def _draw_difference(
    lower: Any, x: np.ndarray, growth: np.ndarray, chosen: int, diff_se: np.ndarray
) -> tuple[Any, tuple]:
    """The growth minus the chosen policy's (percent a year) with its paired ± 2 s.e. band."""
    diff = 100 * (growth - growth[chosen])
    (line,) = lower.plot(
        x,
        diff,
        color=NAVY,
        linewidth=1.8,
        marker="o",
        markersize=3,
        label="difference from the chosen policy (lower panel)",
    )
    lo, hi = diff - 100 * SE_MULTIPLE * diff_se, diff + 100 * SE_MULTIPLE * diff_se
    band = lower.fill_between(x, lo, hi, color=NAVY, alpha=0.18, linewidth=0)
    lower.axhline(0.0, color=GREY, linewidth=1)
    lower.axvline(x[chosen], color=GREY, linestyle=":", linewidth=1.2)
    lower.set_ylabel("log-growth\ndifference (%/yr)")
    lower.set_title(
        "log-growth minus the chosen policy's, paired on the same paths",
        fontsize=9,
        fontweight="normal",
        color=GREY,
    )
    return line, (lower, band, lo, hi)


def _profile_note(profile: dict[str, Any], growth_se: np.ndarray | None) -> str:
    """The line under the chart's title: which paths, and what the bands are."""
    paths = profile.get("paths")
    if growth_se is None:
        return "standard errors were not saved with these results: no bands"
    return f"the same {fmt_number(paths)} paths at every scale" if paths else "the same paths at every scale"


def plot_growth_vs_leverage(results: dict[str, Any] | None, path: Path) -> Path | None:
    """:func:`figure_growth_vs_leverage` saved as PNG."""
    return _save_figure(figure_growth_vs_leverage(results), path)


def _mean_gross(results: dict[str, Any] | None) -> float | None:
    """Mean gross leverage over the horizon of a constant or schedule policy (equal segments)."""
    found = _schedule_from_policy(results)
    return None if found is None else float(np.nanmean(found[1][:-1]))


def figure_convergence(results: dict[str, Any] | None) -> Figure | None:
    """The optimizer's objective and largest constraint violation at each recorded step; the final
    objective's ± 2 s.e. band (Monte Carlo error of the in-sample estimate) when it was saved."""
    opt = (results or {}).get("optimizer")
    history = opt.get("history") if isinstance(opt, dict) else None
    if not isinstance(history, list) or not history or not all(isinstance(h, dict) for h in history):
        return None
    steps = np.asarray([num(h.get("step", i)) for i, h in enumerate(history)])
    objective = np.asarray([num(h.get("objective")) for h in history])
    violation = np.asarray([num(h.get("max_violation")) for h in history])
    if not np.any(np.isfinite(objective)):
        return None
    label = goal((results or {}).get("config") or {})
    name = label[0] if label else "objective"
    in_sample = (results or {}).get("in_sample") or {}
    final_se = num((in_sample.get("stderr") or {}).get(name)) if isinstance(in_sample, dict) else math.nan
    marker = "o" if len(steps) <= 30 else None
    with _style():
        fig = _figure(8, 5)
        top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[3, 2])

        pct = metric_style(name) in ("pct", "pct_yr")
        factor = 100.0 if pct else 1.0
        shown = factor * objective
        unit = " (% per year)" if metric_style(name) == "pct_yr" else " (%)" if pct else ""
        top.plot(steps, shown, color=BLUE, linewidth=2, marker=marker, markersize=4)
        top.ticklabel_format(axis="y", useOffset=False)
        finite = shown[np.isfinite(shown)]
        lo, hi = float(finite.min()), float(finite.max())
        if hi - lo < 1e-6 * max(1.0, abs(hi)):  # a flat history: centre it instead of magnifying noise
            pad = max(0.05 * abs(hi), 1e-3)
            top.set_ylim(lo - pad, hi + pad)
        top.set_ylabel(f"{name}{unit}\nin sample")
        bottom.xaxis.set_major_locator(MaxNLocator(integer=True))
        top.set_title(f"Optimizer convergence ({opt.get('method', '?')})")
        if stderr_state(objective[np.isfinite(objective)][-1], final_se) == "ok":
            paths = in_sample.get("paths") or in_sample.get("scenarios")
            _final_band(top, steps, float(finite[-1]), factor * final_se, paths)
        has_violation = np.any(np.isfinite(violation))
        if has_violation:
            bottom.plot(steps, violation, color=RED, linewidth=1.8, marker=marker, markersize=4)
            positive = violation[np.isfinite(violation) & (violation > 0)]
            if positive.size:
                bottom.set_yscale("symlog", linthresh=float(np.min(positive)))
            else:
                bottom.text(
                    0.5,
                    0.8,
                    "all constraints met at every recorded step",
                    transform=bottom.transAxes,
                    ha="center",
                    va="center",
                    color=GREEN,
                )
                bottom.set_ylim(-0.05, 1.0)
        else:
            bottom.text(
                0.5,
                0.5,
                "no constraint violations recorded",
                transform=bottom.transAxes,
                ha="center",
                va="center",
                color=GREY,
            )
        bottom.set_ylabel("max constraint violation")
        bottom.set_xlabel("optimizer step")
        return fig


def _final_band(ax: Any, steps: np.ndarray, last: float, se: float, paths: Any) -> None:
    """The final objective's ± 2 s.e. band across the history, named when it can be seen."""
    lo, hi = last - SE_MULTIPLE * se, last + SE_MULTIPLE * se
    band = ax.axhspan(lo, hi, color=BLUE, alpha=0.12, linewidth=0)
    _freeze_limits(ax)
    span = np.asarray([steps[0], steps[-1]], float)
    if _keep_visible(ax, band, span, np.full(2, lo), np.full(2, hi)):
        where = f" on the {fmt_number(paths)} search paths" if paths else ""
        band.set_label(f"final value ± {SE_MULTIPLE} s.e.{where} (Monte Carlo error)")
        ax.legend(loc="lower right")


def plot_convergence(results: dict[str, Any] | None, path: Path) -> Path | None:
    """:func:`figure_convergence` saved as PNG."""
    return _save_figure(figure_convergence(results), path)


# ---------------------------------------------------------------------------------------------
# Sweeps

_INDEX = re.compile(r"^(policy\.[A-Za-z_][\w]*)\[([\d,\s]+)\]$")


def _policy_groups(columns: Sequence[str]) -> dict[str, list[tuple[str, tuple[int, ...]]]]:
    """``policy.<name>`` columns grouped by name: ``{name: [(column, index), ...]}``."""
    groups: dict[str, list[tuple[str, tuple[int, ...]]]] = {}
    for col in columns:
        m = _INDEX.match(col)
        if m:
            idx = tuple(int(i) for i in m.group(2).split(","))
            groups.setdefault(m.group(1).removeprefix("policy."), []).append((col, idx))
        elif col.startswith("policy.") and "[" not in col:
            groups.setdefault(col.removeprefix("policy."), []).append((col, ()))
    return groups


def sweep_leverage(inputs: RunInputs) -> tuple[np.ndarray, str] | None:
    """Each point's leverage as one number, and what that number is.

    ``policy.leverage`` as is; a schedule's ``policy.leverage[i]`` averaged over segments; weights
    as gross leverage Σ|w| (averaged over segments for schedules); else the first policy parameter.
    """
    table = inputs.sweep
    if table is None:
        return None
    groups = _policy_groups(list(table.columns))
    policy_cls = policy_class((inputs.config.get("policy") or {}).get("kind"))

    def col(name: str) -> np.ndarray:
        return np.asarray([num(v) for v in table[name]], float)

    for name in ("leverage", "weights"):
        members = groups.get(name)
        if not members:
            continue
        if len(members) == 1 and members[0][1] == ():
            return col(members[0][0]), "leverage" if name == "leverage" else "gross leverage Σ|w|"
        ndim = max(len(i) for _, i in members)
        values = np.stack([col(c) for c, _ in members], axis=1)  # (points, entries)
        if ndim == 2:  # (segment, asset): gross per segment, mean over segments
            segments = sorted({i[0] for _, i in members})
            gross = np.stack(
                [
                    np.sum(np.abs(values[:, [k for k, (_, i) in enumerate(members) if i[0] == s]]), axis=1)
                    for s in segments
                ],
                axis=1,
            )
            return gross.mean(axis=1), f"gross leverage (mean over {len(segments)} segments)"
        if policy_cls is not None and policy_cls.segmented:
            what = "leverage" if name == "leverage" else "gross leverage"
            return np.abs(values).mean(axis=1), f"{what} (mean over {values.shape[1]} segments)"
        return np.abs(values).sum(axis=1), "gross leverage Σ|w|"
    for name, members in groups.items():
        if name in ("rebalance", "segments") or not members:
            continue
        values = np.stack([col(c) for c, _ in members], axis=1)
        if np.all(np.isnan(values)):
            continue
        return values.mean(axis=1), name + (
            f" (mean over {values.shape[1]} entries)" if values.shape[1] > 1 else ""
        )
    return None


def is_optimized(inputs: RunInputs) -> bool:
    table = inputs.sweep
    return table is not None and ("converged" in table.columns or "iterations" in table.columns)


def _metric_column(table: Any, name: str) -> str | None:
    exact = f"metrics.{name}"
    if exact in table.columns:
        return exact
    for col in table.columns:
        if col.startswith("metrics.") and base_metric(col.removeprefix("metrics.")) == name:
            return col
    return None


def _key_values(series: Any) -> tuple[list[Any], bool]:
    """A swept key's distinct values in a sensible order and whether they are all numbers."""
    values = list(dict.fromkeys(series.tolist()))
    numeric = all(
        isinstance(v, int | float | np.integer | np.floating) and not isinstance(v, bool) for v in values
    )
    if numeric:
        values = sorted(values, key=float)
    return values, numeric


def plot_frontier(inputs: RunInputs, path: Path) -> Path | None:
    """Growth against CVaR across sweep points, colored by the first swept key, with the efficient
    (non-dominated) frontier drawn through them."""
    table = inputs.sweep
    if table is None:
        return None
    xcol, ycol = _metric_column(table, "cvar"), _metric_column(table, "log_growth")
    if xcol is None or ycol is None:
        return None
    x = np.asarray([num(v) for v in table[xcol]])
    y = np.asarray([num(v) for v in table[ycol]])
    ok = np.isfinite(x) & np.isfinite(y)
    if not ok.any():
        return None
    keys = inputs.swept_keys
    key = keys[0] if keys else None
    with _style():
        fig = _figure(8, 5)
        ax = fig.add_subplot()
        xe = table.get("stderr." + xcol.removeprefix("metrics."))
        ye = table.get("stderr." + ycol.removeprefix("metrics."))
        bars = None
        if xe is not None and ye is not None:
            xerr = 100 * np.nan_to_num(np.asarray([num(v) for v in xe])[ok])
            yerr = 100 * np.nan_to_num(np.asarray([num(v) for v in ye])[ok])
            bars = ax.errorbar(
                100 * x[ok],
                100 * y[ok],
                xerr=xerr,
                yerr=yerr,
                fmt="none",
                ecolor="#c0c4cc",
                elinewidth=0.8,
                zorder=1,
            )
        if key is not None:
            values, numeric = _key_values(table[key])
            if numeric and len(values) > 1:
                c = np.asarray([float(v) for v in table[key]])[ok]
                sc = ax.scatter(
                    100 * x[ok], 100 * y[ok], c=c, s=40, zorder=3, edgecolors="white", linewidths=0.5
                )
                fig.colorbar(sc, ax=ax, label=key)
            else:
                cmap = matplotlib.colormaps["tab10"]
                labels = table[key].astype(str).to_numpy()[ok]
                for i, v in enumerate(dict.fromkeys(labels)):
                    sel = labels == v
                    ax.scatter(
                        100 * x[ok][sel],
                        100 * y[ok][sel],
                        s=40,
                        color=cmap(i % 10),
                        zorder=3,
                        edgecolors="white",
                        linewidths=0.5,
                        label=f"{key} = {v}",
                    )
        else:
            ax.scatter(100 * x[ok], 100 * y[ok], s=40, color=BLUE, zorder=3)
        order = np.argsort(x[ok], kind="stable")
        fx, fy, best = [], [], -np.inf
        for i in order:
            if y[ok][i] > best:
                best = y[ok][i]
                fx.append(100 * x[ok][i])
                fy.append(100 * y[ok][i])
        if len(fx) > 1:
            ax.plot(fx, fy, color=GREY, linewidth=1.2, linestyle="--", zorder=2, label="efficient frontier")
        ax.set_xlabel(f"{xcol.removeprefix('metrics.')}: expected shortfall of the log-loss (%)")
        ax.set_ylabel(f"{ycol.removeprefix('metrics.')}: expected log-growth (% per year)")
        ax.set_title(f"Growth–risk frontier across {int(ok.sum())} sweep points")
        if bars is not None and _errorbars_visible(ax, 100 * x[ok], 100 * y[ok], xerr, yerr):
            bars.set_label("± 1 standard error")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="best")
        return _save(fig, path)


def _errorbars_visible(ax: Any, x: np.ndarray, y: np.ndarray, xerr: np.ndarray, yerr: np.ndarray) -> bool:
    """Whether the longest error bar (either direction) spans at least :data:`MIN_BAND_PX`."""
    ax.figure.draw_without_rendering()
    to_px = ax.transData.transform
    centre = to_px(np.column_stack([x, y]))
    dx = np.abs(to_px(np.column_stack([x + xerr, y]))[:, 0] - centre[:, 0])
    dy = np.abs(to_px(np.column_stack([x, y + yerr]))[:, 1] - centre[:, 1])
    return bool(np.nanmax(np.concatenate([dx, dy]), initial=0.0) >= MIN_BAND_PX)


def plot_heatmap(inputs: RunInputs, path: Path) -> Path | None:
    """The optimal leverage over the first two swept keys (faceted by a third; further keys held at
    their first value). Evaluate-only sweeps show the log-growth instead."""
    table = inputs.sweep
    keys = inputs.swept_keys
    if table is None or len(keys) < 2:
        return None
    shown = _heatmap_values(inputs, table)
    if shown is None:
        return None
    values, title, fmt, bar_label = shown
    grids, xs, ys, facets, held = _heatmap_grids(table.assign(_value=values), keys)
    finite = np.concatenate([g[np.isfinite(g)] for g in grids]) if grids else np.asarray([])
    if finite.size == 0:
        return None
    vmin, vmax = float(finite.min()), float(finite.max())
    if vmin == vmax:
        vmin, vmax = vmin - 0.5, vmax + 0.5
    with _style():
        cell = 0.6 if len(xs) <= 10 else 0.4
        width = min(14.0, max(4.0, 1.5 + cell * len(xs)) * len(facets) + 1.5)
        height = max(3.5, 1.8 + cell * len(ys))
        fig = _figure(width, height)
        axes = np.atleast_1d(fig.subplots(1, len(facets), sharey=True, squeeze=False)[0])
        cmap = matplotlib.colormaps["viridis"].with_extremes(bad="#e5e7eb")
        image = None
        for ax, grid, facet in zip(axes, grids, facets, strict=True):
            image = ax.imshow(
                np.ma.masked_invalid(grid), origin="lower", aspect="auto", cmap=cmap, vmin=vmin, vmax=vmax
            )
            ax.grid(False)
            ax.set_xticks(
                range(len(xs)),
                [fmt_number(v, 3) if not isinstance(v, str) else v for v in xs],
                rotation=45 if len(xs) > 6 else 0,
            )
            ax.set_yticks(range(len(ys)), [fmt_number(v, 3) if not isinstance(v, str) else v for v in ys])
            ax.set_xlabel(keys[0])
            if facet is not None:
                ax.set_title(f"{keys[2]} = {facet}", fontsize=10, fontweight="normal")
            if len(xs) * len(ys) <= 150:
                _label_cells(ax, grid, fmt, vmin, vmax)
        axes[0].set_ylabel(keys[1])
        fig.colorbar(image, ax=list(axes), label=bar_label)
        fig.suptitle(
            title + (f" — {', '.join(held)}" if held else ""),
            x=0.02,
            ha="left",
            fontsize=12,
            fontweight="bold",
        )
        return _save(fig, path)


def _heatmap_values(inputs: RunInputs, table: Any) -> tuple[Any, str, str, str] | None:
    """(value per sweep row, title, cell format, colorbar label): the optimal leverage when
    optimized, else the log-growth in % a year; None when the sweep has neither."""
    if is_optimized(inputs):
        found = sweep_leverage(inputs)
        if found is None:
            return None
        values, what = found
        bar_label = "leverage (notional / equity)" if "leverage" in what else what
        return values, f"Optimal {what}", "{:.2f}", bar_label
    col = _metric_column(table, "log_growth")
    if col is None:
        return None
    values = 100 * np.asarray([num(v) for v in table[col]])
    return values, "Expected log-growth (% per year)", "{:.3g}", "log-growth (% per year)"


def _heatmap_grids(
    frame: Any, keys: list[str]
) -> tuple[list[np.ndarray], list[Any], list[Any], list[Any], list[str]]:
    """(grids, x values, y values, facets, held): one (y, x) grid of ``_value`` per facet of the
    third key (at most 4), rows past the third key kept at its first value; the first row wins
    a cell; ``held`` says what was left out."""
    held = []
    for extra in keys[3:]:
        first = _key_values(frame[extra])[0][0]
        frame = frame[frame[extra] == first]
        held.append(f"{extra} = {first}")
    xkey, ykey = keys[0], keys[1]
    facets = _key_values(frame[keys[2]])[0][:4] if len(keys) > 2 else [None]
    if len(keys) > 2 and len(_key_values(frame[keys[2]])[0]) > 4:
        held.append(f"first 4 values of {keys[2]}")
    xs, ys = _key_values(frame[xkey])[0], _key_values(frame[ykey])[0]
    grids = []
    for facet in facets:
        sub = frame if facet is None else frame[frame[keys[2]] == facet]
        grid = np.full((len(ys), len(xs)), np.nan)
        for _, row in sub.iterrows():
            i, j = ys.index(row[ykey]), xs.index(row[xkey])
            if np.isnan(grid[i, j]):
                grid[i, j] = row["_value"]
        grids.append(grid)
    return grids, xs, ys, facets, held


def _label_cells(ax: Any, grid: np.ndarray, fmt: str, vmin: float, vmax: float) -> None:
    """Write each finite value in its cell, white on the darker part of the colormap."""
    for i in range(grid.shape[0]):
        for j in range(grid.shape[1]):
            v = grid[i, j]
            if np.isfinite(v):
                dark = (v - vmin) / (vmax - vmin) < 0.6
                ax.text(
                    j,
                    i,
                    fmt.format(v),
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if dark else "black",
                )


def plot_sweep_lines(inputs: RunInputs, path: Path) -> Path | None:
    """For a sweep over one numeric key: optimal leverage (when optimized) and log-growth against it."""
    table = inputs.sweep
    keys = inputs.swept_keys
    if table is None or len(keys) != 1:
        return None
    key = keys[0]
    xs, numeric = _key_values(table[key])
    if not numeric or len(xs) < 2:
        return None
    x = np.asarray([float(v) for v in table[key]])
    order = np.argsort(x, kind="stable")
    panels: list[tuple[np.ndarray, np.ndarray | None, str, str]] = []
    if is_optimized(inputs) and (found := sweep_leverage(inputs)) is not None:
        panels.append((found[0], None, f"optimal {found[1]}".replace(" (", "\n("), BLUE))
    col = _metric_column(table, "log_growth")
    if col is not None:
        se_col = "stderr." + col.removeprefix("metrics.")
        se = 100 * np.asarray([num(v) for v in table[se_col]]) if se_col in table.columns else None
        panels.append((100 * np.asarray([num(v) for v in table[col]]), se, "log-growth (% per year)", GREEN))
    if not panels:
        return None
    with _style():
        fig = _figure(8, 2.6 * len(panels) + 0.6)
        axes = np.atleast_1d(fig.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0])
        bands = []
        for ax, (y, se, label, color) in zip(axes, panels, strict=True):
            ax.plot(x[order], y[order], color=color, marker="o", linewidth=2, markersize=4)
            if se is not None:
                lo, hi = (y - SE_MULTIPLE * se)[order], (y + SE_MULTIPLE * se)[order]
                band = ax.fill_between(x[order], lo, hi, color=color, alpha=0.15, linewidth=0)
                bands.append((ax, band, lo, hi))
            ax.set_ylabel(label)
        axes[-1].set_xlabel(key)
        axes[0].set_title(f"Sweep over {key}")
        _freeze_limits(*axes)
        for ax, band, lo, hi in bands:
            if _keep_visible(ax, band, x[order], lo, hi):
                band.set_label(f"± {SE_MULTIPLE} standard errors")
                ax.legend(loc="best")
        return _save(fig, path)


# ---------------------------------------------------------------------------------------------
# Calibration


def _posterior_params(posterior: dict[str, Any] | None, draws: Any) -> list[str]:
    listed = [
        k for k, v in (posterior or {}).items() if isinstance(v, dict) and "mean" in v and not v.get("fixed")
    ]
    if draws is None:
        return listed
    numeric = [
        c for c in draws.columns if c not in ("chain", "draw") and np.issubdtype(draws[c].dtype, np.number)
    ]
    names = [k for k in listed if k in numeric] if listed else numeric
    return [k for k in names if np.nanstd(draws[k].to_numpy(float)) > 0]


def plot_posterior(posterior: dict[str, Any] | None, draws: Any, path: Path) -> Path | None:
    """Marginal posterior histograms per parameter with the 90% interval (5%–95%) and the mean.

    Without saved draws, the posterior summary's means and 90% intervals are drawn instead.
    """
    names = _posterior_params(posterior, draws)
    if not names:
        return None
    ncols = min(3, len(names))
    nrows = math.ceil(len(names) / ncols)
    with _style():
        fig = _figure(3.4 * ncols + 0.4, 2.7 * nrows + 0.5)
        axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
        for ax, name in zip(axes, names, strict=False):
            s = (posterior or {}).get(name) if isinstance((posterior or {}).get(name), dict) else {}
            if draws is not None:
                x = draws[name].to_numpy(float)
                x = x[np.isfinite(x)]
                lo = num(s.get("q05")) if math.isfinite(num(s.get("q05"))) else float(np.quantile(x, 0.05))
                hi = num(s.get("q95")) if math.isfinite(num(s.get("q95"))) else float(np.quantile(x, 0.95))
                mean = num(s.get("mean")) if math.isfinite(num(s.get("mean"))) else float(np.mean(x))
                ax.axvspan(lo, hi, color=BLUE, alpha=0.12, label="90% interval")
                ax.hist(x, bins=40, density=True, color=BLUE, alpha=0.75)
                ax.set_yticks([])
                ax.set_ylabel("density")
            else:
                lo, hi, mean = num(s.get("q05")), num(s.get("q95")), num(s.get("mean"))
                ax.hlines(0, lo, hi, color=BLUE, linewidth=6, alpha=0.35, label="90% interval")
                ax.set_yticks([])
                ax.set_ylim(-1, 1)
            ax.axvline(mean, color=RED, linewidth=1.5, label="mean")
            ax.set_title(
                f"{name}: {fmt_number(mean, 3)} [{fmt_number(lo, 3)}, {fmt_number(hi, 3)}]", fontsize=10
            )
            ax.set_xlabel(PARAM_UNITS.get(name, name))
            ax.ticklabel_format(axis="x", style="sci", scilimits=(-3, 4), useMathText=True)
            ax.grid(axis="y", visible=False)
        for ax in axes[len(names) :]:
            ax.set_visible(False)
        axes[0].legend(loc="upper right")
        what = (
            "marginal posteriors"
            if draws is not None
            else "posterior means and 90% intervals (draws not saved)"
        )
        fig.suptitle(f"Calibration: {what}", x=0.02, ha="left", fontsize=12, fontweight="bold")
        return _save(fig, path)


def plot_ppc(ppc: dict[str, Any] | None, path: Path) -> Path | None:
    """Posterior predictive check: for each statistic, the predictive 5–95% interval and mean against
    the value realized in the data, with the predictive p-value."""
    stats = (ppc or {}).get("statistics")
    if not isinstance(stats, dict):
        return None
    rows = [(k, v) for k, v in stats.items() if isinstance(v, dict)]
    if not rows:
        return None
    with _style():
        fig = _figure(8, 0.75 * len(rows) + 1.4)
        axes = np.atleast_1d(fig.subplots(len(rows), 1, squeeze=False)[:, 0])
        for ax, (name, s) in zip(axes, rows, strict=True):
            lo, hi, mean, real = (num(s.get(k)) for k in ("q05", "q95", "mean", "realized"))
            p = num(s.get("p_value"))
            ax.hlines(0, lo, hi, color=BLUE, linewidth=7, alpha=0.3, label="predictive 5–95%")
            ax.plot([mean], [0], "o", color=BLUE, markersize=6, label="predictive mean")
            ax.plot([real], [0], "D", color=RED, markersize=7, label="data")
            ax.set_yticks([0], [name])
            ax.set_ylim(-1, 1)
            ax.grid(axis="y", visible=False)
            ax.spines["left"].set_visible(False)
            ax.tick_params(axis="y", length=0)
            flag = math.isfinite(p) and (p < 0.05 or p > 0.95)
            ax.text(
                1.01,
                0.5,
                f"p = {p:.2f}" if math.isfinite(p) else "p = –",
                transform=ax.transAxes,
                va="center",
                ha="left",
                color=RED if flag else "black",
                fontsize=9,
            )
        axes[0].legend(loc="lower left", bbox_to_anchor=(0, 1.02), ncols=3)
        n = (ppc or {}).get("n_paths")
        fig.suptitle(
            "Posterior predictive check" + (f" ({n} simulated series)" if n else ""),
            x=0.02,
            ha="left",
            fontsize=12,
            fontweight="bold",
        )
        return _save(fig, path)


# ---------------------------------------------------------------------------------------------

PLOTS = (
    ("equity_fan.png", "Equity fan chart", lambda d, p: plot_equity_fan(d.results, p)),
    ("leverage.png", "Leverage over time", lambda d, p: plot_leverage(d.results, p)),
    (
        "growth_vs_leverage.png",
        "Growth and risk against leverage, on the out-of-sample paths (the same at every scale); "
        "shaded: ± 2 standard errors",
        lambda d, p: plot_growth_vs_leverage(d.results, p),
    ),
    ("convergence.png", "Optimizer convergence", lambda d, p: plot_convergence(d.results, p)),
    ("frontier.png", "Sweep: growth–risk frontier", plot_frontier),
    ("heatmap.png", "Sweep: heatmap", plot_heatmap),
    ("sweep_lines.png", "Sweep: results against the swept key", plot_sweep_lines),
    ("posterior.png", "Calibration: posterior", lambda d, p: plot_posterior(d.posterior, d.draws, p)),
    ("ppc.png", "Calibration: posterior predictive check", lambda d, p: plot_ppc(d.ppc, p)),
)
"""``(file name, caption, draw(inputs, path) -> path | None)`` in the order the report shows them."""


def draw_all(inputs: RunInputs) -> tuple[list[tuple[Path, str]], list[str]]:
    """Draw every picture the inputs allow into the run directory.

    Returns ``([(png path, caption), ...], problems)``: a picture whose saved data is malformed is
    left out with a warning and a line in ``problems`` rather than failing the whole report.
    """

    drawn, problems = [], []
    for name, caption, draw in PLOTS:
        try:
            path = draw(inputs, inputs.run_dir / name)
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
            message = f"{name} was not drawn: {type(exc).__name__}: {exc}"
            warnings.warn(message, RuntimeWarning, stacklevel=2)
            problems.append(message)
            continue
        if path is not None:
            drawn.append((path, caption))
    return drawn, problems


def make_plots(run_dir: str | Path) -> list[Path]:
    """Draw the PNG pictures of a run directory's saved results into it; returns their paths.

    Raises:
        ConfigError: the directory holds no results (see :func:`levopt.report.make_report`).
    """

    drawn, _ = draw_all(load_inputs(run_dir))
    return [path for path, _ in drawn]
