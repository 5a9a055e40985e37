"""The ``levopt`` command line: evaluate | run | calibrate | report | data | liq-price | position."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import sys
import traceback
from contextlib import nullcontext
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from levopt.calibrate.cli import calibrate_command
from levopt.config import Config, config_dir, load_config
from levopt.data.cli import data_app
from levopt.errors import ConfigError, LevoptError
from levopt.estimate import check_executor
from levopt.io import write_json
from levopt.outputs import claim_file, claim_run_dir, reset_crash_log_dir, write_crash_log
from levopt.position import PositionRequest, parse_interval
from levopt.report import make_report
from levopt.report.cli import report_command
from levopt.resources import check_memory, check_memory_all
from levopt.runner import evaluate as run_evaluate
from levopt.runner import run as run_optimize
from levopt.sweep import SweepRunner
from levopt.terminal import evaluate_summary, json_text, position_summary, run_summary, search_bar
from levopt.venues.cli import liq_price_command, tiers_command

app = typer.Typer(
    name="levopt",
    help="Leverage optimization for crypto derivatives by simulation and optimization.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)

ConfigArg = Annotated[Path, typer.Argument(help="YAML experiment config.", show_default=False)]
SetOpt = Annotated[
    Optional[list[str]],  # noqa: UP045 - typer needs Optional here
    typer.Option("--set", help="Override a config key: --set model.sigma=0.6 (repeatable)."),
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Print only errors and the paths written.")]
JsonOpt = Annotated[
    bool, typer.Option("--json", help="Print the result as JSON on stdout (and nothing else there).")
]
ForceOpt = Annotated[
    bool,
    typer.Option("--force", help="Overwrite --out even when it holds the results of a different config."),
]


def _show(summary: object, written: Path | None, quiet: bool) -> None:
    """The human summary (on stderr) unless ``quiet``, then the path written, if any."""
    if not quiet:
        console.print(summary)
    if written is not None:
        console.print(f"wrote {escape(str(written))}", soft_wrap=True, highlight=False)


@app.command()
def evaluate(
    config: ConfigArg,
    out: Annotated[Optional[Path], typer.Option(help="Write the results JSON here.")] = None,  # noqa: UP045
    set_: SetOpt = None,
    executor: Annotated[
        str, typer.Option(help="local (chunks over all JAX devices) or ray (chunks as Ray tasks).")
    ] = "local",
    address: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(help="Ray cluster address (host:port) for --executor ray; default: a local Ray."),
    ] = None,
    quiet: QuietOpt = False,
    json_: JsonOpt = False,
    force: ForceOpt = False,
) -> None:
    """Simulate a config's leverage policy and report its metrics with standard errors."""
    cfg = load_config(config, set_ or [])
    if cfg.sweep is not None:
        raise ConfigError(
            "sweep", f"levopt evaluate runs one config; run the sweep with: levopt run {config} --out DIR"
        )
    check_executor(executor, address)
    # Everything that can be checked is checked before the computation starts.
    if out is not None:
        claim_file(out, "--out", identity=cfg.resolved(), force=force)
    check_memory(cfg, config_dir(config))
    result = run_evaluate(cfg, base_dir=config_dir(config), executor=executor, address=address)
    if out is not None:
        write_json(out, result)
    _show(evaluate_summary(result, config.name), out, quiet)
    if json_:
        sys.stdout.write(json_text(result))
    elif out is None and not quiet:
        # Without --out the metrics go to stdout too, as before --json existed.
        sys.stdout.write(json_text({"metrics": result["metrics"], "stderr": result["stderr"]}))


