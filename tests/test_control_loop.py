"""analysis.control_loop: the closed-loop polynomial against closed forms and against the
recursion it comes from; the error exponent against models whose exponent is known exactly
(y' = -y, a time-rescaled field h^m·g, a lifted map); predicted against measured behaviour."""

import equinox as eqx
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from analysis import InvalidArgument, control_loop, controller, systems
from analysis.plotting.control_loop import plot_loop
from analysis.prepare import prepare

# ----------------------------------------------------------------------------- the polynomial


@pytest.mark.parametrize("gain", [0.0, 0.25, 1.0, 1.5, 2.0, 3.0])
def test_the_I_controller_has_the_single_pole_one_minus_gain(gain):
    poles = np.sort_complex(controller.closed_loop_poles("I", gain=gain))
    np.testing.assert_allclose(poles, np.sort_complex([0, 0, 1 - gain]), atol=1e-12)


@pytest.mark.parametrize("name", list(controller.PRESETS))
def test_gain_one_is_the_design_and_gain_zero_has_a_root_at_one(name):
    np.testing.assert_array_equal(
        controller.closed_loop_poles(name, gain=1.0), controller.closed_loop_poles(name)
    )
    # P_0(1) = 1 + (α2 - 1) + (α3 - α2) - α3 = 0 for every filter: no restoring force.
    assert np.min(np.abs(controller.closed_loop_poles(name, gain=0.0) - 1)) < 1e-6


def test_h211b_at_gain_three_has_poles_zero_and_plus_minus_i_over_root_two():
    # q³ + (3/4 - 1 + 1/4) q² + (3/4 - 1/4) q = q (q² + 1/2)
    got = np.sort_complex(controller.closed_loop_poles("H211b", gain=3.0))
    np.testing.assert_allclose(
        got, np.sort_complex([0, 1j / np.sqrt(2), -1j / np.sqrt(2)]), atol=1e-12
    )


@pytest.mark.parametrize("name, gain", [("PI34", 0.5), ("H312b", 3.0), ("H321", 1.7)])
def test_the_poles_are_the_growth_rates_of_the_filter_recursion(name, gain):
    # Iterate the filter itself on log h under log e = γ·k·log h (k = 1: β_i = kβ_i) and
    # compare the asymptotic growth of a generic deviation with the spectral radius.
    p = controller.PRESETS[name]
    (b1, b2, b3), (a2, a3) = p.kbeta, p.alpha
    u = [0.3, -0.2, 0.1]  # u_{n-2}, u_{n-1}, u_n
    for _ in range(400):
        e = [gain * x for x in u]  # log e of the three steps
        nxt = u[2] - (b1 * e[2] + b2 * e[1] + b3 * e[0]) - a2 * (u[2] - u[1]) - a3 * (u[1] - u[0])
        u = [u[1], u[2], nxt]
    radius = np.max(np.abs(controller.closed_loop_poles(name, gain=gain)))
    norm = np.linalg.norm(u)
    for _ in range(20):
        e = [gain * x for x in u]
        nxt = u[2] - (b1 * e[2] + b2 * e[1] + b3 * e[0]) - a2 * (u[2] - u[1]) - a3 * (u[1] - u[0])
        u = [u[1], u[2], nxt]
    assert (np.linalg.norm(u) / norm) ** (1 / 20) == pytest.approx(radius, rel=0.05)


def test_predicted_labels_follow_the_dominant_pole():
    labels = [
        control_loop.predict(controller.closed_loop_poles("I", gain=g))
        for g in (0.5, 1.0, 1.5, 0.0, 2.5)
    ]
    assert labels == ["smooth", "smooth", "oscillates", "drifts", "diverges"]


# ----------------------------------------------------------------------------- models


class Rescaled(eqx.Module):
    """h^m·(y2, -y1): a rotation whose time runs at h^m. An explicit RK step of size h on it is
    the RK step of the rotation with step H = h^(1+m), so its error estimate is φ·H^k."""

    m: jnp.ndarray

    def __call__(self, t, y, args, h):
        h = jnp.where(h == 0, 0.1, h)  # h = 0 only outside steps (initial step selection)
        return h**self.m * jnp.stack([y[1], -y[0]])


def rescaled(m: float) -> systems.System:
    return systems.System(
        name=f"rescaled(m={m})",
        vector_field=Rescaled(jnp.asarray(m)),
        y0=jnp.array([1.0, 0.0]),
        t1=50.0,
    )


def phi(y):
    return 0.5 * y + 0.1 * jnp.sin(y)


