"""Order fitting, error norms and convergence targets, checked against closed forms."""

import decimal
from fractions import Fraction

import diffrax
import numpy as np
import pytest
import scipy.stats

import analysis
import analysis._sweep
from analysis import InvalidArgument, convergence, systems

# Step counts that are not a halving sequence (and multiples of 10, so saved times are step ends).
STEPS = (10, 20, 30, 40, 60, 80, 120, 160)


# ------------------------------------------------------------------------------ fit_order


@pytest.mark.parametrize("p", [1.0, 2.0, 3.0, 4.5, 5.0, 8.0])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fit_order_recovers_p_from_noisy_power_law_with_a_roundoff_floor(p, seed):
    rng = np.random.default_rng(seed)
    h = np.geomspace(2e-3, 0.5, 16) * np.exp(rng.uniform(-0.1, 0.1, 16))  # uneven ratios
    err = 2.0 * h**p * (1 + 0.01 * rng.standard_normal(16))  # 1 % noise
    err += 1e-13 * np.abs(1 + rng.standard_normal(16))  # round-off floor
    fit = convergence.fit_order(h, err)
    assert fit.status == "ok"
    assert abs(fit.order - p) < 0.05
    assert fit.ci_low < fit.order < fit.ci_high
    # Where C·h^p is below the floor, the points are excluded with a reason.
    drowned = h[2.0 * h**p < 1e-14]
    reasons = dict(fit.excluded)
    assert all("floor" in reasons.get(x, "") for x in drowned)


def test_fit_order_excludes_the_pre_asymptotic_range_and_says_why():
    h = np.geomspace(1e-3, 1.0, 13)
    err = np.minimum(h**2, 2e-2)  # saturates at large h
    fit = convergence.fit_order(h, err)
    assert fit.order == pytest.approx(2.0, abs=1e-9)
    reasons = dict(fit.excluded)
    assert all("pre-asymptotic" in reasons[x] for x in h[h**2 > 2e-2])
    np.testing.assert_array_equal(fit.used, h**2 < 2e-2)


def test_interval_is_the_regression_t_interval():
    rng = np.random.default_rng(3)
    h = np.geomspace(0.01, 0.2, 8)
    err = h**3 * np.exp(0.005 * rng.standard_normal(8))
    fit = convergence.fit_order(h, err, confidence=0.9, order_tol=1.0)
    ref = scipy.stats.linregress(np.log(h), np.log(err))
    half = scipy.stats.t.ppf(0.95, len(h) - 2) * ref.stderr
    assert fit.points_used == 8
    np.testing.assert_allclose(
        [fit.order, fit.ci_low, fit.ci_high, fit.stderr],
        [ref.slope, ref.slope - half, ref.slope + half, ref.stderr],
    )


def test_local_orders_need_no_halving():
    h = np.array([0.3, 0.07, 0.011, 0.5])
    err = 4 * h**2.5
    np.testing.assert_allclose(convergence.local_orders(np.sort(h), 4 * np.sort(h) ** 2.5), 2.5)
    fit = convergence.fit_order(h, err)  # unsorted input is fine
    np.testing.assert_allclose(fit.local_orders, 2.5)
    np.testing.assert_allclose(fit.h, np.sort(h))


def test_failed_rows_are_excluded_and_counted():
    h = np.geomspace(0.01, 0.5, 8)
    err = h**2
    status = np.array(["ok"] * 6 + ["nonfinite", "max_steps"])
    err[6:] = np.nan
    fit = convergence.fit_order(h, err, status=status)
    assert fit.n_failed == 2 and fit.points_used == 6
    assert fit.order == pytest.approx(2.0)
    assert "failed (nonfinite)" in fit.excluded_text()


def test_too_few_points_give_nan_and_a_reason():
    fit = convergence.fit_order([0.1, 0.2, 0.4], [1e-3, 4e-3, np.nan], status=["ok", "ok", "ok"])
    assert fit.status == "too_few_points" and np.isnan(fit.order)
    assert "2 usable point(s), need 3" in fit.reason


def test_points_within_the_reference_margin_are_excluded():
    h = np.geomspace(0.01, 0.5, 10)
    err = h**2
    fit = convergence.fit_order(h, err, reference_error=1e-5)  # 100 × 1e-5 = 1e-3
    assert all(h[err <= 1e-3] == fit.h[~fit.used])
    assert "within 100× of the target's error" in fit.excluded_text()


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(confidence=1.0),
        dict(min_points=2),
        dict(floor=-1.0),
        dict(order_tol=0.0),
        dict(status=["ok"]),
    ],
)
def test_fit_order_rejects_bad_arguments(kwargs):
    with pytest.raises(InvalidArgument):
        convergence.fit_order([0.1, 0.2, 0.4], [1e-2, 4e-2, 16e-2], **kwargs)


