"""Regenerate the README's quick-start answer and the pictures of docs/ from one fresh run.

Runs ``configs/quickstart.yaml`` into ``runs/quickstart`` as ``levopt run`` does (about two minutes
on two cores) and writes:

* ``docs/quickstart.json``: the figures the README quotes, with their standard errors, and the
  README's answer between its ``quickstart-answer`` markers (``tests/test_docs.py`` checks that the
  README says what the JSON holds, and that a fresh run agrees with it within the standard errors);
* ``docs/quickstart_leverage.png``, ``docs/quickstart_equity_fan.png`` and
  ``docs/quickstart_growth_vs_leverage.png``: the report's pictures shown in the README;
* ``docs/terminal_summary.svg``: the progress bar as it stood during the second search, then the
  summary ``levopt run`` prints (the CLI's own rich renderables, recorded);
* ``docs/report_scaling_chart.png``: the scaling chart as the report page shows it, screenshotted by
  headless Chromium (skipped when none is installed).

Usage: ``python docs/make_figures.py``.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from rich.console import Console

import levopt
from levopt.config import load_config
from levopt.io import write_json
from levopt.optimize import SearchProgress
from levopt.report import make_report
from levopt.terminal import run_summary, search_bar

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "quickstart.yaml"
SUMMARY = ROOT / "docs" / "quickstart.json"
README = ROOT / "README.md"
BEGIN, END = "<!-- quickstart-answer:begin -->", "<!-- quickstart-answer:end -->"
RUN_DIR = ROOT / "runs" / "quickstart"
WIDTH = 104
PICTURES = {
    "leverage.png": "quickstart_leverage.png",
    "equity_fan.png": "quickstart_equity_fan.png",
    "growth_vs_leverage.png": "quickstart_growth_vs_leverage.png",
}


def summarize(result: dict[str, Any]) -> dict[str, Any]:
    """The figures the README quotes: the schedule with its s.e., and the out-of-sample metrics."""
    oos = result["out_of_sample"]
    lev, se = result["policy"]["leverage"], result["policy_stderr"]["leverage"]
    days = result["config"]["horizon_days"]
    bounds = [round(i * days / len(lev)) for i in range(len(lev) + 1)]
    cvar = next(k for k in oos["metrics"] if k.startswith("cvar"))
    return {
        "segments": [
            {"days": [bounds[i] + 1, bounds[i + 1]], "leverage": lev[i], "stderr": se[i]}
            for i in range(len(lev))
        ],
        "log_growth": [oos["metrics"]["log_growth"], oos["stderr"]["log_growth"]],
        "cvar": [oos["metrics"][cvar], oos["stderr"][cvar]],
        "liquidation_probability": [
            oos["metrics"]["liquidation_probability"],
            oos["stderr"]["liquidation_probability"],
        ],
        "paths": result["config"]["paths"],
        "replicates": result["optimizer"].get("replicates", 1),
        "versions": result["versions"],
    }


def render(summary: dict[str, Any]) -> str:
    """The README's answer paragraph, from :func:`summarize`'s figures."""
    seg = summary["segments"]
    first, last = seg[0], seg[-1]
    lo = min(seg, key=lambda s: s["leverage"])
    hi = max(seg, key=lambda s: s["leverage"])
    g, g_se = summary["log_growth"]
    c, c_se = summary["cvar"]
    p, p_se = summary["liquidation_probability"]
    liquidation = (
        "no path comes near liquidation"
        if p == 0
        else f"the liquidation probability {100 * p:.2g} ± {100 * p_se:.1g}%"
    )
    return (
        f"The answer for these inputs: {first['leverage']:.2f}x (± {first['stderr']:.2f}) in days "
        f"{first['days'][0]}–{first['days'][1]}, {last['leverage']:.2f}x (± {last['stderr']:.2f}) in days "
        f"{last['days'][0]}–{last['days'][1]}, between {lo['leverage']:.2f}x and {hi['leverage']:.2f}x over "
        f"the {len(seg)} segments; out of sample ({summary['paths']:,} fresh paths) the log-growth is "
        f"{100 * g:.1f} ± {100 * g_se:.1f} %/yr, the CVaR 95% of the 90-day log-loss "
        f"{100 * c:.0f} ± {100 * c_se:.0f}%, and {liquidation}."
    )


def rewrite_readme(text: str, paragraph: str) -> str:
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{paragraph}\n{END}{tail}"


def run_and_record() -> tuple[Console, dict[str, Any]]:
    """Run the quick start into ``runs/quickstart`` with a live progress bar, keeping one frame of it;
    returns a recording console holding that frame and the summary, and the result."""
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
    return shot, result


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


def main() -> int:
    shot, result = run_and_record()
    shot.save_svg(str(ROOT / "docs" / "terminal_summary.svg"), title="levopt run configs/quickstart.yaml")
    for src, dst in PICTURES.items():
        shutil.copyfile(RUN_DIR / src, ROOT / "docs" / dst)
    screenshot_chart(RUN_DIR / "report.html", ROOT / "docs" / "report_scaling_chart.png")
    summary = summarize(result)
    SUMMARY.write_text(json.dumps(summary, indent=2) + "\n")
    README.write_text(rewrite_readme(README.read_text(), render(summary)))
    print(render(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
