"""Laws that hold for every input, checked with hypothesis on random fields, states and grids.

Random coefficients enter as arrays (args), and grids have a fixed length, so each law compiles
once and the examples only change numbers.
"""

import diffrax
import jax.numpy as jnp
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import analysis
from analysis import StepAware, StepTerm
from analysis.systems import System

FINITE = st.floats(-1.0, 1.0, allow_nan=False, allow_infinity=False)
SETTINGS = settings(max_examples=12, deadline=None, derandomize=True)


def _poly_field(t, y, c):
    """A random smooth field: linear part plus quadratic and cubic terms."""
    a, b, d = c[:4].reshape(2, 2), c[4:6], c[6:8]
    return a @ y + b * y**2 - d * y**3


def _step_grid(gaps):
    ts = np.concatenate([[0.0], np.cumsum(0.02 + np.abs(gaps))])
    return jnp.asarray(ts / ts[-1])


@SETTINGS
@given(
    coeffs=arrays(np.float64, 8, elements=FINITE),
    y0=arrays(np.float64, 2, elements=FINITE),
    gaps=arrays(np.float64, 12, elements=FINITE),
    name=st.sampled_from(["Euler", "Heun", "Bosh3", "Tsit5", "Kvaerno3"]),
)
def test_stepaware_on_an_h_free_field_equals_the_bare_solver(coeffs, y0, gaps, name):
    solver = analysis.solvers.for_fixed_steps(analysis.solvers.get(name))
    ctrl = diffrax.StepTo(ts=_step_grid(gaps))
    kw = dict(
        t0=0.0,
        t1=1.0,
        dt0=None,
        y0=jnp.asarray(y0),
        args=jnp.asarray(coeffs),
        stepsize_controller=ctrl,
    )
    bare = diffrax.diffeqsolve(diffrax.ODETerm(_poly_field), solver, **kw)
    wrapped = diffrax.diffeqsolve(StepTerm(_ignores_h), StepAware(solver), **kw)
    np.testing.assert_allclose(wrapped.ys, bare.ys, rtol=1e-12, atol=1e-14)


def _ignores_h(t, y, c, h):
    return _poly_field(t, y, c)


@settings(max_examples=4, deadline=None, derandomize=True)
@given(dts=st.lists(st.floats(0.01, 0.5), min_size=2, max_size=5, unique=True))
def test_sweeps_are_deterministic(dts):
    first = analysis.sweep("logistic", ["Heun", "Tsit5"], dt0=dts, chunk_size=4)
    second = analysis.sweep("logistic", ["Heun", "Tsit5"], dt0=dts, chunk_size=4)
    cols = [c for c in first.columns if c != "wall_s"]
    assert first[cols].equals(second[cols])


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    p=st.floats(0.5, 6.0),
    log_c=st.floats(-3.0, 3.0),
    h_max=st.floats(0.05, 0.5),
    n=st.integers(5, 10),
    noise=arrays(np.float64, 10, elements=st.floats(-0.01, 0.01)),
    ratios=arrays(np.float64, 9, elements=st.floats(0.3, 0.6)),
)
def test_fit_order_recovers_p_from_noisy_power_laws_on_any_grid(p, log_c, h_max, n, noise, ratios):
    # Irregular grids (each step 0.3-0.6 times the previous, never assumed to halve) with 1%
    # multiplicative noise: local orders then wobble by at most ~0.04, inside ORDER_TOL.
    h = h_max * np.cumprod(np.concatenate([[1.0], ratios[: n - 1]]))
    err = 10**log_c * h**p * (1 + noise[:n])
    fit = analysis.convergence.fit_order(h, err)
    assert fit.status == "ok"
    assert abs(fit.order - p) < 0.05


@settings(max_examples=20, deadline=None, derandomize=True)
@given(
    re=st.floats(-3.0, 0.5),
    im=st.floats(-2.5, 2.5),
    h=st.floats(0.05, 1.0),
    name=st.sampled_from(["Euler", "Heun", "Bosh3", "Tsit5", "ImplicitEuler"]),
)
def test_amplification_equals_the_one_step_map_of_linear_decay(re, im, h, name):
    # y' = λy with λ = (re + i·im)/h as the real system (u, v)' = [[a, -b], [b, a]](u, v):
    # one step from (1, 0) is (Re R(hλ), Im R(hλ)).
    z = complex(re, im)
    lam = z / h
    system = System(
        name="rotation",
        vector_field=_rotation,
        y0=jnp.array([1.0, 0.0]),
        args=jnp.array([lam.real, lam.imag]),
    )
    phi = analysis.stability.one_step_map(system, name, h)
    r = analysis.stability.amplification(name, np.array([z]))[0]
    np.testing.assert_allclose(np.asarray(phi(system.y0)), [r.real, r.imag], rtol=1e-10, atol=1e-12)


def _rotation(t, y, ab, h):
    a, b = ab
    return jnp.stack([a * y[0] - b * y[1], b * y[0] + a * y[1]])