# --------------------------------------------------------------------- measured on real solves


@pytest.fixture(scope="module")
def decay():
    return systems.get("linear")


@pytest.fixture(scope="module")
def euler_decay(decay):
    dts = [1 / n for n in STEPS]
    with pytest.MonkeyPatch.context() as mp:  # an empty compile cache, as fresh_compile_cache
        mp.setattr(analysis._sweep, "_COMPILED", {})
        before = analysis.compile_count()
        df = convergence.measure(decay, "Euler", dt0=dts, norms=("final", "max", "l2"))
        assert analysis.compile_count() - before == 1  # one compiled solve serves every norm
    return df


def test_norms_match_closed_forms_for_euler_on_decay(euler_decay):
    """Euler on y' = -y: y_n = (1 - h)^n, and its dense output interpolates linearly."""
    for n in STEPS:
        h = 1 / n
        rows = euler_decay[np.isclose(euler_decay["h"], h)].set_index("norm")["error"]
        grid = (1 - h) ** np.arange(n + 1)
        assert rows["final"] == pytest.approx(abs(grid[-1] - np.exp(-1)), rel=1e-10)
        tk = np.arange(1, 11) / 10
        yk = (1 - h) ** np.rint(tk * n)
        assert rows["max"] == pytest.approx(np.max(np.abs(yk - np.exp(-tk))), rel=1e-10)
        t = np.linspace(0, 1, 201)
        dense = np.interp(t, np.linspace(0, 1, n + 1), grid)
        l2 = np.sqrt(np.trapezoid((dense - np.exp(-t)) ** 2, t))
        assert rows["l2"] == pytest.approx(l2, rel=1e-8)


def test_relative_norm_divides_by_the_same_norm_of_the_target(decay, euler_decay):
    dts = [1 / n for n in STEPS[:3]]
    rel = convergence.measure(decay, "Euler", dt0=dts, norms="final", relative=True)
    absolute = euler_decay[euler_decay["norm"] == "final"].iloc[:3]
    np.testing.assert_allclose(rel["error"], absolute["error"].to_numpy() / np.exp(-1))


def test_euler_and_tsit5_on_decay_have_orders_1_and_5(decay, euler_decay):
    euler = convergence.orders(euler_decay)
    assert (euler["status"] == "ok").all()
    local = np.array(euler["local_orders"].iloc[0].split(), dtype=float)
    assert len(local) == len(STEPS) - 1 and np.all(np.abs(local - 1) < 0.1)
    assert np.all(np.abs(euler["order"] - 1) < 0.15)
    # Tsit5's principal error coefficient on real λ is small, so the h^6 term is large: even in
    # exact arithmetic the local orders are 5.24, 5.18, 5.13, 5.08 between N = 16, 24, 32, 48, 64
    # (see the next test). The finest steps float64 resolves are therefore the asymptotic ones.
    dts = [1 / n for n in (40, 48, 56, 64)]
    tsit5 = convergence.orders(convergence.measure(decay, "Tsit5", dt0=dts))
    assert tsit5["status"].iloc[0] == "ok" and tsit5["nominal_order"].iloc[0] == 5
    assert abs(tsit5["order"].iloc[0] - 5) < 0.15


def _stability_function(tableau, z: Fraction) -> Fraction:
    """R(z) = 1 + z·bᵀ(I - zA)⁻¹·1 of an explicit tableau, in exact rational arithmetic."""
    a = [[Fraction(float(v)) for v in np.asarray(row)] for row in tableau.a_lower]
    b = [Fraction(float(v)) for v in np.asarray(tableau.b_sol)]
    k = [Fraction(1)]
    for row in a:
        k.append(1 + z * sum(aij * kj for aij, kj in zip(row, k, strict=False)))
    return 1 + z * sum(bi * ki for bi, ki in zip(b, k, strict=True))


