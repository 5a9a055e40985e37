"""The ``levopt`` command line: evaluate | run | calibrate | report | data | liq-price."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import numpy as np
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
from rich.table import Table

from levopt.calibrate.cli import calibrate_command
from levopt.config import Config, config_dir, load_config
from levopt.data.cli import data_app
from levopt.errors import ConfigError, LevoptError
from levopt.io import write_json
from levopt.report import make_report
from levopt.report.cli import report_command
from levopt.results import parameter_rows
from levopt.runner import evaluate as run_evaluate
from levopt.runner import run as run_optimize
from levopt.sweep import SweepRunner
from levopt.venues.cli import liq_price_command

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


def metrics_table(title: str, metrics: dict[str, float], stderr: dict[str, float]) -> Table:
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("± std. error", justify="right")
    for name, value in metrics.items():
        se = stderr.get(name)
        table.add_row(name, f"{value:.6g}", "" if se is None or se != se else f"{se:.2g}")
    return table


def policy_table(result: dict) -> Table:
    """The optimized parameters with their standard errors over the replicate searches."""
    table = Table(title=f"policy ({result['optimizer'].get('replicates', 1)} independent searches)")
    table.add_column("parameter")
    table.add_column("value", justify="right")
    table.add_column("± s.e.", justify="right")
    loose = set(result.get("not_identified") or [])
    for label, value, se in parameter_rows(result["policy"], result.get("policy_stderr") or {}):
        flag = " [yellow](not identified)[/]" if label in loose else ""
        table.add_row(label + flag, f"{value:.4g}", "" if not np.isfinite(se) else f"{se:.2g}")
    return table


@app.command()
def evaluate(
    config: ConfigArg,
    out: Annotated[Optional[Path], typer.Option(help="Write the results JSON here.")] = None,  # noqa: UP045
    set_: SetOpt = None,
) -> None:
    """Simulate a config's leverage policy and report its metrics with standard errors."""
    cfg = load_config(config, set_ or [])
    if cfg.sweep is not None:
        raise ConfigError(
            "sweep", f"levopt evaluate runs one config; run the sweep with: levopt run {config} --out DIR"
        )
    result = run_evaluate(cfg, base_dir=config_dir(config))
    if out is not None:
        write_json(out, result)
    console.print(
        metrics_table(
            f"{config.name}: {result['config']['paths']} paths", result["metrics"], result["stderr"]
        )
    )
    if out is None:
        sys.stdout.write(
            json.dumps({"metrics": result["metrics"], "stderr": result["stderr"]}, indent=2) + "\n"
        )


@app.command()
def run(
    config: ConfigArg,
    out: Annotated[Path, typer.Option(help="Run directory (results.json, plots, report).")] = Path(
        "runs/latest"
    ),
    set_: SetOpt = None,
    resume: Annotated[bool, typer.Option(help="Sweeps: skip the points already finished in --out.")] = False,
    executor: Annotated[
        str, typer.Option(help="Sweeps: local (in-process, all JAX devices) or ray.")
    ] = "local",
    address: Annotated[
        str | None, typer.Option(help="Ray cluster address (host:port) for --executor ray.")
    ] = None,  # noqa: UP045
    limit: Annotated[int | None, typer.Option(help="Sweeps: compute at most this many new points.")] = None,  # noqa: UP045
    report: Annotated[bool, typer.Option(help="Write plots and report.html into --out.")] = True,
) -> None:
    """Optimize the config's policy (or run its sweep), test it out of sample, write results and a report."""
    cfg = load_config(config, set_ or [])
    if cfg.sweep is not None:
        _run_sweep(cfg, config_dir(config), out, resume, executor, address, limit)
    else:
        if executor != "local" or address is not None or resume or limit is not None:
            raise ConfigError(
                "--executor",
                "--executor, --address, --resume and --limit apply to configs with a sweep block",
            )
        _run_single(cfg, config_dir(config), config.name, out)
    if report:
        _write_report(out)


def _run_single(cfg: Config, base_dir: Path, name: str, out: Path) -> None:
    if cfg.objective is None:
        with console.status(f"evaluating {name}"):
            result = run_evaluate(cfg, base_dir=base_dir)
        write_json(out / "results.json", result)
        console.print(metrics_table(f"{name}: {cfg.paths} paths", result["metrics"], result["stderr"]))
        return
    with console.status(f"optimizing {name} ({(cfg.optimizer or {}).get('method', 'optax')})"):
        result = run_optimize(cfg, base_dir=base_dir)
    write_json(out / "results.json", result)
    console.print(policy_table(result))
    oos = result["out_of_sample"]
    console.print(metrics_table(f"out of sample: {cfg.paths} fresh paths", oos["metrics"], oos["stderr"]))
    for c in result["constraints"]:
        mark = "[green]ok[/]" if c["satisfied"] else "[red]violated[/]"
        console.print(f"constraint {c['metric']} {c['sense']} {c['limit']:g}: {c['value']:.6g} {mark}")
    opt = result["optimizer"]
    console.print(
        f"{opt['method']}: {opt['iterations']} iterations, converged={opt['converged']}, {opt['wall_s']:.1f} s"
    )
    console.print(f"wrote {out / 'results.json'}")


def _run_sweep(
    cfg: Config,
    base_dir: Path,
    out: Path,
    resume: bool,
    executor: str,
    address: str | None,
    limit: int | None,
) -> None:
    runner = SweepRunner(
        cfg, out, resume=resume, executor=executor, address=address, limit=limit, base_dir=base_dir
    )
    done_before = len(runner.finished())
    columns = (
        TextColumn("sweep"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task("points", total=None)
        try:
            frame = runner.run(lambda done, total: bar.update(task, completed=done, total=total))
        except KeyboardInterrupt:
            console.print(
                f"interrupted: {runner.computed} new point(s) saved in {out}; continue with --resume"
            )
            raise typer.Exit(130) from None
    console.print(
        f"{len(frame)} of {len(runner.points)} points finished ({done_before} resumed, {runner.computed} computed); "
        f"wrote {out / 'results.parquet'}"
    )


def _write_report(out: Path) -> None:
    path = make_report(out)
    console.print(f"report: {path}")


app.command("calibrate")(calibrate_command)
app.command("report")(report_command)
app.command("liq-price")(liq_price_command)
app.add_typer(data_app, name="data")


@app.callback()
def _root() -> None:
    """Leverage optimization for crypto derivatives by simulation and optimization."""


def main() -> None:
    """Entry point: user errors become one line on stderr and exit code 2 (usage errors too)."""
    try:
        app()
    except LevoptError as exc:
        console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
