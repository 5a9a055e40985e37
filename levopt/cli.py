"""The ``levopt`` command line: evaluate | run | calibrate | report | data."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from levopt.errors import LevoptError

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


@app.command()
def evaluate(
    config: ConfigArg,
    out: Annotated[Optional[Path], typer.Option(help="Write the results JSON here.")] = None,  # noqa: UP045
    set_: SetOpt = None,
) -> None:
    """Simulate a config's leverage policy and report its metrics with standard errors."""
    from levopt.config import load_config
    from levopt.io import write_json
    from levopt.runner import evaluate as run_evaluate

    result = run_evaluate(load_config(config, set_ or []))
    if out is not None:
        write_json(out, result)
    console.print(metrics_table(f"{config.name}: {result['config']['paths']} paths", result["metrics"], result["stderr"]))
    if out is None:
        sys.stdout.write(json.dumps({"metrics": result["metrics"], "stderr": result["stderr"]}, indent=2) + "\n")


@app.command()
def run(
    config: ConfigArg,
    out: Annotated[Path, typer.Option(help="Run directory (results.json, plots, report).")] = Path("runs/latest"),
    set_: SetOpt = None,
) -> None:
    """Optimize the config's policy under its objective and constraints, then test it out of sample."""
    from levopt.config import load_config
    from levopt.io import write_json
    from levopt.runner import run as run_optimize

    cfg = load_config(config, set_ or [])
    with console.status(f"optimizing {config.name} ({(cfg.optimizer or {}).get('method', 'optax')})"):
        result = run_optimize(cfg)
    write_json(out / "results.json", result)
    console.print(f"policy: {result['policy']}")
    oos = result["out_of_sample"]
    console.print(metrics_table(f"out of sample: {cfg.paths} fresh paths", oos["metrics"], oos["stderr"]))
    for c in result["constraints"]:
        mark = "[green]ok[/]" if c["satisfied"] else "[red]violated[/]"
        console.print(f"constraint {c['metric']} {c['sense']} {c['limit']:g}: {c['value']:.6g} {mark}")
    opt = result["optimizer"]
    console.print(f"{opt['method']}: {opt['iterations']} iterations, converged={opt['converged']}, {opt['wall_s']:.1f} s")
    console.print(f"wrote {out / 'results.json'}")


@app.callback()
def _root() -> None:
    """Leverage optimization for crypto derivatives by simulation and optimization."""


def main() -> None:
    """Entry point: user errors become one line on stderr and exit code 2 (usage errors too)."""
    try:
        app()
    except LevoptError as exc:
        console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
