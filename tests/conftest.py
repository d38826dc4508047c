"""Test configuration: every test runs in float64, as every measurement in this toolkit does."""

import jax

jax.config.update("jax_enable_x64", True)


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
