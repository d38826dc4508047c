"""The diffrax internals this toolkit relies on, in one named place (diffrax 0.7).

Each is something diffrax does not re-export; `tests/test_diffrax_private.py` pins the behaviour
relied on, so a diffrax release that changes it fails there, not as a wrong number elsewhere.

- `WrapTerm`: diffeqsolve wraps every term in it when t1 < t0 (reverse time), with
  ``direction = -1``; `analysis.stepdep.bind_step` looks through it to hand the signed h on.
- `USE_STEPSIZE_TOL`: the sentinel an implicit solver's root finder holds as rtol/atol/norm
  until a step-size controller fills it in; `analysis.solvers.for_fixed_steps` replaces it at
  constant steps (where no controller would).
- `result_code(result)`: the integer code of a `diffrax.RESULTS` value (traced or not), the
  form in which a batch of solves returns its outcomes; `analysis.batch.status_of` reads it.

Examples:
    >>> import diffrax
    >>> int(result_code(diffrax.RESULTS.successful))
    0
"""

from diffrax._root_finder import use_stepsize_tol as USE_STEPSIZE_TOL  # noqa: F401 (re-export)
from diffrax._term import WrapTerm as WrapTerm

__all__ = ["result_code"]  # and the re-exported WrapTerm, USE_STEPSIZE_TOL (diffrax's)


def result_code(result):
    """The integer code of a `diffrax.RESULTS` value (an int array when traced or batched).

    Examples:
        >>> import diffrax
        >>> int(result_code(diffrax.RESULTS.max_steps_reached)) > 0
        True
    """
    return result._value
