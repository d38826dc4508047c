"""Test configuration: every test runs in float64, as every measurement in this toolkit does,
draws with matplotlib's Agg backend (files, no display; the library never picks one), and
compiles through jax's persistent compilation cache (`analysis.compile_cache`: the user's cache
folder, or ``STEPDEP_COMPILE_CACHE``; ``STEPDEP_COMPILE_CACHE=off`` compiles everything afresh),
so the two test processes and the next run of the suite load programs compiled before instead
of running XLA again."""

import os

os.environ.setdefault("MPLBACKEND", "Agg")

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

from analysis import compile_cache  # noqa: E402

compile_cache.enable()  # before the first compilation: jax reads the setting once

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    """Figures drawn by a test are closed after it, so studies' plots do not pile up."""
    yield
    import matplotlib.pyplot as plt

    plt.close("all")


@pytest.fixture
def fresh_compile_cache():
    """Empty jax's compilation caches before this test (`jax.clear_caches`), so a test counting
    compilations does not depend on which tests ran before it in the same process (the suite
    runs in two worker processes, in any order)."""
    jax.clear_caches()


class QuickStudy:
    """A study's QUICK run: `tables` (what `run(QUICK)` returned, also stored with
    `run_store.write_tables` in `folder`, so every table is known to store), `figures` (what
    `plot(tables)` draws, made on first use) and the study `module`."""

    def __init__(self, name, folder):
        import importlib

        from analysis import run_store

        self.name = name
        self.module = importlib.import_module(f"studies.{name}")
        self.tables = self.module.run(self.module.QUICK)
        self.folder = folder
        prov = run_store.provenance(name, self.module.QUICK, sources=[self.module.__file__])
        run_store.write_tables(folder, self.tables, prov)
        self._figures = None

    @property
    def figures(self):
        if self._figures is None:
            self._figures = self.module.plot(self.tables)
        return self._figures


@pytest.fixture(scope="module")
def quick_study(request, tmp_path_factory):
    """The QUICK run of the study named by the test module's `STUDY` (or by an indirect
    parametrization, `@pytest.mark.parametrize("quick_study", ["fsal"], indirect=True)`),
    computed once per test module."""
    name = getattr(request, "param", None) or request.module.STUDY
    return QuickStudy(name, tmp_path_factory.mktemp(f"quick-{name}"))
