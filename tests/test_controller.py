"""analysis.controller: Söderlind presets, the filter controller against diffrax's PID and the
filter formula by hand, and the StepLogger against diffrax's step counts."""

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from analysis import InvalidArgument, StepAware, StepTerm, batch, controller, systems

NAMES = ("I", "PI42", "PI33", "PI34", "H211PI", "H312PID", "H211b", "H312b", "H0321", "H321")


def test_every_preset_resolves_by_name_and_unknown_names_are_listed():
    assert tuple(controller.PRESETS) == NAMES
    for name in NAMES:
        c = controller.make(name, rtol=1e-6, atol=1e-8)
        assert isinstance(c, controller.SoderlindController)
        assert (c.kbeta, c.alpha) == (
            controller.PRESETS[name].kbeta,
            controller.PRESETS[name].alpha,
        )
    with pytest.raises(InvalidArgument, match="Did you mean .*'PI34'.*Valid presets"):
        controller.make("PI43", 1e-3, 1e-3)
    with pytest.raises(InvalidArgument, match="'factor_max' is unknown"):
        controller.make("I", 1e-3, 1e-3, factor_max=2.0)


def test_overrides_reach_the_controller():
    c = controller.make("H211b", rtol=1e-3, atol=1e-3, dtmax=0.5, limiter=True)
    assert c.dtmax == 0.5 and c.limiter and c.alpha == (0.25, 0.0)


