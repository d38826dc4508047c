"""Step-size controller presets in Söderlind's digital-filter form, as diffrax controllers.

A controller with filter coefficients (kβ1, kβ2, kβ3 | α2, α3) chooses the next step as

    h_{n+1} = h_n · ρ_n^{β1} · ρ_{n-1}^{β2} · ρ_{n-2}^{β3}
              · (h_n/h_{n-1})^{-α2} · (h_{n-1}/h_{n-2})^{-α3}

with ρ_n = 1/‖scaled error of step n‖ and β_i = (kβ_i)/k, k the error-estimator order (Söderlind,
"Digital filters in adaptive time-stepping", ACM TOMS 29, 2003). diffrax's PIDController is the
α = 0 case with β1 = pcoeff + icoeff + dcoeff, β2 = -(pcoeff + 2·dcoeff), β3 = dcoeff, so
dcoeff = kβ3, pcoeff = -kβ2 - 2·kβ3, icoeff = kβ1 + kβ2 + kβ3.

Example:
    >>> from analysis import controllers
    >>> c = controllers.make("PI34", rtol=1e-6, atol=1e-8)
    >>> float(c.pcoeff), float(c.icoeff)
    (0.4, 0.3)
"""

from __future__ import annotations

import dataclasses
import difflib

import diffrax

from .errors import InvalidArgument

__all__ = ["Preset", "PRESETS", "make", "FIXED"]

#: The name sweeps use for constant step sizes.
FIXED = "fixed"


@dataclasses.dataclass(frozen=True)
class Preset:
    """A named controller: Söderlind coefficients, where they come from, what they do."""

    name: str
    kbeta: tuple[float, float, float]
    alpha: tuple[float, float]
    source: str

    @property
    def pid(self) -> dict[str, float]:
        """The same filter as diffrax PIDController coefficients (valid when α = 0)."""
        b1, b2, b3 = self.kbeta
        return {"pcoeff": -b2 - 2 * b3, "icoeff": b1 + b2 + b3, "dcoeff": b3}


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in [
        Preset("I", (1.0, 0.0, 0.0), (0.0, 0.0), "elementary (deadbeat) integral controller"),
        Preset("PI42", (3 / 5, -1 / 5, 0.0), (0.0, 0.0), "Söderlind 2003, PI.4.2"),
        Preset("PI33", (2 / 3, -1 / 3, 0.0), (0.0, 0.0), "Söderlind 2003, PI.3.3"),
        Preset("PI34", (7 / 10, -4 / 10, 0.0), (0.0, 0.0), "Gustafsson 1991, PI.3.4"),
        Preset("H211PI", (1 / 6, 1 / 6, 0.0), (0.0, 0.0), "Söderlind 2003, H211PI"),
        Preset("H312PID", (1 / 18, 1 / 9, 1 / 18), (0.0, 0.0), "Söderlind 2003, H312PID"),
    ]
}


def preset(name: str) -> Preset:
    """The preset called `name`; InvalidArgument lists the valid names otherwise."""
    if name not in PRESETS:
        close = difflib.get_close_matches(str(name), list(PRESETS), n=3)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise InvalidArgument(
            f"controller={name!r} is not a preset.{hint} Valid presets: {', '.join(PRESETS)}"
        )
    return PRESETS[name]


def make(name: str, rtol, atol, **overrides) -> diffrax.AbstractStepSizeController:
    """A diffrax step-size controller for preset `name` at tolerances rtol, atol.

    `overrides` go to the controller (e.g. dtmin, dtmax, factormax, safety).
    """
    p = preset(name)
    return diffrax.PIDController(rtol=rtol, atol=atol, **{**p.pid, **overrides})
