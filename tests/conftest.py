"""Test configuration: every test runs in float64, as every measurement in this toolkit does,
and draws with matplotlib's Agg backend (files, no display; the library never picks one)."""

import os

os.environ.setdefault("MPLBACKEND", "Agg")

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)


import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    """Figures drawn by a test are closed after it, so studies' plots do not pile up."""
    yield
    import matplotlib.pyplot as plt

    plt.close("all")


@pytest.fixture
def fresh_compile_cache(monkeypatch):
    """An empty cache of compiled sweep groups for this test (the process-wide one is restored
    after), so a test counting compilations does not depend on which tests ran before it in the
    same process (the suite runs in two worker processes, in any order)."""
    import analysis._sweep

    monkeypatch.setattr(analysis._sweep, "_COMPILED", {})