@pytest.mark.parametrize("name", NAMES)
def test_pid_coefficients_reproduce_the_soderlind_betas(name):
    p = controller.PRESETS[name]
    pid = p.pid
    # diffrax: β1 = p + i + d, β2 = -(p + 2d), β3 = d.
    beta = (
        pid["pcoeff"] + pid["icoeff"] + pid["dcoeff"],
        -(pid["pcoeff"] + 2 * pid["dcoeff"]),
        pid["dcoeff"],
    )
    assert beta == pytest.approx(p.kbeta)
    assert controller.preset("PI34").pid == pytest.approx(
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
    got = np.sort_complex(controller.closed_loop_poles(name))
    np.testing.assert_allclose(got, np.sort_complex(np.array(poles, complex)), atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_every_preset_is_a_stable_filter(name):
    assert np.all(np.abs(controller.closed_loop_poles(name)) < 1)


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
    pid = diffrax.PIDController(rtol=1e-6, atol=1e-8, **controller.preset(name).pid)
    ours = controller.make(name, rtol=1e-6, atol=1e-8)
    ts_pid, rej_pid, _ = _steps(lv, diffrax.Tsit5(), pid)
    ts, rej, _ = _steps(lv, diffrax.Tsit5(), ours)
    assert rej == rej_pid > 0  # rejections happen, and at the same attempts
    np.testing.assert_allclose(ts, ts_pid, rtol=1e-13)


def test_soderlind_matches_pid_under_stepaware_jit_and_vmap_over_tolerances():
    sys = systems.get("perturbed", base=systems.get("linear", t1=10.0), q=1)
    term, solver = StepTerm(sys.vector_field), StepAware(diffrax.Dopri5())
    p = controller.preset("PI42")

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
    y, n = final(lambda r: controller.make("PI42", r, r))
    np.testing.assert_array_equal(n, n_pid)
    np.testing.assert_allclose(y, y_pid, rtol=1e-12)


def test_one_adapt_step_is_the_filter_formula():
    """h_new = h·safety·ρ^{kβ1/k}·ρ1^{kβ2/k}·ρ2^{kβ3/k}·(h/h1)^{-α2}·(h1/h2)^{-α3}, by hand."""
    kbeta, alpha, k = (1 / 3, 1 / 18, -5 / 18), (-5 / 6, -1 / 6), 5
    ctrl = controller.SoderlindController(rtol=0.0, atol=1.0, kbeta=kbeta, alpha=alpha)
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
    ctrl = controller.SoderlindController(rtol=0.0, atol=1.0, limiter=True, factormax=100.0)
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
        ctrl = controller.SoderlindController(rtol=0.0, atol=1.0, safety=1.0, **kw)
        args = (jnp.array(0.0), jnp.array(0.1), jnp.array(1.0), jnp.array(1.0), None)
        return bool(ctrl.adapt_step_size(*args, jnp.array(err), 5, state)[0])

    # e = 1.2: x = 1.2^(-1/5) = 0.964 ≥ 0.9, so the ratio rule keeps what the error rule rejects.
    assert not accepted(1.2) and accepted(1.2, accept_ratio=0.9, limiter=True)
    assert not accepted(2.0, accept_ratio=0.9, limiter=True)  # x = 0.8706, limited 0.8713 < 0.9


def test_step_logger_records_every_attempt_and_agrees_with_diffrax_counts():
    lv = systems.get("lotka_volterra")
    ctrl = controller.make("H211b", rtol=1e-6, atol=1e-8)
    ts_plain, rej_plain, _ = _steps(lv, diffrax.Tsit5(), ctrl)
    ts, rej, sol = _steps(lv, diffrax.Tsit5(), controller.StepLogger(ctrl, 1024))
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


def test_with_traced_numbers_one_adapt_step_is_the_same_formula():
    """numbers_as_arrays: under jit the coefficients are arguments, and the step is unchanged."""
    kbeta, alpha, k = (1 / 3, 1 / 18, -5 / 18), (-5 / 6, -1 / 6), 5
    ctrl = controller.numbers_as_arrays(
        controller.SoderlindController(rtol=0.0, atol=1.0, kbeta=kbeta, alpha=alpha)
    )
    rho1, rho2, h1, h2, h, err = 2.0, 0.5, 0.1, 0.08, 0.12, 0.3
    state = (jnp.array(rho1), jnp.array(rho2), jnp.array(h1), jnp.array(h2), False)

    @eqx.filter_jit
    def step(c, err):
        args = (jnp.array(1.0), jnp.array(1.0 + h), jnp.array(1.0), jnp.array(1.0), None)
        return c.adapt_step_size(*args, err, k, state)

    keep, t0, t1, _, new, _ = step(ctrl, jnp.array(err))
    x = 0.9 * (1 / err) ** (kbeta[0] / k) * rho1 ** (kbeta[1] / k) * rho2 ** (kbeta[2] / k)
    x *= (h / h1) ** -alpha[0] * (h1 / h2) ** -alpha[1]
    assert bool(keep) and float(t1 - t0) == pytest.approx(h * max(x, 1.0), rel=1e-12)
    np.testing.assert_allclose([float(v) for v in new[:4]], [1 / err, rho1, h, h1], rtol=1e-12)


def test_a_traced_zero_coefficient_drops_its_factor_even_at_zero_error():
    """kβ = (0, 1/2, 0) is stable (P(q) = q³ - q² + q/2: roots 0, (1 ± i)/2). At e_n = 0,
    ρ_n = ∞ and ρ_n^0 must be 1: x = 0.9·ρ_{n-1}^{(1/2)/5}, with ρ_{n-1} = 100: 0.9·100^0.1."""
    ctrl = controller.numbers_as_arrays(
        controller.SoderlindController(rtol=0.0, atol=1.0, kbeta=(0.0, 0.5, 0.0))
    )
    h = 0.1
    state = (jnp.array(100.0), jnp.array(1.0), jnp.array(h), jnp.array(h), False)

    @eqx.filter_jit
    def step(c):
        args = (jnp.array(0.0), jnp.array(h), jnp.array(1.0), jnp.array(1.0), None)
        return c.adapt_step_size(*args, jnp.array(0.0), 5, state)

    keep, t0, t1, _, new, _ = step(ctrl)
    assert bool(keep)
    assert float(t1 - t0) == pytest.approx(h * 0.9 * 100**0.1, rel=1e-12)  # 1.43·h, not NaN
    assert float(new[0]) == 1.0  # an infinite ρ is not kept in the filter's memory


def test_an_unstable_filter_is_refused_also_when_its_numbers_are_arrays():
    # kβ = (2, 0, 0): P(q) = q³ + q² has a root at -1, on the unit circle.
    with pytest.raises(InvalidArgument, match=r"unstable by construction.*\|q\| = 1"):
        controller.SoderlindController(
            rtol=1e-6, atol=1e-6, kbeta=tuple(jnp.asarray(b) for b in (2.0, 0.0, 0.0))
        )


def test_the_deadbeat_integral_controller_reaches_its_step_in_one_step_in_the_batch():
    """Heun on y' = c·t: its embedded Euler estimate is h/2·(f(t + h) - f(t)) = (c/2)·h², an
    exact power model r = φ·h^k with φ = c/2, k = 2. The I controller (kβ1 = 1) sets
    h_{n+1} = h_n·0.9·(φ·h_n²)^{-1/2} = 0.9·φ^{-1/2} = h* whatever h_n: one step to h*, then
    every step h* (all poles at 0). With c = 162, h* = 0.1; from dt0 = h*/4 the first ratio is
    4 (inside the bounds [1, 10]). Solved in the compiled batch, numbers as arguments."""
    ramp = systems.System(
        name="ramp", vector_field=lambda t, y, args, h: 162.0 * t, y0=np.float64(0.0)
    )
    group = batch.Group(ramp, diffrax.Heun(), "I", log_steps=32)
    out = batch.solve_chunk(group, ([0.025], [0.0], [1.0]), count=1)
    n = int(out["log_count"][0])
    h, accepted = out["log_h"][0][:n], out["log_accepted"][0][:n]
    assert accepted.all() and n == 11  # 0.025, nine steps of h*, and 0.075 to reach t1 = 1
    np.testing.assert_allclose(h[1:-1], 0.1, rtol=1e-13)
    assert h[0] == 0.025 and h[-1] == pytest.approx(0.075, rel=1e-12)
    assert float(out["y_final"][0]) == pytest.approx(81.0, rel=1e-13)  # exact for f linear in t
