"""``levopt report DIR``: pictures and report.html from a run directory's saved results.

Module-level imports are kept light (typer only); matplotlib and pandas load when the command runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def report_command(
    run_dir: Annotated[
        Path,
        typer.Argument(help="Run directory of levopt run, sweep or calibrate (--out).", show_default=False),
    ],
) -> None:
    """Draw the plots and write a self-contained report.html into RUN_DIR, from saved results only."""
    from levopt.report.html import write_report

    path, pictures = write_report(run_dir)
    names = ", ".join(p.name for p in pictures)
    typer.echo(f"wrote {path}" + (f" with {len(pictures)} pictures: {names}" if pictures else ""), err=True)
