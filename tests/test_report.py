"""``levopt report``: pictures and a self-contained report.html from saved results only.

The fixtures are small synthetic result files with the shapes ``levopt run | sweep | calibrate``
write; nothing here simulates. The browser test opens the report in a real headless Chromium (skipped
when none is installed) and checks that its tables render and every embedded image decodes.
"""

from __future__ import annotations

import io
import json
import math
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import Z, make_config
from matplotlib.collections import PolyCollection
from matplotlib.patches import Patch

import levopt
from levopt.errors import ConfigError, LevoptError
from levopt.report import make_plots, make_report
from levopt.report.cli import report_command
from levopt.report.plots import (
    MIN_BAND_PX,
    figure_convergence,
    figure_equity_fan,
    figure_growth_vs_leverage,
    figure_leverage,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
RUN_PLOTS = ("equity_fan.png", "leverage.png", "growth_vs_leverage.png", "convergence.png")
SWEEP_PLOTS = ("frontier.png", "heatmap.png")
CALIBRATION_PLOTS = ("posterior.png", "ppc.png")


def _run_results() -> dict:
    """A ``levopt run`` result: a 4-segment schedule optimized under two constraints."""
    quantiles = [0.05, 0.25, 0.5, 0.75, 0.95]
    days = list(range(31))
    z = [-1.645, -0.674, 0.0, 0.674, 1.645]
    equity = [[math.exp(0.0004 * t + zq * 0.02 * math.sqrt(t)) for t in days] for zq in z]
    schedule = [1.5, 2.25, 1.75, 2.5]
    leverage = [[schedule[min(t * 4 // 30, 3)] * (1 + 0.01 * zq * (t % 3 == 2)) for t in days] for zq in z]
    scales = [0.25 * k for k in range(1, 9)]
    metrics = {
        "log_growth": 0.1234,
        "mean_return": 0.0321,
        "cvar": 0.2876,
        "liquidation_probability": 0.0042,
        "max_drawdown": 0.1111,
        "cvar(level=0.95)": 0.2876,
    }
    stderr = {k: v / 20 for k, v in metrics.items()}
    return {
        "policy": {"leverage": schedule},
        "in_sample": {"metrics": {k: v * 1.05 for k, v in metrics.items()}, "stderr": stderr, "paths": 2000},
        "out_of_sample": {"metrics": metrics, "stderr": stderr},
        "constraints": [
            {
                "metric": "liquidation_probability",
                "sense": "max",
                "limit": 0.01,
                "value": 0.0042,
                "stderr": 0.0003,
                "in_sample": 0.004,
                "satisfied": True,
                "strictly_satisfied": True,
            },
            {
                "metric": "cvar(level=0.95)",
                "sense": "max",
                "limit": 0.285,
                "value": 0.2876,
                "stderr": 0.0031,
                "in_sample": 0.2849,
                "satisfied": True,
                "strictly_satisfied": False,
            },
        ],
        "optimizer": {
            "method": "optax",
            "iterations": 100,
            "converged": True,
            "wall_s": 12.5,
            "history": [
                {
                    "step": 20 * (k + 1),
                    "objective": 0.1 + 0.005 * k,
                    "lagrangian": -0.1,
                    "max_violation": v,
                    "constraints": {"liquidation_probability": 0.004},
                }
                for k, v in enumerate([0.05, 0.01, 0.002, 0.0, 0.0])
            ],
        },
        "config": {
            "seed": 7,
            "paths": 20000,
            "horizon_days": 30.0,
            "steps_per_day": 1,
            "precision": "float64",
            "model": {"kind": "gbm", "mu": 0.3, "sigma": 0.7},
            "market": {"borrow_rate": 0.05, "maintenance_margin": 0.005},
            "policy": {
                "kind": "schedule",
                "rebalance": 1,
                "segments": 4,
                "leverage": {"init": 1.0, "min": 0.0, "max": 5.0},
            },
            "objective": {
                "maximize": "log_growth",
                "constraints": [{"metric": "liquidation_probability", "max": 0.01}],
            },
            "optimizer": {"method": "optax", "replicates": 1, "steps": 100},
            "comment": "<script>alert('x')</script> & more",
        },
        "seed": 7,
        "versions": {"levopt": "0.1.0", "jax": "0.0.test"},
        "timings": {"total_s": 20.0},
        "trajectories": {"days": days, "quantiles": quantiles, "equity": equity, "leverage": leverage},
        "leverage_profile": {
            "scale": scales,
            "gross_leverage": [1.5 * s for s in scales],
            "log_growth": [0.2 * s - 0.1 * s * s for s in scales],
            "liquidation_probability": [0.002 * s**3 for s in scales],
            "cvar": [0.15 * s for s in scales],
            "mean_return": [0.03 * s for s in scales],
        },
    }


def _sweep_table() -> pd.DataFrame:
    """``results.parquet`` of a 3 x 3 grid over sigma and borrow rate, a 3-segment schedule."""
    rows = []
    for i, (sigma, rate) in enumerate((s, r) for s in (0.4, 0.6, 0.8) for r in (0.0, 0.05, 0.1)):
        lev = 0.3 / sigma**2 - rate
        row = {"point": i, "point_id": f"p{i:03d}", "model.sigma": sigma, "market.borrow_rate": rate}
        row |= {f"policy.leverage[{k}]": lev * (1 + 0.1 * k) for k in range(3)}
        row |= {
            "metrics.log_growth": 0.05 + 0.1 * lev - sigma * 0.1,
            "metrics.cvar": 0.1 + 0.2 * lev * sigma,
            "metrics.liquidation_probability": 0.001 * i,
        }
        row |= {"stderr.log_growth": 0.004, "stderr.cvar": 0.003, "stderr.liquidation_probability": 0.0001}
        row |= {
            "wall_s": 1.0 + i,
            "converged": i != 4,
            "iterations": 50,
            "constraints.liquidation_probability.satisfied": i < 8,
        }
        rows.append(row)
    return pd.DataFrame(rows)


def _write_parquet(path: Path, frame: pd.DataFrame) -> None:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    path.write_bytes(buffer.getvalue())


def _write_calibration(run_dir: Path) -> None:
    rng = np.random.default_rng(0)
    draws = pd.DataFrame(
        {
            "chain": np.repeat([0, 1], 200),
            "draw": np.tile(np.arange(200), 2),
            "mu": rng.normal(0.35, 0.2, 400),
            "sigma": rng.normal(0.71, 0.03, 400),
        }
    )
    _write_parquet(run_dir / "draws.parquet", draws)

    def summary(x: pd.Series) -> dict:
        return {
            "mean": float(np.mean(x)),
            "sd": float(np.std(x)),
            "q05": float(np.quantile(x, 0.05)),
            "q95": float(np.quantile(x, 0.95)),
            "r_hat": 1.002,
            "ess": 812.4,
        }

    posterior = {
        "model": "gbm",
        "mu": summary(draws["mu"]),
        "sigma": summary(draws["sigma"]),
        "diagnostics": {"max_r_hat": 1.002, "min_ess": 812.4, "divergences": 0, "chains": 2, "problems": []},
        "n_obs": 730,
        "data": "btc_daily.csv",
    }
    (run_dir / "posterior.json").write_text(json.dumps(posterior))
    ppc = {
        "n_paths": 200,
        "n_obs": 730,
        "statistics": {
            "annual_vol": {"realized": 0.7, "mean": 0.69, "q05": 0.62, "q95": 0.77, "p_value": 0.43},
            "excess_kurtosis": {"realized": 9.5, "mean": 0.1, "q05": -0.3, "q95": 0.6, "p_value": 0.0},
            "acf_sq_1": {"realized": 0.12, "mean": 0.0, "q05": -0.05, "q95": 0.05, "p_value": 0.01},
        },
    }
    (run_dir / "ppc.json").write_text(json.dumps(ppc))


def _fill_full_dir(run_dir: Path) -> Path:
    """A run's results, a 3 x 3 sweep and a calibration in one directory."""
    (run_dir / "results.json").write_text(json.dumps(_run_results()))
    _write_parquet(run_dir / "results.parquet", _sweep_table())
    (run_dir / "sweep.json").write_text(
        json.dumps(
            {
                "keys": ["model.sigma", "market.borrow_rate"],
                "mode": "grid",
                "points": 9,
                "config": _run_results()["config"],
            }
        )
    )
    _write_calibration(run_dir)
    return run_dir


@pytest.fixture(scope="module")
def full_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """report.html of a full run directory (with a space in its name), built once for the module."""
    run_dir = tmp_path_factory.mktemp("report") / "full run"
    run_dir.mkdir()
    return make_report(_fill_full_dir(run_dir))


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    """A directory with a run's results.json only."""
    (tmp_path / "results.json").write_text(json.dumps(_run_results()))
    return tmp_path


def _assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, path
    assert len(data) > 10_000, f"{path.name} is only {len(data)} bytes"


def test_report_writes_every_plot_and_the_tables(full_report: Path) -> None:
    path = full_report
    assert path.name == "report.html"
    for name in RUN_PLOTS + SWEEP_PLOTS + CALIBRATION_PLOTS:
        _assert_png(path.parent / name)
    page = path.read_text()
    images = re.findall(r'<img src="data:image/png;base64,', page)
    assert len(images) == len(RUN_PLOTS + SWEEP_PLOTS + CALIBRATION_PLOTS)
    # The answer in words, then the evidence: metrics ± s.e., constraints, in vs out, optimizer.
    assert "Follow a 4-segment leverage schedule over 30 days" in page
    assert "rebalanced daily" in page
    assert "12.34 %/yr" in page and "± 0.62" in page  # log_growth 0.1234 ± 0.00617
    assert "≤ 1.00 %" in page and "≈ within 2 s.e. of the limit" in page and "✓ holds" in page
    assert "5.57 %/yr" not in page and "13.0 %/yr" in page  # in sample: 0.1234 * 1.05
    assert "optax" in page and "12.5 s" in page
    # Sweep table sorted by the objective, calibration tables, the config as YAML.
    assert "highest log_growth first" in page and "model.sigma" in page
    assert "btc_daily.csv" in page and "excess_kurtosis" in page and "812" in page
    assert "horizon_days: 30.0" in page
    # Self-contained and escaped.
    assert not re.search(r"(src|href)\s*=\s*[\"']?(https?:)?//", page)
    assert "http://" not in page and "https://" not in page
    assert "<script>alert" not in page and "&lt;script&gt;alert" in page


def test_make_plots_returns_what_it_drew(run_dir: Path) -> None:
    paths = make_plots(run_dir)
    assert [p.name for p in paths] == list(RUN_PLOTS)
    for path in paths:
        _assert_png(path)
    assert not (run_dir / "report.html").exists()


def test_evaluate_output_gives_tables_only(tmp_path: Path) -> None:
    results = _run_results()
    evaluated = {k: results[k] for k in ("config", "seed", "versions", "timings")}
    evaluated |= {
        "metrics": results["out_of_sample"]["metrics"],
        "stderr": results["out_of_sample"]["stderr"],
    }
    evaluated["config"]["policy"] = {"kind": "constant", "leverage": 2.5, "rebalance": "never"}
    (tmp_path / "result.json").write_text(json.dumps(evaluated))
    page = make_report(tmp_path).read_text()
    assert "Evaluated policy: Hold 2.50x leverage, opened at the start and held without rebalancing." in page
    assert "12.34 %/yr" in page and "<img" not in page
    assert not list(tmp_path.glob("*.png"))


def test_sweep_only_directory(tmp_path: Path) -> None:
    _write_parquet(tmp_path / "results.parquet", _sweep_table())
    (tmp_path / "sweep.json").write_text(
        json.dumps(
            {
                "keys": ["model.sigma", "market.borrow_rate"],
                "mode": "grid",
                "points": 12,
                "config": _run_results()["config"],
            }
        )
    )
    page = make_report(tmp_path).read_text()
    assert {p.name for p in tmp_path.glob("*.png")} == set(SWEEP_PLOTS)
    assert "Best of 9 sweep points" in page and "9 of 12 points finished" in page
    assert "leverage (mean over 3 segments)" in page


def test_odd_but_valid_inputs(tmp_path: Path) -> None:
    """A cvxpy run of two assets with a calibration summary (no draws), nulls and infinities; a
    three-key sweep with list-valued keys, a missing metric and 2-d weights; a one-key sweep."""
    run = _run_results()
    run["policy"] = {"weights": [1.5, -0.5]}
    run["config"]["steps_per_day"] = 6
    run["config"]["policy"] = {
        "kind": "constant",
        "rebalance": 4,
        "weights": {"init": [1, 0], "min": -2, "max": 3},
    }
    run["optimizer"] = {
        "method": "cvxpy",
        "iterations": 12,
        "converged": False,
        "wall_s": 0.3,
        "status": "optimal",
    }
    run["in_sample"] = {"metrics": {"log_growth": 0.2}, "scenarios": 5000}
    run["out_of_sample"]["metrics"]["max_drawdown"] = None
    run["out_of_sample"]["stderr"]["mean_return"] = "inf"
    run["constraints"][0]["satisfied"] = False
    del run["trajectories"]
    run["calibration"] = {
        "model": "garch",
        "omega": {"mean": 4e-5, "sd": 1e-5, "q05": 2.5e-5, "q95": 5.6e-5, "r_hat": 1.05, "ess": 100},
        "nu": {"mean": 4.2, "sd": 0.5, "q05": 3.5, "q95": 5.1, "r_hat": None, "ess": None},
        "diagnostics": {"divergences": 3, "problems": ["r_hat of omega is 1.05 > 1.01"]},
    }
    cvx = tmp_path / "cvx"
    cvx.mkdir()
    (cvx / "results.json").write_text(json.dumps(run))
    page = make_report(cvx).read_text()
    assert {p.name for p in cvx.glob("*.png")} == {"growth_vs_leverage.png", "posterior.png"}
    assert "Hold asset 1: 1.50x, asset 2: −0.50x (gross 2.00x), rebalanced every 16 hours." in page
    assert "1 of 2 constraints violated" in page and "did not converge" in page
    assert "4×10⁻⁵" in page and "± ∞" in page and "r_hat of omega" in page

    rows = []
    for i, (sigma, alloc, fee) in enumerate(
        (s, a, f) for s in (0.4, 0.8) for a in ("[1, 2]", "[3, 4]") for f in (1, 2, 3)
    ):
        row = {
            "point": i,
            "point_id": f"x{i}",
            "model.sigma": sigma,
            "policy.allocation": alloc,
            "market.fee": fee,
        }
        row |= {f"policy.weights[{s},{k}]": (1 + s) * (k - 0.3) / sigma for s in range(2) for k in range(2)}
        row |= {"metrics.log_growth": math.nan if i == 3 else 0.1 * fee - sigma, "metrics.cvar": 0.1 * fee}
        rows.append(row | {"converged": True})
    sweep3 = tmp_path / "sweep3"
    sweep3.mkdir()
    _write_parquet(sweep3 / "results.parquet", pd.DataFrame(rows))
    objective = {"minimize": {"metric": "cvar", "level": 0.99}}
    (sweep3 / "sweep.json").write_text(
        json.dumps(
            {
                "keys": ["model.sigma", "policy.allocation", "market.fee"],
                "config": {"policy": {"kind": "schedule"}, "objective": objective},
            }
        )
    )
    page = make_report(sweep3).read_text()
    assert {p.name for p in sweep3.glob("*.png")} == {"frontier.png", "heatmap.png"}
    assert "gross leverage (mean over 2 segments)" in page and "lowest cvar(level=0.99) first" in page

    sweep1 = tmp_path / "sweep1"
    sweep1.mkdir()
    rows = [
        {
            "point": i,
            "point_id": f"y{i}",
            "market.borrow_rate": r,
            "policy.target_vol": 0.5 - r,
            "metrics.log_growth": 0.2 - r,
            "stderr.log_growth": 0.01,
            "metrics.cvar": 0.3,
            "iterations": 10,
        }
        for i, r in enumerate([0.0, 0.05, 0.1])
    ]
    _write_parquet(sweep1 / "results.parquet", pd.DataFrame(rows))
    page = make_report(sweep1).read_text()
    assert {p.name for p in sweep1.glob("*.png")} == {"frontier.png", "sweep_lines.png"}
    assert "optimal target_vol" in page


def test_missing_results_is_a_one_line_user_error(tmp_path: Path) -> None:
    with pytest.raises(LevoptError, match="no results.json") as info:
        report_command(tmp_path)
    assert isinstance(info.value, ConfigError) and "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="does not exist"):
        report_command(tmp_path / "nowhere")
    (tmp_path / "results.json").write_text("{not json")
    with pytest.raises(ConfigError, match="cannot read it as JSON"):
        report_command(tmp_path)


def test_cli_command_writes_the_report(tmp_path: Path) -> None:
    import typer
    from typer.testing import CliRunner

    app = typer.Typer()
    app.command("report")(report_command)
    app.command("noop")(lambda: None)  # two commands: "report" stays a subcommand, as in levopt's CLI
    _write_calibration(tmp_path)
    result = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "report.html").is_file() and "wrote" in result.output


# ---------------------------------------------------------------------------------------------
# Standard errors on the pictures, and legends that name only what is drawn


def _profile_with_stderr(results: dict) -> dict:
    """The fixture's leverage profile with the standard errors ``levopt run`` now saves: growth
    s.e. growing with the scale, CRN differences far smaller, no liquidation at any scale."""
    profile = dict(results["leverage_profile"])
    scales = np.asarray(profile["scale"])
    profile["liquidation_probability"] = [0.0] * len(scales)
    profile["stderr"] = {
        "log_growth": (0.004 * scales).tolist(),
        "cvar": (0.003 * scales).tolist(),
        "liquidation_probability": [0.0] * len(scales),
    }
    profile["diff_stderr"] = {"log_growth": (0.002 * np.abs(scales - 1.0)).tolist()}
    profile["paths"] = 20224
    return profile


def _mean_height_px(artist) -> float:
    """Mean height in pixels of a drawn band: polygon area over its width (fill_between), or the
    height of a span (axhspan)."""
    if isinstance(artist, PolyCollection):
        xy = artist.get_transform().transform(artist.get_paths()[0].vertices)
        x, y = xy[:, 0], xy[:, 1]
        area = 0.5 * abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1)))
        width = x.max() - x.min()
        return area / width if width > 0 else 0.0
    return artist.get_window_extent().height


def _legend_problems(fig) -> list[str]:
    """Each legend entry must name a visible artist of the figure with that label, and a shaded
    band must be tall enough to be seen."""
    fig.draw_without_rendering()
    artists: dict[str, list] = {}
    for ax in fig.axes:
        for artist in ax.get_children():
            artists.setdefault(artist.get_label(), []).append(artist)
    legends = [*fig.legends, *(ax.get_legend() for ax in fig.axes)]
    problems = []
    entries = [t.get_text() for legend in legends if legend is not None for t in legend.get_texts()]
    assert entries, "the figure has no legend"
    for label in entries:
        drawn = [a for a in artists.get(label, []) if a.get_visible()]
        if not drawn:
            problems.append(f"{label!r} names nothing drawn")
        for artist in drawn:
            if isinstance(artist, PolyCollection | Patch) and _mean_height_px(artist) < MIN_BAND_PX:
                problems.append(f"{label!r} is a band {_mean_height_px(artist):.2f} px high")
    return problems


def _labels(fig) -> list[str]:
    return [
        t.get_text()
        for legend in [*fig.legends, *(ax.get_legend() for ax in fig.axes)]
        if legend
        for t in legend.get_texts()
    ]


def test_leverage_legend_names_no_invisible_band() -> None:
    """A daily-rebalanced schedule holds the same leverage on every path until the last day, where
    the paths differ by 5%: over one step of zero width, no band can be seen and none is named."""
    results = _run_results()
    lev = np.asarray(results["trajectories"]["leverage"])
    same = np.tile(lev[2], (5, 1))
    same[:, -1] *= 1 + 0.05 * np.asarray([-1.645, -0.674, 0.0, 0.674, 1.645])
    results["trajectories"]["leverage"] = same.tolist()
    fig = figure_leverage(results)
    assert _legend_problems(fig) == []
    assert not any("of paths" in label for label in _labels(fig))
    assert _labels(fig) == ["leverage (the spread across paths is narrower than the line)"]
    # With a real spread across paths the bands are drawn and named.
    results["trajectories"]["leverage"] = (
        np.tile(lev[2], (5, 1)) * np.linspace(0.8, 1.2, 5)[:, None]
    ).tolist()
    fig = figure_leverage(results)
    assert _legend_problems(fig) == []
    labels = _labels(fig)
    assert {"5–95% of paths", "25–75% of paths"} <= set(labels)
    assert "median (standard error not saved with these results)" in labels  # an older result file


def test_monte_carlo_curves_carry_their_bands_and_legends_match() -> None:
    results = _run_results()
    results["leverage_profile"] = _profile_with_stderr(results)
    days = np.asarray(results["trajectories"]["days"])
    median = np.asarray(results["trajectories"]["equity"][2])
    results["trajectories"]["equity_median_ci"] = [(median - 0.01).tolist(), (median + 0.01).tolist()]
    results["in_sample"]["stderr"]["log_growth"] = 0.002
    for figure in (figure_growth_vs_leverage, figure_equity_fan, figure_convergence):
        fig = figure(results)
        assert _legend_problems(fig) == [], figure.__name__
    growth = figure_growth_vs_leverage(results)
    labels = _labels(growth)
    assert "shaded: ± 2 standard errors" in labels
    assert "liquidation probability (right): 0 at every scale" in labels
    assert "difference from the chosen policy (lower panel)" in labels
    # The named band is the growth's: ± 2 s.e. around the curve, in percent per year.
    profile = results["leverage_profile"]
    band = next(a for a in growth.axes[0].collections if a.get_label() == "shaded: ± 2 standard errors")
    xy = band.get_paths()[0].vertices
    at_one = xy[np.isclose(xy[:, 0], 1.0), 1]  # the x axis is the scale for a schedule
    growth_one, se_one = profile["log_growth"][3], profile["stderr"]["log_growth"][3]
    assert at_one.min() == pytest.approx(100 * (growth_one - 2 * se_one))
    assert at_one.max() == pytest.approx(100 * (growth_one + 2 * se_one))
    fan_labels = _labels(figure_equity_fan(results))
    assert "median ± 2 s.e." in fan_labels and len(days) == len(median)
    assert any("final value ± 2 s.e." in label for label in _labels(figure_convergence(results)))
    # Results saved before standard errors were: no band, and the chart says so.
    results["leverage_profile"] = {k: v for k, v in profile.items() if isinstance(v, list)}
    old = figure_growth_vs_leverage(results)
    assert _legend_problems(old) == [] and not any("shaded" in label for label in _labels(old))
    assert "not saved" in old.axes[0].get_title(loc="left")


def test_degenerate_stderr_is_shown_in_words(tmp_path: Path) -> None:
    results = _run_results()
    results["out_of_sample"]["metrics"]["cvar"] = 0.99531
    results["out_of_sample"]["stderr"]["cvar"] = 3.8e-16  # every tail path the same liquidation
    results["out_of_sample"]["stderr"]["liquidation_probability"] = 0.0
    results["out_of_sample"]["metrics"]["liquidation_probability"] = 0.0
    (tmp_path / "results.json").write_text(json.dumps(results))
    page = make_report(tmp_path).read_text()
    assert "± 0 (all tail paths identical)" in page and "± 0 (same on every path)" in page
    assert "3.8e-16" not in page and "10⁻¹⁶" not in page


@pytest.fixture(scope="module")
def kelly_run() -> dict:
    """A small optimized run: constant leverage for growth, GBM with a Kelly leverage of 0.62."""
    cfg = make_config(
        paths=4096,
        horizon_days=30,
        model={"kind": "gbm", "mu": 0.4, "sigma": 0.8},
        policy={"kind": "constant", "leverage": {"init": 1.0, "min": 0.0, "max": 4.0}, "rebalance": 1},
        objective={
            "maximize": "log_growth",
            "constraints": [{"metric": "liquidation_probability", "max": 0.05}],
        },
        optimizer={"method": "optax", "steps": 60, "paths": 4096, "replicates": 1},
    )
    return levopt.run(cfg)


def test_scaling_chart_agrees_with_the_headline(kelly_run: dict) -> None:
    profile, oos = kelly_run["leverage_profile"], kelly_run["out_of_sample"]
    one = int(np.argmin(np.abs(np.asarray(profile["scale"]) - 1.0)))
    assert profile["scale"][one] == 1.0 and profile["paths"] >= kelly_run["config"]["paths"]
    # Scale 1 is the chosen policy on a superset of the out-of-sample paths: the same figures
    # within their standard errors.
    for name in ("log_growth", "cvar", "mean_return", "liquidation_probability"):
        value, se = profile[name][one], profile["stderr"][name][one]
        gap = abs(value - oos["metrics"][name])
        assert gap <= Z * math.hypot(se, oos["stderr"][name]) + 1e-12, (name, value, oos["metrics"][name])
    growth = np.asarray(profile["log_growth"])
    se, diff_se = (
        np.asarray(profile["stderr"]["log_growth"]),
        np.asarray(profile["diff_stderr"]["log_growth"]),
    )
    # Common random numbers: neighbouring scales differ with far less noise than either value has
    # (independent paths would give sqrt(2) times it).
    assert diff_se[one] == 0 and np.all(diff_se[[one - 1, one + 1]] < 0.5 * se[one])
    # The chart agrees with the optimum: no scale grows significantly faster than the chosen one.
    assert np.all(growth - growth[one] <= Z * diff_se + 1e-15), (growth - growth[one]) / np.maximum(
        diff_se, 1e-300
    )
    # What the chart draws is that profile: the star sits on the growth at scale 1.
    fig = figure_growth_vs_leverage(kelly_run)
    star = next(line for line in fig.axes[0].get_lines() if line.get_marker() == "*")
    assert star.get_ydata()[0] == pytest.approx(100 * growth[one], abs=1e-12)


# ---------------------------------------------------------------------------------------------
# A real browser


@pytest.fixture(scope="module")
def browser() -> str:
    """The headless browser's executable; skips (before any report is built) when there is none."""
    return _browser()


def _browser() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    pytest.skip(
        "no headless browser: install one with apt-get install -y chromium (chromium, chromium-browser "
        "or google-chrome on PATH)"
    )


def _run_browser(browser: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--virtual-time-budget=5000",
        *args,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=90, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


def test_report_renders_in_a_headless_browser(browser: str, full_report: Path, tmp_path: Path) -> None:
    dom = _run_browser(browser, tmp_path, "--dump-dom", full_report.as_uri()).stdout
    n_images = len(re.findall(r"<img\b", dom))
    assert n_images == len(RUN_PLOTS + SWEEP_PLOTS + CALIBRATION_PLOTS)
    loaded = re.search(r'data-images-loaded="(\d+)"', dom)
    assert loaded, "the load handler did not run (script blocked?)"
    assert int(loaded.group(1)) == n_images, "some embedded images did not decode"
    for section in (
        "answer",
        "metrics",
        "constraints",
        "in-vs-out",
        "optimizer",
        "plots",
        "sweep",
        "calibration",
        "config",
    ):
        assert f'<section id="{section}">' in dom
    assert len(re.findall(r"<table\b", dom)) >= 8


def test_report_screenshot_is_not_blank(browser: str, full_report: Path, tmp_path: Path) -> None:
    from PIL import Image

    shot = tmp_path / "shot.png"
    _run_browser(browser, tmp_path, "--window-size=1280,2000", f"--screenshot={shot}", full_report.as_uri())
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert pixels.shape == (2000, 1280)
    assert pixels.std() > 10, "the screenshot is (nearly) one color"
    assert (pixels < 100).mean() > 0.005, "no dark text on the page"


def test_scaling_chart_screenshot_shows_its_bands(browser: str, tmp_path: Path) -> None:
    """The fixed chart as the report shows it, in a real browser: its figure cut out of report.html
    (image and caption), screenshotted; the growth curve's ± 2 s.e. band is on screen."""
    from PIL import Image

    results = _run_results()
    results["leverage_profile"] = _profile_with_stderr(results)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "results.json").write_text(json.dumps(results))
    page = make_report(run_dir).read_text()
    figure = re.search(r"<figure><img[^>]*alt=\"Growth and risk[^\"]*\".*?</figure>", page, re.S)
    assert figure, "the report has no scaling chart"
    style = re.search(r"<style>.*?</style>", page, re.S).group(0)
    only = tmp_path / "chart.html"
    only.write_text(
        f"<!DOCTYPE html><html><head><meta charset=utf-8>{style}</head><body><main>{figure.group(0)}</main></body></html>"
    )
    shot = tmp_path / "chart.png"
    _run_browser(browser, tmp_path, "--window-size=1100,900", f"--screenshot={shot}", only.as_uri())
    pixels = np.asarray(Image.open(shot).convert("RGB"), dtype=float)
    assert pixels.shape == (900, 1100, 3)
    assert pixels.std() > 10 and (pixels.mean(axis=2) < 100).mean() > 0.002  # a chart, with text
    # The growth band: BLUE (#1f5fa8) at alpha 0.18 on white is about (215, 226, 239).
    band = np.all(np.abs(pixels - np.asarray([215, 226, 239])) <= 6, axis=2)
    assert band.mean() > 0.01, f"the ± 2 s.e. band covers {band.mean():.2%} of the screenshot"
