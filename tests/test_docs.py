"""The README's quick-start answer is what the code produces (docs/make_figures.py writes it).

Two checks: the README's paragraph is the rendering of ``docs/quickstart.json`` (so nobody edits one
without the other), and a fresh run of ``configs/quickstart.yaml`` agrees with the saved figures.
On the machine that wrote them the numbers are bit-identical; elsewhere floating-point reductions
may compile in another order, so each figure is compared within 4 combined standard errors
(sqrt(se_saved² + se_fresh²)): over the 15 figures compared, a false alarm has probability ~1e-3.
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SIGMAS = 4.0


def _make_figures():
    spec = importlib.util.spec_from_file_location("make_figures", ROOT / "docs" / "make_figures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_quotes_the_saved_figures():
    mf = _make_figures()
    summary = json.loads(mf.SUMMARY.read_text())
    text = mf.README.read_text()
    block = text.split(mf.BEGIN, 1)[1].split(mf.END, 1)[0]
    assert block.strip() == mf.render(summary)
    for picture in mf.PICTURES.values():
        assert (ROOT / "docs" / picture).stat().st_size > 10_000


def _agree(saved: list[float], fresh: list[float]) -> bool:
    (a, se_a), (b, se_b) = saved, fresh
    return abs(a - b) <= SIGMAS * math.sqrt(se_a**2 + se_b**2) or a == b


@pytest.mark.slow  # a full quick-start run (~1 min); docs/make_figures.py writes what it checks
def test_fresh_quick_start_agrees_with_the_quoted_figures():
    import levopt

    mf = _make_figures()
    saved = json.loads(mf.SUMMARY.read_text())
    fresh = mf.summarize(levopt.run(mf.CONFIG, profiles=False))
    assert len(fresh["segments"]) == len(saved["segments"])
    for old, new in zip(saved["segments"], fresh["segments"], strict=True):
        assert old["days"] == new["days"]
        assert _agree([old["leverage"], old["stderr"]], [new["leverage"], new["stderr"]]), (old, new)
    for name in ("log_growth", "cvar", "liquidation_probability"):
        assert _agree(saved[name], fresh[name]), (name, saved[name], fresh[name])


if __name__ == "__main__":  # pragma: no cover
    pytest.main([__file__])