def lifted() -> systems.System:
    return systems.get("lifted_map", map=phi, y0=1.0, h_train=0.1, steps=100)


def _states(h, n=3):
    return [(0.0, jnp.asarray(1.0), h * 2.0**i) for i in range(n)]


# ----------------------------------------------------------------------------- exponents


def test_heun_on_linear_decay_has_exponent_two_and_tsit5_five_asymptotically():
    # Heun − Euler on y' = -y is z²/2·y exactly (z = -h): e ∝ h² up to the scale's |y1|.
    heun = control_loop.error_exponent("linear", "Heun", _states(1e-3), rtol=1e-6)
    np.testing.assert_allclose(heun["slope"], 2.0, atol=1e-6)
    assert (heun["assumed_k"] == 2).all() and heun["gain"].to_numpy() == pytest.approx(1.0)
    tsit = control_loop.error_exponent("linear", "Tsit5", _states(0.02), rtol=1e-10)
    np.testing.assert_allclose(tsit["slope"], 5.0, rtol=0.01)
    assert (tsit["assumed_k"] == 5).all()
    assert (tsit["slope_lo"] <= tsit["slope"]).all() and (tsit["slope"] <= tsit["slope_hi"]).all()


def test_the_rescaled_field_scales_the_exponent_by_one_plus_m():
    # Heun on a rotation: |y_err| = H²/2·|y| exactly, H = h^(1+m): slope 2(1 + m).
    y = jnp.array([1.0, 0.0])
    for m in (-0.5, 2.0):
        rows = control_loop.error_exponent(
            rescaled(m), "Heun", [(0.0, y, 0.2), (3.0, y, 0.05)], rtol=1e-6
        )
        np.testing.assert_allclose(rows["slope"], 2 * (1 + m), rtol=1e-6)
        np.testing.assert_allclose(rows["gain"], 1 + m, rtol=1e-6)


def test_every_step_of_a_lifted_map_is_independent_of_h():
    p = prepare(lifted(), "Tsit5")
    y1 = [float(p.step(jnp.asarray(1.0), h)[0]) for h in (0.01, 0.1, 0.7)]
    assert y1 == pytest.approx([y1[0]] * 3, rel=1e-14)
    rows = control_loop.error_exponent(lifted(), "Tsit5", _states(0.05), rtol=1e-6)
    assert np.abs(rows["slope"]).max() < 1e-9  # round-off


def test_retry_pairs_cancel_phi():
    steps = pd.DataFrame(
        {
            "controller": "I",
            "step": [0, 1, 2, 3],
            "t0": [0.0, 0.0, 0.0, 0.5],
            "h": [1.0, 0.5, 0.25, 0.25],
            "error": [64.0, 2.0, 0.0625, 0.5],
            "accepted": [False, False, True, True],
        }
    )
    assert control_loop.retry_exponents(steps)["exponent"].tolist() == [5.0, 5.0]


# ----------------------------------------------------------------------------- the loop


@pytest.fixture(scope="module")
def linear_loop():
    return control_loop.loop_analysis(
        systems.get("linear", t1=5.0), "Heun", ["I", "H211b"], rtol=1e-6
    )


def test_an_h_free_field_closes_the_loop_at_gain_one(linear_loop):
    rows = linear_loop.presets.set_index("preset")
    assert rows["gain"].to_numpy() == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose(linear_loop.exponents["slope"], 2.0, atol=1e-6)
    assert rows["retry_k"].to_numpy() == pytest.approx(2.0, abs=1e-3)  # where retries exist
    assert (rows["predicted"] == "smooth").all() and (rows["measured"] == "smooth").all()
    assert rows["agrees"].all() and rows["successful"].all()
    assert rows.loc["I", "radius"] == pytest.approx(0.0, abs=1e-5)


@pytest.fixture(scope="module")
def fast_time():
    return control_loop.loop_analysis(rescaled(2.0), "Tsit5", ["I", "H211b"], rtol=1e-6)


