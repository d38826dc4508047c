"""fixed_steps.march: diffeqsolve's constant-step numbers without its loop, checked against
diffeqsolve itself (to round-off, step counts exactly), closed forms and evaluation counts."""

import functools

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from analysis import InvalidArgument, StepAware, solvers
from analysis._diffrax_private import result_code
from analysis.distributed import _primitives
from analysis.fixed_steps import _Grid, march, tableau_of
from analysis.prepare import prepare
from analysis.systems import System


def _riccati():
    """y' = -y + h·t·y², an h-dependent field of its own (not the catalog's)."""
    return System(
        name="riccati_h",
        vector_field=lambda t, y, args, h: -y + h * t * y**2,
        y0=jnp.asarray([1.0, 0.5]),
        t1=2.0,
    )


def _oscillator():
    """q' = p, p' = -q - h·p: an h-dependent field on a dict state."""
    return System(
        name="oscillator_h",
        vector_field=lambda t, y, args, h: {"q": y["p"], "p": -y["q"] - h * y["p"]},
        y0={"q": jnp.asarray(1.0), "p": jnp.asarray(0.0)},
    )


def _both(prepared, steps, max_steps):
    """Final states, result codes and step counts of diffeqsolve and march, vmapped over the
    steps as fractions of the span."""
    span = prepared.system.t1 - prepared.system.t0

    @eqx.filter_jit
    def run(fractions):
        def one(fraction):
            sol = prepared.solve(fraction * span, max_steps=max_steps)
            end = prepared.march(fraction * span, max_steps=max_steps)
            counts = [(sol.stats[k], end.stats[k]) for k in sorted(sol.stats) if k != "max_steps"]
            y_sol = jax.tree.map(lambda y: y[-1], sol.ys)
            return (y_sol, end.y1), (result_code(sol.result), result_code(end.result)), counts

        return jax.vmap(one)(fractions)

    return run(jnp.asarray(steps))


# dt0 as fractions of the span: dividing it, not dividing it (a short last step), larger than
# it, and one that needs more than MAX_STEPS steps.
FRACTIONS = [0.1, 0.3, 0.07, 1.5, 1 / 64]
MAX_STEPS = 20


def _relative_difference(a, b):
    a, b = (np.concatenate([np.ravel(x) for x in jax.tree.leaves(t)]) for t in (a, b))
    assert np.all(np.isfinite(a)), "compare finite solves"
    return np.max(np.abs(a - b)) / np.max(np.abs(a))


@pytest.mark.parametrize("system", ["linear10", "perturbed", "riccati", "oscillator"])
@pytest.mark.parametrize("solver", solvers.EXPLICIT_RK)
def test_explicit_solvers_march_to_diffeqsolves_numbers(solver, system):
    system = {"riccati": _riccati(), "oscillator": _oscillator()}.get(system, system)
    prepared = prepare(system, solver)
    assert tableau_of(prepared.solver) is not None  # the unrolled stages, not solver.step
    (y_sol, y_end), (code_sol, code_end), counts = _both(prepared, FRACTIONS, MAX_STEPS)
    for mine, theirs in counts:
        np.testing.assert_array_equal(mine, theirs)
    np.testing.assert_array_equal(code_sol, code_end)
    assert list(np.asarray(counts[0][0])) == [10, 4, 15, 1, 20]  # max_steps stops the last
    too_long = int(result_code(diffrax.RESULTS.max_steps_reached))
    assert list(np.asarray(code_end) == too_long) == [False] * 4 + [True]
    # The order in which Σ a_ij·k_j is rounded differs (diffrax: a dot product over all
    # stages, zeros included): round-off, amplified by large tableau coefficients (Tsit5's
    # |a_ij| reach 10).
    assert _relative_difference(y_sol, y_end) <= 1e-13


@pytest.mark.parametrize("signed", [False, True])
@pytest.mark.parametrize("solver", ["Euler", "Tsit5"])
def test_reverse_time_with_a_signed_step_is_diffeqsolves(solver, signed):
    wrapper = functools.partial(StepAware, signed=signed)
    prepared = prepare(_riccati(), solver, wrapper=wrapper)
    sol = prepared.solve(-0.3, t0=2.0, t1=0.5, y0=jnp.asarray([0.2, 0.1]))
    end = prepared.march(-0.3, t0=2.0, t1=0.5, y0=jnp.asarray([0.2, 0.1]))
    np.testing.assert_allclose(end.y1, sol.ys[-1], rtol=1e-14)
    assert int(end.num_steps) == int(sol.stats["num_steps"]) == 5