@app.command()
def run(
    config: ConfigArg,
    out: Annotated[Path, typer.Option(help="Run directory (results.json, plots, report).")] = Path(
        "runs/latest"
    ),
    set_: SetOpt = None,
    resume: Annotated[bool, typer.Option(help="Sweeps: skip the points already finished in --out.")] = False,
    executor: Annotated[
        str,
        typer.Option(
            help="local (all JAX devices) or ray: a sweep's points, or the paths of one evaluation, "
            "as Ray tasks."
        ),
    ] = "local",
    address: Annotated[
        str | None, typer.Option(help="Ray cluster address (host:port) for --executor ray.")
    ] = None,  # noqa: UP045
    limit: Annotated[int | None, typer.Option(help="Sweeps: compute at most this many new points.")] = None,  # noqa: UP045
    report: Annotated[bool, typer.Option(help="Write plots and report.html into --out.")] = True,
    quiet: QuietOpt = False,
    json_: JsonOpt = False,
    force: ForceOpt = False,
) -> None:
    """Optimize the config's policy (or run its sweep), test it out of sample, write results and a report."""
    cfg = load_config(config, set_ or [])
    if cfg.sweep is not None:
        _run_sweep(
            cfg,
            config_dir(config),
            out,
            resume,
            executor,
            address,
            limit,
            quiet=quiet,
            as_json=json_,
            force=force,
        )
    else:
        if resume or limit is not None:
            raise ConfigError("--resume", "--resume and --limit apply to configs with a sweep block")
        # Everything that can be checked is checked before the computation starts.
        check_executor(executor, address)
        claim_run_dir(out, "--out", kind="run", identity=cfg.resolved(), force=force)
        check_memory(cfg, config_dir(config))
        _run_single(
            cfg,
            config_dir(config),
            config.name,
            out,
            quiet=quiet,
            as_json=json_,
            executor=executor,
            address=address,
        )
    if report:
        _write_report(out)


def _run_single(
    cfg: Config,
    base_dir: Path,
    name: str,
    out: Path,
    *,
    quiet: bool = False,
    as_json: bool = False,
    executor: str = "local",
    address: str | None = None,
) -> None:
    where = {"executor": executor, "address": address}
    if cfg.objective is None:
        with nullcontext() if quiet else console.status(f"evaluating {name}"):
            result = run_evaluate(cfg, base_dir=base_dir, **where)
        summary = evaluate_summary(result, name)
    else:
        with search_bar(console, cfg.resolved(), enabled=not quiet) as bar:
            result = run_optimize(cfg, base_dir=base_dir, progress=bar, **where)
        summary = run_summary(result, name)
    write_json(out / "results.json", result)
    _show(summary, out / "results.json", quiet)
    if as_json:
        sys.stdout.write(json_text(result))


