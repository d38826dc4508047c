"""Controllers: Söderlind presets, the filter controller against diffrax's PID, step logging,
and the controller metrics (spread, proportionality)."""

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

import analysis
from analysis import InvalidArgument, StepAware, StepTerm, controllers, systems

NAMES = ("I", "PI42", "PI33", "PI34", "H211PI", "H312PID", "H211b", "H312b", "H0321", "H321")


def test_every_preset_resolves_by_name_and_unknown_names_are_listed():
    assert tuple(controllers.PRESETS) == NAMES
    for name in NAMES:
        c = controllers.make(name, rtol=1e-6, atol=1e-8)
        assert isinstance(c, controllers.SoderlindController)
        assert (c.kbeta, c.alpha) == (
            controllers.PRESETS[name].kbeta,
            controllers.PRESETS[name].alpha,
        )
    with pytest.raises(InvalidArgument, match="Did you mean .*'PI34'.*Valid presets"):
        controllers.make("PI43", 1e-3, 1e-3)
    with pytest.raises(InvalidArgument, match="'factor_max' is unknown"):
        controllers.make("I", 1e-3, 1e-3, factor_max=2.0)


def test_overrides_reach_the_controller():
    c = controllers.make("H211b", rtol=1e-3, atol=1e-3, dtmax=0.5, limiter=True)
    assert c.dtmax == 0.5 and c.limiter and c.alpha == (0.25, 0.0)


@pytest.mark.parametrize("name", NAMES)
def test_pid_coefficients_reproduce_the_soderlind_betas(name):
    p = controllers.PRESETS[name]
    pid = p.pid
    # diffrax: β1 = p + i + d, β2 = -(p + 2d), β3 = d.
    beta = (
        pid["pcoeff"] + pid["icoeff"] + pid["dcoeff"],
        -(pid["pcoeff"] + 2 * pid["dcoeff"]),
        pid["dcoeff"],
    )
    assert beta == pytest.approx(p.kbeta)
    assert controllers.preset("PI34").pid == pytest.approx(
        {"pcoeff": 0.4, "icoeff": 0.3, "dcoeff": 0.0}  # diffrax's documented PI controller
    )