@pytest.mark.parametrize("solver", ["ImplicitEuler", "Kvaerno5", "HalfSolver(Euler)"])
def test_other_solvers_march_with_their_own_step(solver):
    prepared = prepare("linear10", solver)
    assert tableau_of(prepared.solver) is None
    (y_sol, y_end), (code_sol, code_end), counts = _both(prepared, FRACTIONS, MAX_STEPS)
    for mine, theirs in counts:
        np.testing.assert_array_equal(mine, theirs)
    np.testing.assert_array_equal(code_sol, code_end)
    assert _relative_difference(y_sol, y_end) <= 1e-13


def test_a_newton_failure_ends_the_march_with_diffeqsolves_result():
    # Implicit Euler on y' = y² from y = 1 at h = 1 asks for y1 = 1 + y1², which has no real
    # root: Newton fails on the first step.
    blowup = System(name="blowup", vector_field=lambda t, y, args, h: y**2, y0=1.0, t1=3.0)
    prepared = prepare(blowup, "ImplicitEuler")
    sol, end = prepared.solve(1.0), prepared.march(1.0)
    assert int(result_code(sol.result)) == int(result_code(end.result)) != 0
    assert bool(end.result != diffrax.RESULTS.max_steps_reached)
    assert int(end.num_steps) == int(sol.stats["num_steps"]) == 1


def test_euler_on_exponential_decay_is_the_power_exactly():
    # y' = -y: each Euler step multiplies by 1 - h = 7/8, exactly representable, and so are its
    # first 8 powers.
    end = prepare("linear", "Euler").march(0.125)
    assert float(end.y1) == 0.875**8 and int(end.num_steps) == 8


def test_every_stage_sees_the_step_it_belongs_to():
    # y' = (h - 1)·y: Heun multiplies y by R(z) = 1 + z + z²/2 with z = h·(h - 1) in a step of
    # size h. dt0 = 0.4 on [0, 1], diffrax's grid T_1 = 0.4, T_n = n/3 (N = ⌈1/0.4⌉ = 3):
    # steps 0.4, 2/3 - 0.4, 1/3, each with its own h in every stage.
    damped = System(name="damped_h", vector_field=lambda t, y, args, h: (h - 1) * y, y0=1.0)
    end = prepare(damped, "Heun").march(0.4)
    steps = np.diff([0.0, 0.4, 2 / 3, 1.0])
    z = steps * (steps - 1)
    assert float(end.y1) == pytest.approx(np.prod(1 + z + z**2 / 2), rel=1e-14)
    assert int(end.num_steps) == 3


@pytest.mark.parametrize("solver", ["Euler", "Heun", "Bosh3", "Tsit5", "Dopri8"])
@pytest.mark.parametrize("reads_h", [False, True])
def test_evaluations_per_step_are_the_stages_less_fsal_reuse(solver, reads_h):
    calls = []

    def field(t, y, args, h):
        jax.debug.callback(lambda: calls.append(1))
        return -y + (h * y if reads_h else 0.0)

    counted = System(name=f"counted_{reads_h}", vector_field=field, y0=1.0)
    end = jax.jit(lambda dt0: prepare(counted, solver).march(dt0).y1)(0.1)
    jax.block_until_ready(end)
    info = solvers.info(solver)
    per_step = info.stages - (info.fsal and not reads_h)
    assert len(calls) == 10 * per_step + (info.fsal and not reads_h)  # FSAL: f(t0, y0) once
    assert len(calls) == solvers.nfev(solver, 10, step_dependent=reads_h)


@jax.jit
def _diffeqsolve_times(t0, t1, dt0):
    return diffrax.diffeqsolve(
        diffrax.ODETerm(lambda t, y, args: -y),
        diffrax.Euler(),
        t0,
        t1,
        dt0,
        1.0,
        saveat=diffrax.SaveAt(steps=True),
        max_steps=64,
        throw=False,
    ).ts


@jax.jit
def _march_times(t0, t1, dt0):
    # In a loop, as march computes them: XLA hoists the loop-invariant 1/N there, so
    # T_3 = 0 + 1·(3·(1/10)) = 0.30000000000000004 on [0, 1] at dt0 = 0.1 in diffeqsolve and
    # march alike (and 0.3 outside a loop).
    grid = _Grid.of(t0, t1, dt0)

    def body(carry):
        n, ts = carry
        return n + 1, ts.at[n].set(grid.time(n + 1))

    return lax.while_loop(lambda c: c[0] < 64, body, (0, jnp.full(64, jnp.inf)))[1]


