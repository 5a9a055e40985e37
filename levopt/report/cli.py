"""``levopt report DIR``: pictures and report.html from a run directory's saved results."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from levopt.errors import ConfigError
from levopt.outputs import check_target
from levopt.report.html import write_report


def report_command(
    run_dir: Annotated[
        Path,
        typer.Argument(help="Run directory of levopt run, sweep or calibrate (--out).", show_default=False),
    ],
) -> None:
    """Draw the plots and write a self-contained report.html into RUN_DIR, from saved results only."""
    if not run_dir.is_dir():
        what = "is a file" if run_dir.exists() else "does not exist"
        raise ConfigError(
            "RUN_DIR", f"{run_dir} {what}; allowed: the --out directory of levopt run or calibrate"
        )
    check_target(run_dir, "RUN_DIR", "dir")
    path, pictures = write_report(run_dir)
    names = ", ".join(p.name for p in pictures)
    typer.echo(f"wrote {path}" + (f" with {len(pictures)} pictures: {names}" if pictures else ""), err=True)
