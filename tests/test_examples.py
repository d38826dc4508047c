"""Every example runs end to end in quick mode, as a user would run it."""

import subprocess
import sys
from pathlib import Path

import pytest
from helpers import checkout_env

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))
pytestmark = pytest.mark.slow  # end to end: a fresh process per example, importing jax


@pytest.mark.parametrize("script", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_runs_in_quick_mode(script, tmp_path):
    args = [sys.executable, str(script), "--quick"]
    if script.stem == "paper_figure":
        args += ["--out", str(tmp_path)]
    env = checkout_env(JAX_ENABLE_X64="1", MPLBACKEND="Agg")
    out = subprocess.run(args, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    if script.stem == "paper_figure":
        assert (tmp_path / "figures" / "demo" / "orders_for_paper.pdf").stat().st_size > 1000
    if script.stem == "byom":
        assert (tmp_path / "my_model_convergence.png").stat().st_size > 1000
    if script.stem == "diagnose_my_model":
        assert (tmp_path / "my_model_diagnosis" / "report.html").stat().st_size > 10_000
        assert "h can be frozen as a parameter" in out.stdout  # y' damping 0.3 + 2h: a parameter


def test_every_example_is_tested():
    assert {p.stem for p in EXAMPLES} >= {
        "byom",
        "paper_figure",
        "explore_neural_field",
        "diagnose_my_model",
    }
