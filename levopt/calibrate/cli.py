"""``levopt calibrate``: fit a path model to price history and write the posterior, its draws and a
posterior predictive check (``--model dcc_garch``: several assets, ``--data`` repeated or one file
with a price column per asset); or, with ``--model funding``, fit a funding-rate model (the AR(1), or
with ``--funding-model two_factor`` a slow and a fast AR(1) summed) to a funding history
(:mod:`levopt.calibrate.funding`) and write ``funding_calibration.json``.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Annotated, Any, Optional

import jax
import pandas as pd
import typer
from rich.console import Console
from rich.table import Table

from levopt.calibrate.fit import calibrate
from levopt.calibrate.funding import DISTS as FUNDING_DISTS
from levopt.calibrate.funding import MODELS as FUNDING_MODELS
from levopt.calibrate.funding import FundingFit, fit_funding, read_funding
from levopt.calibrate.posterior import calibrate_config, calibration_key
from levopt.calibrate.ppc import posterior_predictive_check
from levopt.calibrate.returns import multi_returns
from levopt.config import config_dir, load_config
from levopt.config.limits import MAX_INDEX, MAX_SEED
from levopt.data.load import infer_frequency, load_prices
from levopt.errors import ConfigError, ResourceError
from levopt.io import atomic_write_bytes, write_json
from levopt.outputs import claim_run_dir
from levopt.resources import available_memory

_DEFAULTS = {"model": "garch", "dist": "normal", "warmup": 500, "samples": 500, "chains": 2, "seed": 0}


def calibrate_command(
    # long because typer declares each of the command's options in this signature
    config: Annotated[
        Optional[Path],  # noqa: UP045 - typer needs Optional here
        typer.Argument(
            help="YAML config whose model has a 'calibrate' block (or use --data).", show_default=False
        ),
    ] = None,
    data: Annotated[
        Optional[list[Path]],  # noqa: UP045
        typer.Option(
            "--data",
            help="Price file (CSV, JSON or Parquet; a funding file with --model funding) to calibrate to, "
            "instead of a config. --model dcc_garch: repeat it, one file per asset (aligned on their "
            "common timestamps), or give one file with a price column per asset.",
        ),
    ] = None,
    model: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--model", help="gbm | merton | garch | dcc_garch | funding (default garch)"),
    ] = None,
    dist: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--dist", help="garch shocks: normal | t; funding: normal | student_t (default normal)"),
    ] = None,
    funding_model: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(
            "--funding-model",
            help="With --model funding: ar1 | two_factor (a slow and a fast AR(1) summed; normal "
            "shocks) (default ar1).",
        ),
    ] = None,
    gjr: Annotated[bool, typer.Option("--gjr", help="garch: add the GJR asymmetry term.")] = False,
    steps_per_day: Annotated[
        float, typer.Option("--steps-per-day", help="Simulation steps a day (garch: must match the data).")
    ] = 1,
    frequency: Annotated[
        Optional[str], typer.Option("--frequency", help="Resample prices first: 1d, 4h, ...")  # noqa: UP045
    ] = None,
    column: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(
            "--column",
            help="Close price column, or funding-rate column (default: detected); dcc_garch with one "
            "file: its asset columns, comma-separated (default: all).",
        ),
    ] = None,
    timestamp_column: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--timestamp-column", help="Bar time column (default: detected)."),
    ] = None,
    keep_last: Annotated[
        bool,
        typer.Option("--keep-last", help="Keep the file's last bar (dropped by default: often partial)."),
    ] = False,
    warmup: Annotated[
        Optional[int],  # noqa: UP045
        typer.Option("--warmup", min=1, max=MAX_INDEX, help="NUTS warmup iterations (default 500)."),
    ] = None,
    samples: Annotated[
        Optional[int],  # noqa: UP045
        typer.Option("--samples", min=4, max=MAX_INDEX, help="NUTS draws per chain (default 500)."),
    ] = None,
    chains: Annotated[
        Optional[int],  # noqa: UP045
        typer.Option("--chains", min=1, max=MAX_INDEX, help="Chains, run sequentially (default 2)."),
    ] = None,
    seed: Annotated[
        Optional[int],  # noqa: UP045
        typer.Option("--seed", min=0, max=MAX_SEED, help="Seed (default: the config's, else 0)."),
    ] = None,
    ppc_paths: Annotated[
        int,
        typer.Option(
            "--ppc-paths", min=0, max=MAX_INDEX, help="Simulated series in the predictive check (0: skip)."
        ),
    ] = 200,
    out: Annotated[Path, typer.Option("--out", help="Output directory.")] = Path("runs/calibrate"),
    force: Annotated[
        bool,
        typer.Option("--force", help="Overwrite --out even when it holds another calibration or run."),
    ] = False,
) -> None:
    """Calibrate a path model by NUTS; write posterior.json, draws.parquet and ppc.json to --out
    (--model funding: a funding-rate model, to funding_calibration.json)."""
    if (config is None) == (not data):
        raise ConfigError("calibrate", "give either a CONFIG file or --data FILE (not both)")
    if funding_model is not None and (config is not None or model != "funding"):
        raise ConfigError("--funding-model", "applies to --data with --model funding only; drop it")
    if not (math.isfinite(steps_per_day) and steps_per_day > 0):
        raise ConfigError("--steps-per-day", f"{steps_per_day}; allowed: a finite number > 0")
    if config is not None:
        _reject_model_options(
            model=model, dist=dist, frequency=frequency, column=column, timestamp_column=timestamp_column
        )
        result, key, request = _from_config(config, warmup, samples, chains, seed, out, force, ppc_paths)
    elif model == "funding":
        _reject_funding_options(
            gjr=gjr,
            steps_per_day=steps_per_day,
            frequency=frequency,
            timestamp_column=timestamp_column,
            keep_last=keep_last,
        )
        settings = {"warmup": warmup, "samples": samples, "chains": chains, "seed": seed}
        _calibrate_funding(
            _one_file(data, "funding"), dist, funding_model, column, settings, ppc_paths, out, force
        )
        return
    else:
        result, key, request = _from_data(
            data,
            model=model,
            dist=dist,
            gjr=gjr,
            steps_per_day=steps_per_day,
            frequency=frequency,
            column=column,
            timestamp_column=timestamp_column,
            keep_last=keep_last,
            warmup=warmup,
            samples=samples,
            chains=chains,
            seed=seed,
            out=out,
            force=force,
            ppc_paths=ppc_paths,
        )
    _write_outputs(result, key, out, ppc_paths, request)
    _print_summary(result, out)


def _reject_model_options(**options: str | None) -> None:
    """With a config, the model section is the only source of these settings."""
    for name, value in options.items():
        if value is not None:
            raise ConfigError(
                "--" + name.replace("_", "-"),
                "comes from the config's model section; drop it or drop the config",
            )


def _one_file(data: list[Path] | None, kind: str) -> Path:
    """The single ``--data`` file of a one-asset model."""
    files = list(data or [])
    if len(files) != 1:
        raise ConfigError(
            "--data",
            f"{len(files)} files given; --model {kind} takes one (several files, one asset each, "
            "only with --model dcc_garch)",
        )
    return files[0]


def _from_data(
    data: list[Path],
    *,
    model: str | None,
    dist: str | None,
    gjr: bool,
    steps_per_day: float,
    frequency: str | None,
    column: str | None,
    timestamp_column: str | None,
    keep_last: bool,
    warmup: int | None,
    samples: int | None,
    chains: int | None,
    seed: int | None,
    out: Path,
    force: bool,
    ppc_paths: int,
) -> Any:
    kind = model or _DEFAULTS["model"]
    if kind not in ("gbm", "merton", "garch", "dcc_garch"):
        raise ConfigError(
            "--model", f"unknown model {kind!r}; allowed: gbm, merton, garch, dcc_garch, funding"
        )
    dist_ = dist or _DEFAULTS["dist"]
    if dist_ not in ("normal", "t"):
        raise ConfigError("--dist", f"unknown shock distribution {dist_!r}; allowed: normal, t")
    seed_ = _DEFAULTS["seed"] if seed is None else seed
    absolute = [str(Path(f).expanduser().absolute()) for f in data]
    request = {
        # one file is recorded as a string, as before several files were allowed
        "data": absolute if kind == "dcc_garch" else str(Path(_one_file(data, kind)).expanduser().absolute()),
        "model": kind,
        "dist": dist_,
        "gjr": gjr,
        "steps_per_day": steps_per_day,
        "frequency": frequency,
        "column": column,
        "timestamp_column": timestamp_column,
        "keep_last": keep_last,
        "warmup": warmup or _DEFAULTS["warmup"],
        "samples": samples or _DEFAULTS["samples"],
        "chains": chains or _DEFAULTS["chains"],
        "seed": seed_,
        "ppc_paths": ppc_paths,
    }
    # Before anything runs: --out can take the results, and the data are readable.
    claim_run_dir(out, "--out", kind="calibration", identity=request, force=force)
    key = jax.random.fold_in(jax.random.PRNGKey(seed_), 2)
    if kind == "dcc_garch":
        result = _calibrate_assets(data, request, key, column=column, timestamp_column=timestamp_column)
        result.summary["data"] = request["data"]
        result.summary["diagnostics"]["seed"] = seed_
        return result, key, request
    path = _one_file(data, kind)
    prices = load_prices(
        path,
        price_col=column,
        timestamp_col=timestamp_column,
        drop_last_partial=not keep_last,
        option_names=("--timestamp-column", "--column"),
    )
    prices.attrs["source"] = str(path)
    _check_ppc_memory(ppc_paths, len(prices))
    result = calibrate(
        prices,
        model=kind,
        dist=dist_,
        gjr=gjr,
        steps_per_day=steps_per_day,
        warmup=request["warmup"],
        samples=request["samples"],
        chains=request["chains"],
        key=key,
        frequency=frequency,
    )
    result.summary["data"] = request["data"]
    result.summary["diagnostics"]["seed"] = seed_
    return result, key, request


def _calibrate_assets(
    data: list[Path], request: dict[str, Any], key: Any, *, column: str | None, timestamp_column: str | None
) -> Any:
    """``--model dcc_garch``: the assets' returns aligned (errors name ``--data``), then NUTS."""
    columns: str | list[str] | None = column
    if column is not None and len(data) == 1:
        columns = [c.strip() for c in column.split(",") if c.strip()]
    returns = multi_returns(
        data if len(data) > 1 else data[0],
        steps_per_day=request["steps_per_day"],
        column=columns,
        frequency=request["frequency"],
        drop_last_partial=not request["keep_last"],
        timestamp_col=timestamp_column,
        field="--data",
    )
    _check_ppc_memory(request["ppc_paths"], returns.values.size)
    return calibrate(
        returns,
        model="dcc_garch",
        dist=request["dist"],
        gjr=request["gjr"],
        steps_per_day=request["steps_per_day"],
        warmup=request["warmup"],
        samples=request["samples"],
        chains=request["chains"],
        key=key,
    )


