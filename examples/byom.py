"""Bring your own model: a step-dependent field of your own through the four measurements.

Run: python examples/byom.py [--quick]
"""

import sys

import jax

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp
import pandas as pd

import analysis
from analysis import convergence, discrete, plotting, stability, tolerance
from analysis.systems import System


def my_field(t, y, args, h):
    """A damped oscillator whose damping the model 'learned' at its training step."""
    return jnp.stack([y[1], -y[0] - (0.3 + 2.0 * h) * y[1]])


model = System(
    name="my_model", vector_field=my_field, y0=jnp.array([1.0, 0.0]), t1=5.0, h_dependent=True
)
quick = "--quick" in sys.argv
steps = [5.0 / n for n in ((25, 50, 100) if quick else (25, 35, 50, 70, 100, 140, 200))]

# 1. Convergence: observed order towards the h -> 0 limit (a reference solve of my_field at h=0).
result = convergence.measure(model, ["Euler", "Heun", "Tsit5"], dt0=steps)
print(result.fits[["solver", "order", "ci_low", "ci_high", "nominal_order"]])
figure = plotting.error_vs_step(result, title="my_model: error against h")
figure.savefig("my_model_convergence.png", dpi=200)  # your first figure of your own model

# 2. Stability: fixed points of the one-step map at the training step, and their multipliers.
print(stability.fixed_points(model, "Heun", 0.5, [(-2, 2), (-2, 2)]).iloc[:, :6])

# 3. Controller sensitivity: how far y(T) moves across controllers at each tolerance.
runs = [analysis.sweep(model, "Tsit5", controller=c, rtol=[1e-3, 1e-6]) for c in ("I", "PI34")]
print(tolerance.spread(pd.concat(runs)).spread)

# 4. The model as a map at its training step against its limit ODE.
gap = discrete.compare(model, discrete.to_map(model, "Euler", 0.25), 0.25, horizon=5.0)
print(gap[["t", "error"]].tail(3))