@pytest.mark.parametrize(
    "t0, t1, dt0",
    [(0.0, 1.0, 0.1), (0.3, 1.0, 0.07), (1e9, 1e9 + 1.0, 0.1), (0.0, 1.0, 1.0), (0.0, 1.0, 2.0)],
)
def test_the_step_times_are_diffeqsolves(t0, t1, dt0):
    """Times saved by diffeqsolve at every step are march's T_n, bit for bit."""
    times = np.asarray(_diffeqsolve_times(t0, t1, dt0))
    n = int(np.sum(np.isfinite(times)))
    np.testing.assert_array_equal(times[:n], np.asarray(_march_times(t0, t1, dt0))[:n])
    assert int(prepare("linear", "Euler").march(dt0, t0=t0, t1=t1).num_steps) == n


@pytest.mark.parametrize("dt0", [0.0, -0.1, float("nan")])
def test_a_step_that_cannot_reach_t1_is_refused(dt0):
    with pytest.raises(InvalidArgument, match="dt0"):
        march(diffrax.ODETerm(lambda t, y, args: -y), diffrax.Euler(), 0.0, 1.0, dt0, 1.0, None)


def test_march_needs_constant_steps():
    with pytest.raises(InvalidArgument, match="constant steps"):
        prepare("linear", "Tsit5", controller="PI34", rtol=1e-6).march(0.1)


# ------------------------------------------------------------------------ saves at ts


def _parametric():
    """y' = -a·y + h·b·t·y²: an h-dependent field of its own with trainable args (a, b)."""
    return System(
        name="parametric_h",
        vector_field=lambda t, y, args, h: -args[0] * y + h * args[1] * t * y**2,
        y0=jnp.asarray([1.0, 0.5]),
        args=jnp.asarray([1.0, 0.5]),
        t1=2.0,
    )


def _saved_both(prepared, fractions, saves_at, max_steps):
    """ys of diffeqsolve with SaveAt(ts) and of march with ts, the step dt0 = fraction·span and
    the save times t0 + k·dt0 for k in `saves_at`, vmapped over the fractions."""
    t0, t1 = prepared.system.t0, prepared.system.t1

    @eqx.filter_jit
    def run(fractions):
        def one(fraction):
            dt0 = fraction * (t1 - t0)
            ts = t0 + dt0 * jnp.asarray(saves_at, dtype=float)
            sol = prepared.solve(dt0, saveat=diffrax.SaveAt(ts=ts), max_steps=max_steps)
            end = prepared.march(dt0, ts=ts, max_steps=max_steps)
            return sol.ys, end.ys, result_code(sol.result), result_code(end.result)

        return jax.vmap(one)(fractions)

    return run(jnp.asarray(fractions))


def _finite_relative_difference(a, b):
    """Max relative difference of two PyTrees whose non-finite entries (unsaved: inf) agree."""
    a, b = (np.concatenate([np.ravel(x) for x in jax.tree.leaves(t)]) for t in (a, b))
    np.testing.assert_array_equal(np.isfinite(a), np.isfinite(b))
    np.testing.assert_array_equal(a[~np.isfinite(a)], b[~np.isfinite(b)])
    return _relative_difference(a[np.isfinite(a)], b[np.isfinite(b)])


@pytest.mark.parametrize(
    "solver, system",
    [(s, f) for f in ("linear10", "riccati") for s in solvers.EXPLICIT_RK]
    + [(s, f) for f in ("perturbed", "oscillator") for s in ("Heun", "Tsit5")]
    + [(s, "riccati") for s in ("ImplicitEuler", "Kvaerno5")],
)
def test_saves_on_the_step_grid_are_diffeqsolves_saveat_ts(solver, system):
    system = {"riccati": _riccati(), "oscillator": _oscillator()}.get(system, system)
    prepared = prepare(system, solver)
    # dt0 = span/10 saved at steps 0, 1, 4, 10; dt0 = span/40 at steps 0, 1, 4, 10, 40 with
    # max_steps = 20 (the last save never reached: inf in both).
    saves_at = [0, 1, 4, 10]
    ys_sol, ys_end, code_sol, code_end = _saved_both(prepared, [0.1, 0.025], saves_at, 20)
    np.testing.assert_array_equal(code_sol, code_end)
    assert list(np.asarray(code_end) != 0) == [False, True]
    assert _finite_relative_difference(ys_sol, ys_end) <= 1e-13


def test_a_save_time_off_the_grid_is_refused_or_nan():
    term, ts = diffrax.ODETerm(lambda t, y, args: -y), jnp.asarray([0.0, 0.4, 1.0])
    with pytest.raises(InvalidArgument, match="off the step grid"):
        march(term, diffrax.Euler(), 0.0, 1.0, 0.25, 1.0, None, ts=ts)
    traced = jax.jit(lambda ts: march(term, diffrax.Euler(), 0.0, 1.0, 0.25, 1.0, None, ts=ts))
    ys = np.asarray(traced(ts).ys)
    assert ys[0] == 1.0 and np.isnan(ys[1]) and ys[2] == 0.75**4
    # diffrax's first step is dt0 itself, the others (t1 - t0)/N: T = 0.8, 1 at dt0 = 0.8.
    end = march(term, diffrax.Euler(), 0.0, 1.0, 0.8, 1.0, None, ts=[0.0, 0.8, 1.0])
    np.testing.assert_allclose(end.ys, [1.0, 0.2, 0.2 * 0.8])