def _run_sweep(
    cfg: Config,
    base_dir: Path,
    out: Path,
    resume: bool,
    executor: str,
    address: str | None,
    limit: int | None,
    *,
    quiet: bool = False,
    as_json: bool = False,
    force: bool = False,
) -> None:
    runner = SweepRunner(
        cfg,
        out,
        resume=resume,
        executor=executor,
        address=address,
        limit=limit,
        base_dir=base_dir,
        force=force,
    )
    check_memory_all([load_config(p.config) for p in runner.points], base_dir)
    done_before = len(runner.finished())
    columns = (
        TextColumn("sweep"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=False, disable=quiet) as bar:
        task = bar.add_task("points", total=None)
        try:
            frame = runner.run(lambda done, total: bar.update(task, completed=done, total=total))
        except KeyboardInterrupt:
            console.print(
                f"interrupted: {runner.computed} new point(s) saved in {out}; continue with --resume"
            )
            raise typer.Exit(130) from None
    if not quiet:
        console.print(
            f"{len(frame)} of {len(runner.points)} points finished ({done_before} resumed, {runner.computed} computed)"
        )
    console.print(f"wrote {escape(str(out / 'results.parquet'))}", soft_wrap=True, highlight=False)
    if as_json:
        sys.stdout.write(json_text(frame.to_dict(orient="records")))


def _write_report(out: Path) -> None:
    path = make_report(out)
    console.print(f"report: {path}")


@app.command()
def position(  # long because typer declares each of its options in the signature
    position_: Annotated[
        Optional[list[str]],  # noqa: UP045
        typer.Option("--position", "-p", help="An open position: 'long 2 @ 60000' (repeatable; one symbol)."),
    ] = None,
    positions_file: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option("--positions", help="JSON or YAML list of positions {side, quantity, entry_price}."),
    ] = None,
    wallet_balance: Annotated[
        Optional[float],  # noqa: UP045
        typer.Option("--wallet-balance", help="Cross: the wallet; isolated: the position's margin."),
    ] = None,
    venue: Annotated[str, typer.Option("--venue", help="Venue rule set.")] = "binance_usdm",
    symbol: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--symbol", help="The venue's symbol (default: the venue's, e.g. BTCUSDT)."),
    ] = None,
    mode: Annotated[str, typer.Option("--mode", help="cross or isolated.")] = "cross",
    horizon: Annotated[str, typer.Option("--horizon", help="24h, 7d, ...: a whole number of bars.")] = "24h",
    data: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option("--data", help="Price file of the symbol (CSV/Parquet/JSON bars)."),
    ] = None,
    funding: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option("--funding", help="Funding-rate file (the last 30 days' mean is simulated)."),
    ] = None,
    fetch: Annotated[
        bool,
        typer.Option("--fetch", help="Read the latest candles and funding through ccxt instead of files."),
    ] = False,
    account: Annotated[
        bool,
        typer.Option(
            "--account",
            help="Read the open positions and wallet from the exchange (keys from LEVOPT_<VENUE>_API_KEY/SECRET).",
        ),
    ] = False,
    timeframe: Annotated[str, typer.Option("--timeframe", help="Bar length with --fetch.")] = "1h",
    window: Annotated[str, typer.Option("--window", help="Calibration window, e.g. 365d, 90d.")] = "365d",
    dist: Annotated[str, typer.Option("--dist", help="GARCH shocks: t or normal.")] = "t",
    gjr: Annotated[
        bool, typer.Option("--gjr", help="GJR asymmetry (bad news raises volatility more).")
    ] = False,
    bayes: Annotated[bool, typer.Option("--bayes", help="Full posterior (NUTS) instead of the MLE.")] = False,
    drift: Annotated[
        Optional[float],  # noqa: UP045
        typer.Option("--drift", help="Annualized drift to simulate (default: the model's estimate)."),
    ] = None,
    liquidation_cap: Annotated[
        float,
        typer.Option("--liquidation-cap", help="Largest P(liquidation) over the horizon for the suggestion."),
    ] = 0.01,
    level: Annotated[float, typer.Option("--level", help="VaR/CVaR level.")] = 0.99,
    paths: Annotated[int, typer.Option("--paths", help="Monte Carlo paths.")] = 20_000,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the paths.")] = 0,
    watch: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--watch", help="Re-evaluate on each new bar, checking every INTERVAL (30s, 5m)."),
    ] = None,
    quiet: QuietOpt = False,
    json_: JsonOpt = False,
) -> None:
    """The risk of an open position now: liquidation price, P(liquidated) within the horizon, VaR/CVaR,
    funding, volatility filtered to the last bar, and the growth-optimal leverage with the trade."""
    request = PositionRequest.from_cli(
        positions=position_ or [],
        positions_file=positions_file,
        wallet_balance=wallet_balance,
        venue=venue,
        symbol=symbol,
        mode=mode,
        horizon=horizon,
        data=data,
        funding=funding,
        fetch=fetch,
        account=account,
        timeframe=timeframe,
        window=window,
        dist=dist,
        gjr=gjr,
        bayes=bayes,
        drift=drift,
        liquidation_cap=liquidation_cap,
        level=level,
        paths=paths,
        seed=seed,
    )
    interval = parse_interval(watch, "--watch") if watch is not None else None
    result, state = request.answer()
    _show_position(result, quiet, json_)
    if interval is None:
        return
    try:
        for result, changes in request.watch(state, interval):
            if json_:
                sys.stdout.write(json_text(result))
                sys.stdout.flush()
            elif not quiet:
                console.print(changes)
    except KeyboardInterrupt:
        console.print("stopped watching", highlight=False)


