"""Shared registries and small utilities for the tests."""

import os
from pathlib import Path

import diffrax
import jax

from analysis import solvers, systems
from analysis.convergence import log_slope

#: The checkout under test (the folder holding analysis/, studies/, tests/).
ROOT = Path(__file__).resolve().parent.parent

#: Every solver the foundation supports, by registry name.
ALL_SOLVERS = solvers.NAMES
ADAPTIVE_SOLVERS = tuple(n for n in ALL_SOLVERS if solvers.info(n).adaptive)
EXPLICIT_RK = solvers.EXPLICIT_RK
ALL_SYSTEMS = tuple(systems.names())


def checkout_env(base=None, **extra) -> dict:
    """The environment for a child Python process (`base`, default this one's, plus `extra`)
    with this checkout first on PYTHONPATH, so the child runs the code under test and not an
    installed copy of the package."""
    env = dict(os.environ if base is None else base)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


def fit_slope(h, err):
    """Least-squares slope of log(err) against log(h) (never assumes the steps halve)."""
    return log_slope(h, err).slope


class EvaluationLog:
    """Records, through jax.debug.callback, the h of every evaluation of a step-dependent field."""

    def __init__(self, field):
        self.hs = []
        self._field = field

    def field(self, t, y, args, h):
        jax.debug.callback(lambda hh: self.hs.append(float(hh)), h, ordered=True)
        return self._field(t, y, args, h)


def fixed_solver(name):
    """A solver by name, ready for constant steps (implicit ones get root-finder tolerances)."""
    return solvers.for_fixed_steps(solvers.get(name))


__all__ = [
    "ALL_SOLVERS",
    "ADAPTIVE_SOLVERS",
    "EXPLICIT_RK",
    "ALL_SYSTEMS",
    "fit_slope",
    "EvaluationLog",
    "fixed_solver",
    "diffrax",
]
