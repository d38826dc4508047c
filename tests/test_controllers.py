"""Controller presets: Söderlind coefficients map to diffrax's PID coefficients."""

import diffrax
import pytest

from analysis import InvalidArgument, controllers


def test_pi34_is_diffrax_documented_pi_controller():
    c = controllers.make("PI34", rtol=1e-6, atol=1e-8)
    assert isinstance(c, diffrax.PIDController)
    assert (c.pcoeff, c.icoeff, c.dcoeff) == pytest.approx((0.4, 0.3, 0.0))


@pytest.mark.parametrize("name", list(controllers.PRESETS))
def test_pid_coefficients_reproduce_the_soderlind_betas(name):
    p = controllers.PRESETS[name]
    pid = p.pid
    # diffrax: β1 = p + i + d, β2 = -(p + 2d), β3 = d.
    beta = (
        pid["pcoeff"] + pid["icoeff"] + pid["dcoeff"],
        -(pid["pcoeff"] + 2 * pid["dcoeff"]),
        pid["dcoeff"],
    )
    assert beta == pytest.approx(p.kbeta)


def test_overrides_reach_the_controller_and_unknown_names_are_listed():
    c = controllers.make("I", rtol=1e-3, atol=1e-3, dtmax=0.5)
    assert c.dtmax == 0.5 and c.icoeff == 1.0
    with pytest.raises(InvalidArgument, match="Did you mean .*'PI34'.*Valid presets"):
        controllers.make("PI43", 1e-3, 1e-3)
