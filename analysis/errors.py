"""The toolkit's exception and its float32 warning.

Errors knowable before tracing (a negative step, an unknown solver name) are raised as
`InvalidArgument`, a ValueError whose message names the argument, the value and what is valid.
"""

from __future__ import annotations

import warnings

import jax

__all__ = ["InvalidArgument", "PrecisionWarning", "warn_if_float32"]


class InvalidArgument(ValueError):
    """Bad input, detected before anything is compiled."""


class PrecisionWarning(UserWarning):
    """A measurement is about to run in float32, where round-off dominates."""


def warn_if_float32(what: str) -> None:
    """Warn that `what` (a convergence or stability measurement) runs in float32."""
    if not jax.config.read("jax_enable_x64"):
        warnings.warn(
            f"{what} is computed in float32, where round-off (~1e-7) dominates small errors. "
            "Enable float64 first: jax.config.update('jax_enable_x64', True) "
            "(or set JAX_ENABLE_X64=1).",
            PrecisionWarning,
            stacklevel=3,
        )
