"""The documentation: the site builds strictly, and every public name has a docstring."""

import importlib
import inspect
import os
import subprocess
import sys
from pathlib import Path

import pytest

import analysis

ROOT = Path(__file__).resolve().parent.parent
MODULES = ["analysis"] + [
    f"analysis.{name}" for name in analysis.__all__ if inspect.ismodule(getattr(analysis, name))
]


@pytest.mark.parametrize("module_name", MODULES)
def test_every_public_name_has_a_docstring(module_name):
    module = importlib.import_module(module_name)
    assert (module.__doc__ or "").strip(), f"{module_name} has no module docstring"
    missing = []
    for name in getattr(module, "__all__", []):
        obj = getattr(module, name)
        if (inspect.isfunction(obj) or inspect.isclass(obj)) and not (obj.__doc__ or "").strip():
            missing.append(name)
    assert not missing, f"{module_name}: no docstring on {missing}"


def test_the_site_builds_strictly(tmp_path):
    env = {**os.environ, "JAX_ENABLE_X64": "1", "NO_MKDOCS_2_WARNING": "1"}
    out = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert (tmp_path / "index.html").exists()
    assert (tmp_path / "studies" / "convergence" / "index.html").exists()