def test_gain_three_makes_the_I_controller_alternate(fast_time):
    rows = fast_time.presets.set_index("preset")
    gain = rows.loc["I", "gain"]
    assert gain == pytest.approx(3.0, rel=0.05)  # k_a = 5·(1 + 2) = 15
    assert rows.loc["I", "measured_k"] == pytest.approx(15.0, rel=0.05)
    # I: P = q²(q - (1 - γ)): the pole 1 - γ ≈ -2 predicts a growing alternation of log h.
    assert rows.loc["I", "pole1_re"] == pytest.approx(1 - gain, abs=1e-9)
    assert rows.loc["I", "predicted"] == "diverges"
    # The clips bound it: accepted and rejected steps alternate, Δ log h flips sign each step.
    assert rows.loc["I", "autocorrelation"] < -0.8
    assert rows.loc["I", "rejection_rate"] == pytest.approx(0.5, abs=0.05)
    assert rows.loc["I", "measured"] == "oscillates" and rows.loc["I", "agrees"]
    # H211b: q(q² + (γ/4 - 3/4)q + γ/4 - 1/4), |q| ≈ 0.7 at γ ≈ 3: stable, and so it runs.
    assert rows.loc["H211b", "radius"] == pytest.approx(np.sqrt(0.5), abs=0.03)
    assert rows.loc["H211b", "predicted"] == rows.loc["H211b", "measured"] == "smooth"
    assert rows.loc["H211b", "rejection_rate"] < 0.05


def test_gain_one_half_is_smooth_and_slower():
    loop = control_loop.loop_analysis(rescaled(-0.5), "Tsit5", ["I", "PI34"], rtol=1e-6)
    rows = loop.presets.set_index("preset")
    assert rows.loc["I", "gain"] == pytest.approx(0.5, rel=0.05)  # k_a = 5/2
    assert rows.loc["I", "radius"] == pytest.approx(1 - rows.loc["I", "gain"], abs=1e-9)
    assert rows.loc["PI34", "radius"] > rows.loc["PI34", "design_radius"]  # slower than 0.8
    assert (rows["predicted"] == "smooth").all() and (rows["measured"] == "smooth").all()
    assert rows["agrees"].all()


def test_a_lifted_map_has_gain_zero_and_its_steps_drift():
    accepted = control_loop.loop_analysis(lifted(), "Tsit5", ["I", "H211b"], rtol=1e-3)
    rejected = control_loop.loop_analysis(lifted(), "Tsit5", ["I", "H211b"], rtol=1e-6)
    for loop in (accepted, rejected):
        rows = loop.presets.set_index("preset")
        assert np.abs(rows["gain"]).max() < 1e-9
        assert (rows["predicted"] == "drifts").all() and rows["agrees"].all()
    # Errors far below the set point at rtol = 1e-3: every step grows h, none is rejected.
    acc = accepted.presets.set_index("preset")
    assert (acc["trend"] == 1.0).all() and (acc["rejection_rate"] == 0).all()
    # Above it at 1e-6: every attempt is rejected and retried smaller, with the same error, so
    # the retry exponent is exactly 0, until the step limit.
    rej = rejected.presets.set_index("preset")
    assert (rej["accepted"] == 0).all() and rej["hit_max_steps"].all()
    assert (rej["retry_k"] == 0).all() and (rej["retries"] > 100).all()


def test_plot_loop_draws_the_result_and_its_tables(fast_time):
    for loop in (fast_time, control_loop.LoopAnalysis.from_tables(fast_time.tables())):
        fig = plot_loop(loop)
        assert [ax.get_title() for ax in fig.axes[:2]] == [
            "I: diverges / oscillates",
            "H211b: smooth / smooth",
        ]
        assert len(fig.axes) == 4
    with pytest.raises(InvalidArgument, match="LoopAnalysis"):
        plot_loop(fast_time.presets)


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"presets": ["I", "PI43"]}, "PI43"),
        ({"presets": []}, "presets"),
        ({"solver": "Euler"}, "solver='Euler'"),
        ({"rtol": 0.0}, "rtol=0.0"),
        ({"rtol": float("nan")}, "rtol=nan"),
        ({"atol": -1.0}, "atol=-1.0"),
        ({"reference": "XYZ"}, "reference"),
        ({"samples": 0}, "samples=0"),
    ],
)
def test_bad_input_is_refused_before_compiling(kwargs, match):
    args = {"system": "linear", "solver": "Tsit5", "presets": ["I"], "rtol": 1e-6} | kwargs
    with pytest.raises(InvalidArgument, match=match):
        control_loop.loop_analysis(**args)


def test_bad_gain_and_probes_are_refused():
    with pytest.raises(InvalidArgument, match="gain=-0.5"):
        controller.closed_loop_poles("I", gain=-0.5)
    with pytest.raises(InvalidArgument, match="gain=inf"):
        controller.closed_loop_poles("I", gain=float("inf"))
    with pytest.raises(InvalidArgument, match="octaves"):
        control_loop.error_exponent("linear", "Heun", _states(0.1), rtol=1e-6, octaves=(0, 0))
    with pytest.raises(InvalidArgument, match="solver='Euler'"):
        control_loop.error_exponent("linear", "Euler", _states(0.1), rtol=1e-6)
