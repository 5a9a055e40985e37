"""The README's snippets run as written: the Extending section, in order, in one namespace."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest
from conftest import Z

import levopt

README = Path(__file__).resolve().parents[1] / "README.md"


def extending_snippets() -> list[str]:
    text = README.read_text()
    section = text[text.index("## Extending") :]
    section = section[: section.index("\n## ", 3)]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def test_extending_snippets_run_as_written():
    snippets = extending_snippets()
    assert len(snippets) == 4
    namespace: dict = {"__name__": "readme"}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        for code in snippets:
            exec(compile(code, str(README), "exec", dont_inherit=True), namespace)
    assert "wealth_shortfall" in levopt.METRICS and "uniform_shocks" in levopt.MODELS
    assert "drawdown_brake" in levopt.POLICIES
    assert len(out.getvalue().strip().splitlines()) == 2
    braked, found = namespace["braked"], namespace["found"]
    # The brake caps the drawdown near max_drawdown (25%) plus one day's move.
    assert 0.0 < braked["metrics"]["max_drawdown"] < 0.3
    # The new metric decides the cvxpy optimum: its cap binds in sample and holds out of sample
    # within Monte Carlo error.
    assert 0.0 < found["policy"]["leverage"] < 4.0
    (constraint,) = found["constraints"]
    assert constraint["in_sample"] == pytest.approx(0.005, rel=1e-4)
    assert abs(constraint["value"] - 0.005) < Z * constraint["stderr"]