@pytest.mark.parametrize(
    "name, poles",
    [
        ("I", [0, 0, 0]),  # deadbeat
        ("H0321", [0, 0, 0]),  # deadbeat by design (Söderlind 2003)
        ("H211b", [0, 0, 1 - 2 / 4]),  # {0, 1 - 2/b}
        ("H312b", [0, 0, 1 - 4 / 8]),  # {0, 0, 1 - 4/b}
        ("H321", [1 / 3, 1 / 2, 2 / 3]),  # q³ - 3/2 q² + 13/18 q - 1/9, factored by hand
        ("PI34", [0, 0.8, -0.5]),  # q² - 0.3q - 0.4
    ],
)
def test_closed_loop_poles_are_the_roots_of_the_filter_polynomial(name, poles):
    got = np.sort_complex(controllers.closed_loop_poles(name))
    np.testing.assert_allclose(got, np.sort_complex(np.array(poles, complex)), atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_every_preset_is_a_stable_filter(name):
    assert np.all(np.abs(controllers.closed_loop_poles(name)) < 1)


def _steps(system, solver, ctrl, step_dependent=False):
    term = StepTerm(system.vector_field) if step_dependent else diffrax.ODETerm(system.limit_field)
    sol = diffrax.diffeqsolve(
        term,
        StepAware(solver) if step_dependent else solver,
        system.t0,
        system.t1,
        None,
        system.y0,
        system.args,
        stepsize_controller=ctrl,
        saveat=diffrax.SaveAt(steps=True, controller_state=True),
        max_steps=4096,
    )
    ts = np.asarray(sol.ts)
    return ts[np.isfinite(ts)], int(sol.stats["num_rejected_steps"]), sol


@pytest.mark.parametrize("name", ["PI34", "H312PID"])
def test_soderlind_with_zero_alpha_reproduces_diffrax_pid_step_for_step(name):
    lv = systems.get("lotka_volterra")
    pid = diffrax.PIDController(rtol=1e-6, atol=1e-8, **controllers.preset(name).pid)
    ours = controllers.make(name, rtol=1e-6, atol=1e-8)
    ts_pid, rej_pid, _ = _steps(lv, diffrax.Tsit5(), pid)
    ts, rej, _ = _steps(lv, diffrax.Tsit5(), ours)
    assert rej == rej_pid > 0  # rejections happen, and at the same attempts
    np.testing.assert_allclose(ts, ts_pid, rtol=1e-13)


def test_soderlind_matches_pid_under_stepaware_jit_and_vmap_over_tolerances():
    sys = systems.get("perturbed", base=systems.get("linear", t1=10.0), q=1)
    term, solver = StepTerm(sys.vector_field), StepAware(diffrax.Dopri5())
    p = controllers.preset("PI42")

    def final(make_ctrl):
        def solve(rtol):
            sol = diffrax.diffeqsolve(
                term, solver, sys.t0, sys.t1, None, sys.y0, sys.args,
                stepsize_controller=make_ctrl(rtol),
                max_steps=4096,
            )  # fmt: skip
            return sol.ys[-1], sol.stats["num_steps"]

        return jax.jit(jax.vmap(solve))(jnp.array([1e-3, 1e-6, 1e-9]))

    y_pid, n_pid = final(lambda r: diffrax.PIDController(rtol=r, atol=r, **p.pid))
    y, n = final(lambda r: controllers.make("PI42", r, r))
    np.testing.assert_array_equal(n, n_pid)
    np.testing.assert_allclose(y, y_pid, rtol=1e-12)


def test_one_adapt_step_is_the_filter_formula():
    """h_new = h·safety·ρ^{kβ1/k}·ρ1^{kβ2/k}·ρ2^{kβ3/k}·(h/h1)^{-α2}·(h1/h2)^{-α3}, by hand."""
    kbeta, alpha, k = (1 / 3, 1 / 18, -5 / 18), (-5 / 6, -1 / 6), 5
    ctrl = controllers.SoderlindController(rtol=0.0, atol=1.0, kbeta=kbeta, alpha=alpha)
    rho1, rho2, h1, h2, h = 2.0, 0.5, 0.1, 0.08, 0.12
    state = (jnp.array(rho1), jnp.array(rho2), jnp.array(h1), jnp.array(h2), False)
    err = 0.3  # rms norm of a scalar error with atol = 1, rtol = 0 is |error|
    keep, t0, t1, _, new, _ = ctrl.adapt_step_size(
        jnp.array(1.0), jnp.array(1.0 + h), jnp.array(1.0), jnp.array(1.0),
        None, jnp.array(err), k, state,
    )  # fmt: skip
    x = 0.9 * (1 / err) ** (kbeta[0] / k) * rho1 ** (kbeta[1] / k) * rho2 ** (kbeta[2] / k)
    x *= (h / h1) ** -alpha[0] * (h1 / h2) ** -alpha[1]
    assert bool(keep) and float(t0) == pytest.approx(1 + h)
    assert float(t1 - t0) == pytest.approx(h * max(x, 1.0), rel=1e-12)
    np.testing.assert_allclose([float(v) for v in new[:4]], [1 / err, rho1, h, h1], rtol=1e-12)
    # Rejected (error 4 > 1): the memory is kept and the step shrinks by at most `safety`.
    keep, t0, t1, _, new, _ = ctrl.adapt_step_size(
        jnp.array(1.0), jnp.array(1.0 + h), jnp.array(1.0), jnp.array(1.0),
        None, jnp.array(4.0), k, state,
    )  # fmt: skip
    x_rejected = x * (err / 4.0) ** (kbeta[0] / k)
    assert not bool(keep) and float(t0) == 1.0
    assert float(t1 - t0) == pytest.approx(h * np.clip(x_rejected, 0.2, 0.9), rel=1e-12)
    np.testing.assert_allclose([float(v) for v in new[:4]], [rho1, rho2, h1, h2])


def test_smooth_limiter_bounds_the_step_ratio_by_one_plus_atan():
    ctrl = controllers.SoderlindController(rtol=0.0, atol=1.0, limiter=True, factormax=100.0)
    h, tiny = 0.1, 1e-12
    state = (jnp.array(1.0), jnp.array(1.0), jnp.array(h), jnp.array(h), False)
    *_, t0, t1 = ctrl.adapt_step_size(
        jnp.array(0.0), jnp.array(h), jnp.array(1.0), jnp.array(1.0),
        None, jnp.array(tiny), 5, state,
    )[:3]  # fmt: skip
    x = 0.9 * (1 / tiny) ** (1 / 5)
    assert float(t1 - t0) == pytest.approx(h * (1 + np.arctan(x - 1)), rel=1e-12)
    assert float(t1 - t0) < h * (1 + np.pi / 2)


def test_ratio_rejection_rule_accepts_by_the_step_ratio_not_the_error():
    """Söderlind & Wang 2006: accept iff the (limited) ratio x ≥ accept_ratio."""
    state = (jnp.array(1.0), jnp.array(1.0), jnp.array(0.1), jnp.array(0.1), False)

    def accepted(err, **kw):
        ctrl = controllers.SoderlindController(rtol=0.0, atol=1.0, safety=1.0, **kw)
        args = (jnp.array(0.0), jnp.array(0.1), jnp.array(1.0), jnp.array(1.0), None)
        return bool(ctrl.adapt_step_size(*args, jnp.array(err), 5, state)[0])

    # e = 1.2: x = 1.2^(-1/5) = 0.964 ≥ 0.9, so the ratio rule keeps what the error rule rejects.
    assert not accepted(1.2) and accepted(1.2, accept_ratio=0.9, limiter=True)
    assert not accepted(2.0, accept_ratio=0.9, limiter=True)  # x = 0.8706, limited 0.8713 < 0.9


def test_step_logger_records_every_attempt_and_agrees_with_diffrax_counts():
    lv = systems.get("lotka_volterra")
    ctrl = controllers.make("H211b", rtol=1e-6, atol=1e-8)
    ts_plain, rej_plain, _ = _steps(lv, diffrax.Tsit5(), ctrl)
    ts, rej, sol = _steps(lv, diffrax.Tsit5(), controllers.StepLogger(ctrl, 1024))
    np.testing.assert_array_equal(ts, ts_plain)  # watching does not change the steps
    log = sol.controller_state[1]
    n = int(log["count"])
    accepted = np.asarray(log["accepted"])[:n]
    assert n == int(sol.stats["num_steps"]) and rej == rej_plain > 0
    assert accepted.sum() == int(sol.stats["num_accepted_steps"])
    assert (~accepted).sum() == rej
    t0, h, err = (np.asarray(log[k])[:n] for k in ("t0", "h", "error"))
    np.testing.assert_allclose(t0[accepted] + h[accepted], ts, rtol=1e-14)
    np.testing.assert_array_equal(err < 1, accepted)  # the documented rejection rule


def test_proportionality_is_the_least_squares_slope_on_log_rtol():
    rtol = np.logspace(-2, -8, 7)
    rows = pd.DataFrame(
        {"system": "s", "solver": "x", "controller": "I", "rtol": rtol, "status": "ok"}
    )
    rows["error"] = 3.0 * rtol**0.8
    out = controllers.proportionality(rows)
    assert out["slope"].iloc[0] == pytest.approx(0.8) and out["points"].iloc[0] == 7


@pytest.fixture(scope="module")
def decay_rows():
    """y' = -y and f = -y + h·sin(y) on [0, 10], Tsit5, controllers I and H211b, logged."""
    base = systems.get("linear", t1=10.0)
    stepdep = systems.get("perturbed", base=base, c=1.0, q=1, g="sin")
    rows = [
        analysis.sweep([base, stepdep], "Tsit5", controller=c, rtol=RTOLS, log_steps=1024)
        for c in ("I", "H211b")
    ]
    return base, stepdep, pd.concat(rows, ignore_index=True)


RTOLS = [1e-4, 1e-6, 1e-8]


def test_spread_is_tolerance_level_without_h_and_far_larger_with_h_as_input(decay_rows):
    base, stepdep, rows = decay_rows
    s = controllers.spread(rows).set_index(["system", "rtol"])["spread"]
    free, with_h = s[base.name], s[stepdep.name]
    # Each h-free solve is within ~rtol of y(10) = e^-10, so their spread is too.
    assert (free.to_numpy() <= np.asarray(RTOLS)).all()
    # With h as input the controller's choice of h moves the answer by O(Δh), far above rtol.
    assert (with_h.to_numpy() >= 100 * np.asarray(RTOLS)).all()


def test_sweep_step_metrics_columns_agree_with_the_counts(decay_rows):
    df = decay_rows[2]
    assert set(controllers.STEP_METRICS) <= set(df.columns)
    assert (df["attempts_logged"] == df["num_steps"]).all()
    np.testing.assert_allclose(df["rejection_rate"], df["num_rejected"] / df["num_steps"])
    assert (df["roughness_mean"] <= df["roughness_max"]).all()
    with pytest.raises(InvalidArgument, match="log_steps"):
        analysis.sweep("linear", "Euler", dt0=[0.1], log_steps=10)


def test_work_precision_compiles_once_and_keeps_the_best_time(fresh_compile_cache):
    lin = systems.get("linear")
    wp = controllers.work_precision(lin, [("Tsit5", "PI34")], [1e-4, 1e-8], repeats=3)
    assert wp.attrs["compilations"] == 1  # three timed runs of one compiled solve
    once = analysis.sweep(lin, "Tsit5", controller="PI34", rtol=[1e-4, 1e-8], chunk_size=1)
    np.testing.assert_array_equal(wp["nfev"], once["nfev"])
    np.testing.assert_allclose(wp["error"], once["error"], rtol=1e-12)
    assert (wp["wall_s"] > 0).all() and wp["error"].iloc[1] < wp["error"].iloc[0]


def test_spread_is_the_max_norm_range_over_ok_rows():
    rows = pd.DataFrame(
        {
            "system": ["a"] * 3 + ["b"] * 2,
            "rtol": 1e-3,
            "status": ["ok"] * 4 + ["nonfinite"],
            "y_final_0": [1.0, 2.0, 4.0, 0.0, 9.0],
            "y_final_1": [0.0, 10.0, 0.0, 0.0, 0.0],
        }
    )
    s = controllers.spread(rows).set_index("system")
    assert s.loc["a", "spread"] == 10.0 and s.loc["b", "spread"] == 0.0 and s.loc["b", "n"] == 1
    assert controllers.spread(rows, output="y_final_0").set_index("system").loc["a", "spread"] == 3
    with pytest.raises(InvalidArgument, match="output"):
        controllers.spread(rows, output="y")


def test_proportionality_keeps_groups_whose_rows_all_failed_and_counts_the_failures():
    rtol = np.logspace(-2, -6, 5)
    rows = pd.DataFrame(
        {"system": "s", "solver": np.repeat(["x", "y", "z"], 5), "controller": "I"}
    ).assign(rtol=np.tile(rtol, 3), error=np.tile(2.0 * rtol, 3), status="ok")
    rows.loc[rows["solver"] == "x", "status"] = ["nonfinite"] * 3 + ["max_steps"] * 2
    rows.loc[rows["solver"] == "y", "status"] = ["ok", "ok", "ok", "nonfinite", "field_error"]
    out = controllers.proportionality(rows).set_index("solver")
    assert list(out.index) == ["x", "y", "z"]
    x, y, z = (out.loc[s] for s in "xyz")
    assert x["status"] == "too_few_points" and np.isnan(x["slope"]) and np.isnan(x["intercept"])
    assert (x["points"], x["n_failed"]) == (0, 5)
    assert "5 failed (3 nonfinite, 2 max_steps)" in x["reason"]
    assert y["status"] == "ok" and y["slope"] == pytest.approx(1.0) and y["points"] == 3
    assert y["n_failed"] == 2 and y["reason"] == "2 failed (1 nonfinite, 1 field_error)"
    assert z["status"] == "ok" and z["n_failed"] == 0 and z["reason"] == ""
    every = controllers.proportionality(rows[rows["solver"] == "x"])  # was a KeyError
    assert len(every) == 1 and every["status"].iloc[0] == "too_few_points"
    assert set(every.columns) == set(out.reset_index().columns)
