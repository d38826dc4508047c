"""Discretization effects in step-dependent systems f(t, y, args, h), on jax and diffrax.

Public entry points: `StepTerm`, `StepAware` (step-dependent solving), `systems` (the catalog),
`solvers`, `controllers`, `sweep` (compiled-once grids of solves as tidy DataFrames).
"""

from . import (
    controllers,
    convergence,
    discrete,
    distributed,
    invariants,
    models,
    neural,
    reference,
    results,
    solvers,
    stability,
    systems,
    training,
)
from ._sweep import compile_count, sweep
from .errors import InvalidArgument, PrecisionWarning
from .stepdep import FrozenStepTerm, StepAware, StepTerm

__all__ = [
    "StepTerm",
    "FrozenStepTerm",
    "StepAware",
    "sweep",
    "compile_count",
    "systems",
    "solvers",
    "controllers",
    "convergence",
    "discrete",
    "distributed",
    "invariants",
    "models",
    "neural",
    "reference",
    "results",
    "stability",
    "training",
    "InvalidArgument",
    "PrecisionWarning",
]
