"""The one-step map Φ_h and the stability tools built on it."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import EXPLICIT_RK

from analysis import stability, systems


def test_euler_map_of_the_logistic_equation_is_the_textbook_formula():
    phi = stability.one_step_map(systems.get("logistic"), "Euler", 0.7)
    y = jnp.linspace(-0.5, 1.5, 7)
    np.testing.assert_allclose(jax.vmap(phi)(y), y + 0.7 * y * (1 - y), rtol=1e-15)


def test_map_is_jittable_vmappable_over_h_and_differentiable():
    sys = systems.get("logistic")
    hs = jnp.array([0.1, 0.5, 2.0])
    out = jax.jit(jax.vmap(lambda h: stability.one_step_map(sys, "Heun", h)(jnp.asarray(0.3))))(hs)
    for h, y in zip(hs, out, strict=True):
        k1 = 0.3 * 0.7
        k2 = (0.3 + h * k1) * (1 - 0.3 - h * k1)
        np.testing.assert_allclose(y, 0.3 + h / 2 * (k1 + k2), rtol=1e-14)
    # Φ_h'(y*) at the equilibrium y* = 1 of Euler: 1 + h·f'(1) = 1 - h.
    phi = stability.one_step_map(sys, "Euler", 0.4)
    np.testing.assert_allclose(jax.jacfwd(phi)(jnp.asarray(1.0)), 0.6, rtol=1e-15)


@pytest.mark.parametrize("name", EXPLICIT_RK + ("Kvaerno5", "ImplicitEuler"))
def test_map_of_linear_decay_is_the_stability_function(name):
    # On y' = -y, Φ_h(y) = R(-h)·y with R the solver's stability function; the exact flow is e^-h.
    phi = stability.one_step_map(systems.get("linear"), name, 0.01)
    order = {"Euler": 1, "ImplicitEuler": 1, "Heun": 2, "Midpoint": 2, "Ralston": 2}.get(name, 3)
    np.testing.assert_allclose(phi(jnp.asarray(1.0)), np.exp(-0.01), atol=0.01 ** (order + 1))
