"""The stability study's QUICK config end to end: tables, their mathematics, and the figures."""

import numpy as np
import pytest

from studies import stability as study

STUDY = "stability"  # the QUICK run every test here gets as `quick_study`
pytestmark = pytest.mark.slow  # end to end: the study's whole QUICK config


def test_tables_are_present_and_parquet_safe(quick_study):
    assert set(quick_study.tables) == {
        "regions",
        "intervals",
        "orbits",
        "branches",
        "spurious",
        "stiff",
        "stiff_check",
        "lifted",
    }
    for name, df in quick_study.tables.items():
        assert len(df), name
        assert not any(df[c].dtype.kind == "c" for c in df.columns), name  # parquet has no complex
    assert set(study.PAPER_TABLES) <= set(quick_study.tables)


def test_intervals_and_the_effective_region_of_the_modifying_integrator(quick_study):
    iv = quick_study.tables["intervals"].set_index("solver")
    assert (
        abs(iv.loc["Euler", "real_interval"] - 2) < 1e-6 and iv.loc["Euler", "imag_interval"] == 0
    )
    # Euler on λy + (h/2)λ²y has Heun's stability function 1 + z + z²/2.
    np.testing.assert_allclose(
        iv.loc["Euler on modified_euler(λy)", ["real_interval", "imag_interval"]].to_numpy(float),
        iv.loc["Heun", ["real_interval", "imag_interval"]].to_numpy(float),
        atol=1e-6,
    )
    # Euler on λy + h·μ·y at h = 1: the disk |1 - μ + z| ≤ 1... centred at -1 - μ = -0.5.
    shifted = iv.loc[[s for s in iv.index if "h·(" in s][0]]
    np.testing.assert_allclose(
        shifted[["real_interval", "imag_interval"]].to_numpy(float), [1.5, 0.75**0.5], atol=1e-6
    )


def test_intervals_table_has_r_at_infinity_and_l_stability(quick_study):
    iv = quick_study.tables["intervals"].set_index("solver")
    # R(∞) by hand: ImplicitEuler 1/(1 - z) → 0; Kvaerno methods are stiffly accurate
    # (b = last row of A) so R(∞) = 0 up to their float coefficients; explicit: unbounded.
    for name in study.QUICK.interval_solvers:
        assert iv.loc[name, "r_inf"] < 1e-9 and iv.loc[name, "l_stable"]
        assert iv.loc[name, "real_status"] == "stable" and np.isinf(iv.loc[name, "real_interval"])
    assert np.isinf(iv.loc["Euler", "r_inf"]) and not iv.loc["Euler", "l_stable"]
    assert iv.loc["Euler", "real_status"] == "unstable"


def test_spurious_table_matches_the_closed_forms(quick_study):
    sp = quick_study.tables["spurious"]
    for h in study.QUICK.spurious_h:
        heun = np.sort(sp[(sp.solver == "Heun") & (sp.h == h)].y)
        np.testing.assert_allclose(
            heun, ((h + 2) + np.array([-1, 1]) * np.sqrt(h * h - 4)) / (2 * h)
        )
        midpoint = np.sort(sp[(sp.solver == "Midpoint") & (sp.h == h)].y)
        np.testing.assert_allclose(midpoint, [2 / h, 1 + 2 / h])
    assert not (sp.solver == "Euler").any()
    assert (sp.kind == "spurious").all()  # the h-free logistic field: no model equilibria
    # The branches keep the ODE's equilibria 0 and 1 at every h, never flagged spurious.
    br = quick_study.tables["branches"]
    true = br[~br.spurious]
    assert set(np.round(true.y, 12)) == {0.0, 1.0}
    assert (true.groupby(["solver", "h"]).size() == 2).all()


def test_stiff_steps_and_orbits_follow_the_theory(quick_study):
    stiff = quick_study.tables["stiff"]
    iv = quick_study.tables["intervals"].set_index("solver")
    euler = stiff[stiff.solver == "Euler"]
    np.testing.assert_allclose(euler.h_times_k, 2.0, rtol=2e-6)
    tsit5 = stiff[stiff.solver == "Tsit5"]
    np.testing.assert_allclose(tsit5.h_times_k, iv.loc["Tsit5", "real_interval"], rtol=2e-6)
    # A-stable: stable at every h probed (inf), unless the implicit step's own Newton solve
    # fails first, which is reported as unknown with a finite end, never as inf.
    implicit = stiff[stiff.implicit]
    assert (np.isinf(implicit.max_stable_step) == (implicit.status == "stable")).all()
    assert implicit.status.isin(["stable", "unknown"]).all()
    explicit = stiff[~stiff.implicit]
    assert (explicit.status == "unstable").all() and explicit.reason.str.contains(
        "multiplier"
    ).all()
    # Real diffrax solves: bounded just below the largest stable step, exploding just above.
    check = quick_study.tables["stiff_check"]
    below = check[check.h_over_max_stable < 1]
    assert (below.status == "ok").all() and (below.error < 1e-2).all()
    above = check[check.h_over_max_stable > 1]
    assert (~np.isfinite(above.error) | (above.error > 1e3)).all()
    orbits = quick_study.tables["orbits"]
    # Φ'(1) = 1 - h: y = 1 attracts, within |1 - h|^n_transient ≤ 0.7^300 where |1 - h| ≤ 0.7.
    calm = orbits[(orbits.solver == "Euler") & (abs(orbits.h - 1) <= 0.7)]
    np.testing.assert_allclose(calm.y, 1.0, rtol=1e-12)
    assert orbits[(orbits.solver == "Euler") & (orbits.h > 3.05)].escaped.all()


def test_lifted_map_under_euler_is_the_logistic_map(quick_study):
    lifted = quick_study.tables["lifted"]
    euler = lifted[(lifted.solver == "Euler") & (lifted.mu < 2.8)]  # |Φ'| = |2 - μ| ≤ 0.8
    np.testing.assert_allclose(euler.y, 1 - 1 / euler.mu, rtol=1e-9)  # the map's fixed point
    heun = lifted[(lifted.solver == "Heun") & (lifted.mu > 3.5) & (lifted.mu < 3.7)]
    assert not np.allclose(heun.y, 1 - 1 / heun.mu)  # Heun iterates another map


def test_plot_returns_every_captioned_figure(quick_study):
    figs = quick_study.figures
    assert set(figs) == set(study.CAPTIONS)
    for fig in figs.values():
        assert fig.axes
