"""The documentation: the site builds strictly, every public name has a docstring with an
example, and every example in the library's docstrings runs and prints what it says."""

import doctest
import importlib
import inspect
import os
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import checkout_env

import analysis

ROOT = Path(__file__).resolve().parent.parent
MODULES = ["analysis"] + sorted(
    info.name for info in pkgutil.walk_packages(analysis.__path__, "analysis.")
)
PUBLIC_MODULES = [m for m in MODULES if hasattr(importlib.import_module(m), "__all__")]


def _doctests():
    """Every docstring example in the package, as (id, DocTest); each runs in its module's
    namespace, so an example may use what its module imports (jnp, diffrax, ...)."""
    finder = doctest.DocTestFinder(exclude_empty=True)
    found = {}
    for module_name in MODULES:
        for test in finder.find(importlib.import_module(module_name)):
            if test.examples:
                found[test.name] = test
    return sorted(found.items())


DOCTESTS = _doctests()


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_every_public_name_has_a_docstring_with_an_example(module_name):
    module = importlib.import_module(module_name)
    assert (module.__doc__ or "").strip(), f"{module_name} has no module docstring"
    no_docstring, no_example = [], []
    for name in module.__all__:
        obj = getattr(module, name)
        if not (inspect.isfunction(obj) or inspect.isclass(obj)):
            continue
        doc = obj.__doc__ or ""
        if not doc.strip():
            no_docstring.append(name)
        elif "Examples:" not in doc or ">>>" not in doc:
            no_example.append(name)
    assert not no_docstring, f"{module_name}: no docstring on {no_docstring}"
    assert not no_example, f"{module_name}: no 'Examples:' section with >>> lines on {no_example}"


@pytest.mark.parametrize("name, test", DOCTESTS, ids=[name for name, _ in DOCTESTS])
def test_docstring_example_runs(name, test, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # examples that write files write them here
    # an example that registers a system must not leave it in the catalog for later tests
    monkeypatch.setattr(analysis.systems, "_CATALOG", dict(analysis.systems._CATALOG))
    runner = doctest.DocTestRunner(
        optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False
    )
    report = []
    test.globs = dict(test.globs)
    result = runner.run(test, out=report.append)
    assert result.failed == 0, "".join(report)


FENCE = re.compile(r"(<!-- not run[^>]*-->\s*\n)?```python\n(.*?)```", re.S)
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def _runnable_code(page: Path) -> str:
    """The page's python blocks, in order, as one script; a block preceded by an HTML comment
    `<!-- not run ... -->` is left out, and one that includes a file (`--8<--`) is tested where
    that file is (examples/ are run by test_examples)."""
    blocks = FENCE.findall(page.read_text())
    return "\n\n".join(code for skip, code in blocks if not skip and "--8<--" not in code)


PAGES_WITH_CODE = [page for page in PAGES if _runnable_code(page)]


@pytest.mark.slow  # a fresh process per page; long examples live on the pages (issue #18)
@pytest.mark.parametrize(
    "page", PAGES_WITH_CODE, ids=[p.relative_to(ROOT).as_posix() for p in PAGES_WITH_CODE]
)
def test_the_code_on_each_page_runs(page, tmp_path):
    env = checkout_env(JAX_ENABLE_X64="1", MPLBACKEND="Agg")
    out = subprocess.run(
        [sys.executable, "-c", _runnable_code(page)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]


@pytest.mark.slow  # mkdocs + mkdocstrings over the whole package
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