def test_tsit5_errors_on_decay_equal_its_stability_function(decay):
    """On y' = -y, N steps give R(-h)^N exactly; its distance to e^{-1} is the error."""
    ns = (16, 24, 32, 48)
    df = convergence.measure(decay, "Tsit5", dt0=[1 / n for n in ns])
    decimal.getcontext().prec = 40
    e = decimal.Decimal(-1).exp()
    for n, measured in zip(ns, df["error"], strict=True):
        rn = _stability_function(diffrax.Tsit5().tableau, Fraction(-1, n)) ** n
        exact = abs(decimal.Decimal(rn.numerator) / decimal.Decimal(rn.denominator) - e)
        assert measured == pytest.approx(float(exact), rel=1e-2)


def test_heun_on_perturbed_q1_converges_at_order_1():
    sys = systems.get("perturbed", base="linear", c=1.0, q=1)
    table = convergence.orders(convergence.measure(sys, "Heun", dt0=[1 / n for n in STEPS]))
    assert table["status"].iloc[0] == "ok" and table["nominal_order"].iloc[0] == 2
    assert abs(table["order"].iloc[0] - 1) < 0.15


def test_euler_on_modified_euler_with_one_correction_is_second_order():
    sys = systems.get("modified_euler", base="logistic", terms=1)
    dts = [sys.t1 / n for n in (80, 120, 160, 240, 320, 480, 640)]
    table = convergence.orders(convergence.measure(sys, "Euler", dt0=dts, norms=("final", "max")))
    assert (table["status"] == "ok").all()
    assert np.all(np.abs(table["order"] - 2) < 0.15)


def test_richardson_target_extrapolates_to_the_limit(decay):
    dts = [1 / n for n in STEPS]
    df = convergence.measure(decay, "Heun", dt0=dts, target="richardson")
    assert df["reference_point"].sum() == 2  # the two finest runs build the target
    # Measured against the extrapolated target, the other runs' errors equal their errors
    # against e^{-1} to 0.1 %: the target is far more accurate than any of them.
    err_vs_exact = np.abs(df["y_final_0"] - np.exp(-1)).to_numpy()
    err_vs_target = df["error"].to_numpy()
    mask = ~df["reference_point"].to_numpy()
    np.testing.assert_allclose(err_vs_target[mask], err_vs_exact[mask], rtol=1e-3)
    table = convergence.orders(df)
    assert abs(table["order"].iloc[0] - 2) < 0.15
    assert "build the Richardson target" in table["excluded"].iloc[0]


def test_setting_target_measures_distance_to_a_discretization(decay):
    h0 = 0.1
    df = convergence.measure(
        decay, "Euler", dt0=[1 / n for n in STEPS], target=convergence.Setting("Euler", h0)
    )
    distance = abs(np.exp(-1) - (1 - h0) ** 10)  # limit minus the h0 discretization
    own = df.set_index("h")["error"]
    assert own[h0] == 0.0
    finest = df.loc[df["h"].idxmin()]
    own_error = abs((1 - finest["h"]) ** round(1 / finest["h"]) - np.exp(-1))
    assert abs(finest["error"] - distance) <= own_error * (1 + 1e-9)
    table = convergence.orders(df)
    assert "zero error" in table["excluded"].iloc[0]


def test_bad_measure_arguments_fail_before_compiling(decay):
    before = analysis.compile_count()
    with pytest.raises(InvalidArgument, match="norms"):
        convergence.measure(decay, "Euler", dt0=[0.1], norms=("sup",))
    with pytest.raises(InvalidArgument, match="target"):
        convergence.measure(decay, "Euler", dt0=[0.1], target="exact")
    with pytest.raises(InvalidArgument, match="n_dense"):
        convergence.measure(decay, "Euler", dt0=[0.1], norms="l2", n_dense=1)
    assert analysis.compile_count() == before


def test_reference_solve_is_checked_against_the_runs():
    """Without an exact solution the target is a Dopri8 solve whose own error is estimated."""
    lv = systems.get("lotka_volterra")
    dts = [lv.t1 / n for n in (200, 300, 400, 600, 800)]
    df = convergence.measure(lv, "Heun", dt0=dts, norms=("final", "max"))
    assert df["target"].str.startswith("limit: reference (Dopri8").all()
    ref_error = df["reference_error"].to_numpy()
    assert np.all((ref_error > 0) & (ref_error < 1e-9))
    assert np.all(df["error"] > convergence.REFERENCE_MARGIN * ref_error)
    table = convergence.orders(df)
    assert (table["status"] == "ok").all() and (table["excluded"] == "").all()
    assert np.all(np.abs(table["order"] - 2) < 0.1)