def _show_position(result: dict, quiet: bool, json_: bool) -> None:
    if not quiet:
        console.print(position_summary(result))
    if json_:
        sys.stdout.write(json_text(result))
        sys.stdout.flush()


app.command("calibrate")(calibrate_command)
app.command("report")(report_command)
app.command("liq-price")(liq_price_command)
# ``levopt data tiers`` lives with the venues: levopt.data sits below levopt.venues and may not import it.
data_app.command("tiers")(tiers_command)
app.add_typer(data_app, name="data")


@app.callback()
def _root() -> None:
    """Leverage optimization for crypto derivatives by simulation and optimization."""


def _one_line(text: str) -> str:
    """``text`` on one line: line breaks become "; ", other unprintable characters (including the
    separators that ``str.splitlines`` breaks at, such as U+2028) their escapes."""
    text = re.sub(r"\s*[\r\n]+\s*", "; ", text.strip())
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text)


def _error(message: str, label: str = "error") -> None:
    console.print(f"[bold red]{label}:[/] {escape(_one_line(message))}", highlight=False, soft_wrap=True)


def _out_of_memory(exc: BaseException) -> bool:
    return isinstance(exc, MemoryError) or "RESOURCE_EXHAUSTED" in str(exc)[:2000]


USER_OS_ERRORS = {
    errno.ENOSPC,
    errno.EDQUOT,
    errno.EACCES,
    errno.EPERM,
    errno.EROFS,
    errno.ENOTDIR,
    errno.EISDIR,
    errno.ENAMETOOLONG,
}
"""File-system errors the user can fix (space, permissions, a path of the wrong kind): one line
and exit code 2, like bad input."""


def main() -> None:
    """Entry point: every error is one line on stderr.

    Exit codes: 0 success; 2 bad input (a :class:`~levopt.errors.LevoptError`, a usage error, a file
    that cannot be written, memory exhausted); 1 an internal error, whose traceback goes to
    ``levopt-error.log`` in the run directory (or a temporary file), named in the line; 130 when
    interrupted (Ctrl-C; a sweep first says how to resume).
    """
    reset_crash_log_dir()
    try:
        code = app(standalone_mode=False)
    except LevoptError as exc:
        _error(str(exc))
        sys.exit(2)
    except typer.TyperException as exc:  # click's usage errors: unknown option, bad value, missing argument
        ctx = getattr(exc, "ctx", None)
        if type(exc).__name__ == "NoArgsIsHelpError" and ctx is not None:
            typer.echo(ctx.get_help())
            sys.exit(2)
        where = f" (see: {ctx.command_path} --help)" if ctx is not None else ""
        _error(exc.format_message() + where)  # type: ignore[attr-defined]
        sys.exit(2)
    except typer.Abort:
        _error("aborted", "levopt")
        sys.exit(1)
    except BrokenPipeError:  # stdout closed early (levopt ... | head): not an error of levopt
        # Python's recipe: point stdout at devnull so that the flush at exit does not fail again.
        with contextlib.suppress(OSError, ValueError, AttributeError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
    except Exception as exc:  # the last resort: one line here, the traceback in a file
        log = write_crash_log(traceback.format_exc())
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        if _out_of_memory(exc):
            _error(
                f"out of memory ({type(exc).__name__}: {first}); lower paths, chunk_size, "
                f"optimizer.paths or optimizer.scenarios (details: {log})"
            )
            sys.exit(2)
        if isinstance(exc, OSError) and exc.errno in USER_OS_ERRORS:
            target = exc.filename if exc.filename is not None else "a file"
            _error(f"cannot access {target}: {exc.strerror or exc} (details: {log})")
            sys.exit(2)
        _error(
            f"{type(exc).__name__}: {first} -- this is a bug in levopt; the traceback is in {log}",
            "internal error",
        )
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
