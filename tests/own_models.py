"""Three step-dependent models of our own (none in the catalog), with what is known about them.

- `h_input_mlp`: a small tanh network f(y, h) = W2·tanh(W1·y + w_h·h + b1) + A·y that reads h
  (smooth in h, ∂f/∂h ≠ 0 at h = 0): every solver converges to its h → 0 limit at order 1; the
  error estimate keeps its asymptotic exponent (gain 1).
- `hypersolver`: y' = A·y plus the correction h²·A³·y/6 that cancels Heun's leading local error
  on linear problems: Heun on it has R(z) = 1 + z + z²/2 + z³/6 + O(z⁴), so it converges to the
  h → 0 limit y' = A·y at order 3 (Heun alone: 2), Euler at order 1, Tsit5 at order 2 (the
  O(h²) field perturbation).
- `lifted_map`: the lift (Φ(y) - y)/h of a contracting map Φ of our own, frozen at h_train at
  h = 0. Every explicit Runge–Kutta step of it is independent of h (each stage is
  y + Σ a_ij·(Φ(Y_j) - Y_j)), so the error estimate does not depend on h (k_a = 0: a
  controller has no restoring force), and the step map's multipliers at Φ's fixed point y* are
  R(μ - 1), R the solver's stability polynomial and μ the eigenvalues of DΦ(y*).
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from analysis.systems import System

A = jnp.array([[-0.1, 1.0], [-1.0, -0.1]])  # a damped rotation: eigenvalues -0.1 ± i


class TanhNet(eqx.Module):
    """f(y, h) = W2·tanh(W1·y + w_h·h + b1) + A·y with fixed seeded weights."""

    w1: jax.Array
    wh: jax.Array
    b1: jax.Array
    w2: jax.Array

    def __call__(self, t, y, args, h):
        return self.w2 @ jnp.tanh(self.w1 @ y + self.wh * h + self.b1) + A @ y


def _net(width=8, seed=0):
    r = np.random.default_rng(seed)
    return TanhNet(
        w1=jnp.asarray(r.normal(0, 0.5, (width, 2))),
        wh=jnp.asarray(r.normal(0, 1.0, width)),
        b1=jnp.asarray(r.normal(0, 0.1, width)),
        w2=jnp.asarray(r.normal(0, 0.3 / np.sqrt(width), (2, width))),
    )


def hypersolver_field(t, y, args, h):
    """A·y + h²·A³·y/6: Heun's missing z³/6 term, learned exactly."""
    return A @ y + h**2 * (A @ (A @ (A @ y))) / 6


H_TRAIN = 0.5


def contracting_map(y):
    """Φ: a contracting map of the plane with its fixed point at the origin."""
    return jnp.stack([0.5 * y[0] + 0.2 * jnp.sin(y[1]), -0.4 * y[1] + 0.3 * y[0] ** 2])


def lifted_field(t, y, args, h):
    """(Φ(y) - y)/h, and (Φ(y) - y)/h_train at h = 0 (no limit exists)."""
    h = jnp.where(h == 0, H_TRAIN, h)
    return (contracting_map(y) - y) / h


h_input_mlp = System(
    name="tanh net reading h", vector_field=_net(), y0=jnp.array([1.0, 0.5]), t1=6.0
)
hypersolver = System(name="Heun hypersolver", vector_field=hypersolver_field,
                     y0=jnp.array([1.0, 0.0]), t1=6.0)  # fmt: skip
lifted_map = System(name="lifted contracting map", vector_field=lifted_field,
                    y0=jnp.array([0.8, -0.6]), t1=10.0, frozen_h=H_TRAIN)  # fmt: skip