def _loss(ys):
    return sum(jnp.sum(jnp.where(jnp.isfinite(y), y, 0.0) ** 2) for y in jax.tree.leaves(ys))


@pytest.mark.parametrize(
    "solver, system",
    [(s, "parametric") for s in ("Euler", "Heun", "Tsit5", "ImplicitEuler")]
    + [("Tsit5", "linear10"), ("Dopri5", "oscillator")],
)
def test_reverse_mode_gradients_are_diffeqsolves(solver, system):
    """jax.grad with respect to y0 and args through march's scan (max_steps past the last
    step: the masked steps pass the gradient through unchanged) and through diffeqsolve."""
    system = {"parametric": _parametric(), "oscillator": _oscillator()}.get(system, system)
    prepared = prepare(system, solver)
    system = prepared.system
    t0, t1 = system.t0, system.t1
    dt0, ts = (t1 - t0) / 8, t0 + (t1 - t0) * jnp.asarray([0.0, 0.25, 0.5, 1.0])

    def by_diffeqsolve(y0, args):
        sol = prepared.solve(dt0, y0=y0, args=args, saveat=diffrax.SaveAt(ts=ts), max_steps=8)
        return _loss(sol.ys)

    def by_march(y0, args):
        end = prepared.march(dt0, y0=y0, args=args, ts=ts, max_steps=11, reverse_mode=True)
        return _loss(end.ys)

    args = system.args if system.args is not None else jnp.zeros(())
    grads = [
        jax.jit(jax.value_and_grad(f, argnums=(0, 1)))(system.y0, args)
        for f in (by_diffeqsolve, by_march)
    ]
    assert _relative_difference(grads[0][0], grads[1][0]) <= 1e-13
    assert _relative_difference(grads[0][1][0], grads[1][1][0]) <= 1e-12  # d/dy0
    if system.args is not None:
        assert _relative_difference(grads[0][1][1], grads[1][1][1]) <= 1e-12  # d/dargs


@pytest.mark.parametrize("solver", ["Euler", "Tsit5"])
def test_forward_mode_derivative_in_the_step_is_diffeqsolves(solver):
    """d/dh of the states at t0 + m·k·h after m·k steps of size h (the save times move with
    h, as in neural.step_sensitivity), by jvp through the while loop and through diffeqsolve."""
    prepared = prepare(_parametric(), solver)

    def states(h, use_march):
        ts = h * 3 * jnp.arange(4.0)  # m = 3 steps per save
        if use_march:
            return prepared.march(h, t0=ts[0], t1=ts[-1], ts=ts, max_steps=9).ys
        sol = prepared.solve(
            h,
            t0=ts[0],
            t1=ts[-1],
            saveat=diffrax.SaveAt(ts=ts),
            max_steps=9,
            adjoint=diffrax.ForwardMode(),
        )
        return sol.ys

    for h in (0.1, 1 / 6):
        (y_sol, dy_sol), (y_end, dy_end) = (
            jax.jit(lambda h, u=u: jax.jvp(lambda x: states(x, u), (h,), (1.0,)))(h)
            for u in (False, True)
        )
        assert _relative_difference(y_sol, y_end) <= 1e-13
        assert _relative_difference(dy_sol, dy_end) <= 1e-12


def test_a_jitted_march_with_traced_saves_calls_no_host():
    """No host callback (diffeqsolve checks traced SaveAt(ts) with one): jax's persistent
    compilation cache can store the program."""
    prepared = prepare(_riccati(), "Tsit5")

    def primitives(f, *xs):
        return set(_primitives(jax.make_jaxpr(f)(*xs).jaxpr))

    ts = jnp.asarray([0.0, 1.0, 2.0])
    for reverse_mode in (False, True):
        marched = primitives(
            lambda dt0, ts, r=reverse_mode: (
                prepared.march(dt0, ts=ts, max_steps=20, reverse_mode=r).ys
            ),
            0.1,
            ts,
        )
        assert not any("callback" in name for name in marched)
    solved = primitives(
        lambda dt0, ts: prepared.solve(dt0, saveat=diffrax.SaveAt(ts=ts)).ys, 0.1, ts
    )
    assert any("callback" in name for name in solved)


def test_reverse_mode_needs_a_step_count():
    with pytest.raises(InvalidArgument, match="max_steps"):
        prepare("linear", "Euler").march(0.1, max_steps=None, reverse_mode=True)
