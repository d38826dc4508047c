"""Discretization effects in step-dependent systems f(t, y, args, h), on jax and diffrax.

Public entry points: `StepTerm`, `StepAware` (step-dependent solving), `systems` (the catalog),
`solvers`, `controller`, `sweep` (compiled-once grids of solves as tidy DataFrames), `diagnose`
(every measurement on one model, a verdict and an HTML report).
"""

from . import (
    chunk_store,
    control_loop,
    controller,
    convergence,
    discrete,
    distributed,
    invariants,
    models,
    neural,
    progress,
    reference,
    report,
    run_store,
    solvers,
    stability,
    step_log,
    systems,
    tolerance,
    training,
)
from ._sweep import sweep
from .batch import compile_count
from .diagnosis import diagnose
from .errors import InvalidArgument, PrecisionWarning
from .stepdep import FrozenStepTerm, StepAware, StepTerm

__all__ = [
    "StepTerm",
    "FrozenStepTerm",
    "StepAware",
    "sweep",
    "compile_count",
    "diagnose",
    "control_loop",
    "progress",
    "report",
    "systems",
    "solvers",
    "controller",
    "convergence",
    "discrete",
    "distributed",
    "invariants",
    "models",
    "neural",
    "reference",
    "chunk_store",
    "run_store",
    "stability",
    "step_log",
    "tolerance",
    "training",
    "InvalidArgument",
    "PrecisionWarning",
]
