"""Pictures of what a quick-start user sees: the terminal and the report's scaling chart.

Runs ``configs/quickstart.yaml`` into ``runs/quickstart`` (about two minutes on two cores) and writes

* ``docs/terminal_summary.svg``: the progress bar as it stood during the second search, then the
  summary ``levopt run`` prints (the same rich renderables as the CLI, recorded);
* ``docs/quickstart_growth_vs_leverage.png``: the report's chart of growth and risk against the
  leverage scale, with its standard-error bands;
* ``docs/report_scaling_chart.png``: that chart as the report page shows it, screenshotted by
  headless Chromium (skipped when none is installed).

Usage: ``python docs/make_screenshots.py``.
"""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from rich.console import Console

import levopt
from levopt.config import load_config
from levopt.io import write_json
from levopt.optimize import SearchProgress
from levopt.report import make_report
from levopt.terminal import run_summary, search_bar

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "quickstart.yaml"
RUN_DIR = ROOT / "runs" / "quickstart"
WIDTH = 104


def run_and_record() -> Console:
    """Run the quick start with a live progress bar, keeping one frame of it; returns a recording
    console holding that frame and the summary."""
    shot = Console(record=True, width=WIDTH, force_terminal=True, file=io.StringIO())
    shot.print(f"[bold]$ levopt run configs/quickstart.yaml --out {RUN_DIR.relative_to(ROOT)}[/]")
    live = Console(width=WIDTH, force_terminal=True, file=io.StringIO())
    config = load_config(CONFIG).resolved()
    with search_bar(live, config) as bar:

        def report(p: SearchProgress) -> None:
            bar(p)
            if p.search == 2 and p.step >= 40 and not getattr(report, "taken", False):
                report.taken = True  # type: ignore[attr-defined]
                shot.print(bar.progress.get_renderable())

        result = levopt.run(CONFIG, progress=report)
    write_json(RUN_DIR / "results.json", result)
    shot.print(run_summary(result, CONFIG.name))
    shot.print(f"wrote {RUN_DIR.relative_to(ROOT) / 'results.json'}")
    page = make_report(RUN_DIR)
    shot.print(f"report: {page.relative_to(ROOT)}")
    return shot


def screenshot_chart(page: Path, out: Path) -> bool:
    """The scaling chart's figure (image and caption) cut out of the report page, screenshotted."""
    browser = next(
        (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None
    )
    if browser is None:
        print("no headless browser: skipped the report screenshot", file=sys.stderr)
        return False
    html = page.read_text()
    figure = re.search(r"<figure><img[^>]*alt=\"Growth and risk[^\"]*\".*?</figure>", html, re.S)
    style = re.search(r"<style>.*?</style>", html, re.S)
    if figure is None or style is None:
        raise SystemExit(f"{page} has no scaling chart")
    with tempfile.TemporaryDirectory() as tmp:
        only = Path(tmp) / "chart.html"
        only.write_text(
            f"<!DOCTYPE html><html><head><meta charset=utf-8>{style.group(0)}</head>"
            f"<body><main><section>{figure.group(0)}</section></main></body></html>"
        )
        cmd = [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            f"--user-data-dir={tmp}/profile",
            "--window-size=1100,960",
            f"--screenshot={out}",
            only.as_uri(),
        ]
        subprocess.run(cmd, capture_output=True, check=True, timeout=120)
    return True


def main() -> None:
    shot = run_and_record()
    shot.save_svg(str(ROOT / "docs" / "terminal_summary.svg"), title="levopt run configs/quickstart.yaml")
    shutil.copyfile(RUN_DIR / "growth_vs_leverage.png", ROOT / "docs" / "quickstart_growth_vs_leverage.png")
    screenshot_chart(RUN_DIR / "report.html", ROOT / "docs" / "report_scaling_chart.png")


if __name__ == "__main__":
    main()