PPC_BYTES_PER_VALUE = 64
"""Memory of the predictive check per simulated return: the series, their statistics' temporaries."""


def _check_ppc_memory(paths: int, n_obs: int) -> None:
    """Refuse a predictive check whose simulated series would not fit in memory."""
    available = available_memory()
    need = paths * max(n_obs, 1) * PPC_BYTES_PER_VALUE
    if available is not None and need > available[0]:
        most = int(available[0] // (max(n_obs, 1) * PPC_BYTES_PER_VALUE))
        raise ResourceError(
            "--ppc-paths",
            f"{paths:,} series of {n_obs:,} returns need about {need / 1e9:.3g} GB, "
            f"but {available[0] / 1e9:.3g} GB of {available[1]} is available; allowed: at most {most:,}",
        )


def _write_outputs(result: Any, key: Any, out: Path, ppc_paths: int, request: dict[str, Any]) -> None:
    summary = dict(result.summary)
    summary["timings"] = {"sampler_s": result.seconds}
    # What produced this directory: a later calibration into it with other inputs needs --force.
    summary["request"] = request
    write_json(out / "posterior.json", summary)
    buf = io.BytesIO()
    result.to_frame().to_parquet(buf, index=False)
    atomic_write_bytes(out / "draws.parquet", buf.getvalue())
    if ppc_paths > 0:
        _check_ppc_memory(ppc_paths, int(result.returns.values.size))
        write_json(
            out / "ppc.json",
            posterior_predictive_check(result, jax.random.fold_in(key, 1), n_paths=ppc_paths),
        )


def _from_config(
    config: Path,
    warmup: int | None,
    samples: int | None,
    chains: int | None,
    seed: int | None,
    out: Path,
    force: bool,
    ppc_paths: int,
) -> Any:
    overrides = [
        f"model.calibrate.{k}={v}"
        for k, v in (("warmup", warmup), ("samples", samples), ("chains", chains), ("seed", seed))
        if v is not None
    ]
    cfg = load_config(config, overrides)
    if "calibrate" not in cfg.model:
        raise ConfigError("model.calibrate", f"{config} has no calibrate block in its model section")
    resolved = cfg.resolved()
    request = {
        "model": resolved["model"],
        "base_dir": str(config_dir(config)),
        "steps_per_day": cfg.steps_per_day,
        "seed": cfg.seed,
        "ppc_paths": ppc_paths,
    }
    claim_run_dir(out, "--out", kind="calibration", identity=request, force=force)
    result, spec = calibrate_config(cfg, config_dir(config))
    return result, calibration_key(cfg, spec), request


def _print_summary(result: Any, out: Path) -> None:

    table = Table(title=f"{result.kind} posterior ({result.summary['n_obs']} returns)")
    for col in ("parameter", "mean", "sd", "5%", "95%", "r_hat", "ess"):
        table.add_column(col, justify="left" if col == "parameter" else "right")
    fmt = lambda v: "" if v is None else f"{v:.4g}"  # noqa: E731
    params = {k: v for k, v in result.summary.items() if isinstance(v, dict) and "mean" in v}
    rows = params | result.summary.get("derived", {})
    for name, s in rows.items():
        table.add_row(
            name, fmt(s["mean"]), fmt(s["sd"]), fmt(s["q05"]), fmt(s["q95"]), fmt(s["r_hat"]), fmt(s["ess"])
        )
    console = Console(stderr=True)
    console.print(table)
    if result.assets:
        dropped = (result.summary.get("alignment") or {}).get("dropped", {})
        names = ", ".join(
            f"[{i}] {a}" + (f" ({dropped[a]} timestamps dropped to align)" if dropped.get(a) else "")
            for i, a in enumerate(result.assets)
        )
        console.print(f"assets: {names}", highlight=False)
    d = result.summary["diagnostics"]
    console.print(
        f"divergences: {d['divergences']}; sampler {result.seconds:.1f} s; wrote {out}/", highlight=False
    )


def _reject_funding_options(**options: Any) -> None:
    """Options of the price models that a funding calibration has no use for."""
    unused = {
        "gjr": False,
        "steps_per_day": 1,
        "frequency": None,
        "timestamp_column": None,
        "keep_last": False,
    }
    for name, value in options.items():
        if value != unused[name]:
            raise ConfigError("--" + name.replace("_", "-"), "does not apply to --model funding; drop it")


def _calibrate_funding(
    data: Path,
    dist: str | None,
    funding_model: str | None,
    column: str | None,
    settings: dict[str, int | None],
    ppc_paths: int,
    out: Path,
    force: bool,
) -> None:
    """``--model funding``: NUTS on a funding model; writes ``funding_calibration.json``."""
    dist_ = dist or _DEFAULTS["dist"]
    if dist_ not in FUNDING_DISTS:
        raise ConfigError(
            "--dist", f"unknown funding shock distribution {dist_!r}; allowed: {', '.join(FUNDING_DISTS)}"
        )
    kind = funding_model or "ar1"
    if kind not in FUNDING_MODELS:
        raise ConfigError(
            "--funding-model", f"unknown funding model {kind!r}; allowed: {', '.join(FUNDING_MODELS)}"
        )
    if kind == "two_factor" and dist_ != "normal":
        raise ConfigError(
            "--dist", f"{dist_} applies to --funding-model ar1 only; allowed with two_factor: normal"
        )
    request = {
        "data": str(Path(data).expanduser().absolute()),
        "model": "funding",
        "funding_model": kind,
        "dist": dist_,
        "column": column,
        "ppc_paths": ppc_paths,
    } | {k: _DEFAULTS[k] if v is None else v for k, v in settings.items()}
    # Before anything runs: --out can take the results, and the data are readable.
    claim_run_dir(out, "--out", kind="calibration", identity=request, force=force)
    rates = read_funding(data, column, field="--column")
    # The interval comes from the time stamps; a file without them is taken to be 8-hourly (Binance).
    timed = isinstance(rates.index, pd.DatetimeIndex)
    hours = infer_frequency(rates.index).total_seconds() / 3600 if timed else 8.0
    _check_ppc_memory(ppc_paths, len(rates))
    fit = fit_funding(
        rates,
        model=kind,
        interval_hours=hours,
        dist=dist_,
        num_warmup=request["warmup"],
        num_samples=request["samples"],
        num_chains=request["chains"],
        seed=request["seed"],
        ppc_draws=ppc_paths,
        source=request["data"],
    )
    write_json(out / "funding_calibration.json", fit.to_dict() | {"request": request})
    _print_funding_summary(fit, out)


def _print_funding_summary(fit: FundingFit, out: Path) -> None:
    name = "two-factor" if fit.model == "two_factor" else "AR(1)"
    title = f"funding {name} posterior, {fit.dist} shocks ({fit.n_obs} rates, every {fit.interval_hours:g} h)"
    table = Table(title=title)
    for col in ("parameter", "mean", "sd", "5%", "95%", "r_hat", "ess"):
        table.add_column(col, justify="left" if col == "parameter" else "right", no_wrap=True)
    fmt = lambda v: "" if v is None else f"{v:.4g}"  # noqa: E731
    for name, s in fit.summary.items():
        r_hat = "" if s["r_hat"] is None else f"{s['r_hat']:.3f}"
        table.add_row(name, fmt(s["mean"]), fmt(s["sd"]), fmt(s["q05"]), fmt(s["q95"]), r_hat, fmt(s["ess"]))
    console = Console(stderr=True)
    console.print(table)
    derived = fit.derived()
    a, sd = derived["annualized_mean"], derived["stationary_sd"]
    slow = (
        f"; slow component {derived['slow_share']['mean']:.0%} of the variance"
        if "slow_share" in derived
        else ""
    )
    console.print(
        f"annualized mean {a['mean']:.2%} a year (90%: {a['q05']:.2%} to {a['q95']:.2%}); "
        f"stationary sd {sd['mean']:.3g} per interval{slow}",
        highlight=False,
    )
    if fit.ppc:
        p_values = ", ".join(f"{k} {v['p_value']:.2f}" for k, v in fit.ppc.items())
        console.print(f"predictive p-values, P(simulated >= data): {p_values}", highlight=False)
    d = fit.diagnostics
    console.print(
        f"divergences: {d['divergences']}; sampler {d['seconds']:.1f} s; wrote {out}/funding_calibration.json",
        highlight=False,
    )
