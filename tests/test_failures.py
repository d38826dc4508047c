"""Failures during a solve are data: a status per row, fits that leave failed rows out and say
so, and a step bound that holds in float32 too."""

import subprocess
import sys
import textwrap

import numpy as np

import analysis
from analysis import convergence, systems


def test_every_failure_kind_is_a_row_with_its_status_and_the_other_rows_survive():
    blowup = analysis.sweep(systems.get("linear", lam=100.0, t1=100.0), "Euler", dt0=[0.5, 0.001])
    assert list(blowup["status"]) == ["nonfinite", "ok"]
    assert np.isnan(blowup["error"].iloc[0]) and not np.isfinite(blowup["y_final_0"].iloc[0])
    capped = analysis.sweep(
        "lotka_volterra", "Tsit5", controller="I", rtol=[1e-3, 1e-12], max_steps=100
    )
    assert list(capped["status"]) == ["ok", "max_steps"]
    floored = analysis.sweep(
        systems.get("van_der_pol", mu=1000.0, t1=10.0),
        "Tsit5",
        controller="PI34",
        rtol=[1e-6],
        controller_options={"dtmin": 1e-2, "force_dtmin": False},
    )
    assert list(floored["status"]) == ["dt_below_min"]


def test_an_implicit_solve_whose_newton_iteration_fails_is_a_row():
    # Implicit Euler on y' = y² from y(0) = 1 at h = 0.6: h·y_{n+1}² - y_{n+1} + 1 = 0 has no
    # real root once 4h > 1, so Newton cannot converge; the smaller step stays solvable.
    square = systems.System(
        name="square", vector_field=lambda t, y, a, h: y**2, y0=np.float64(1.0), t1=0.6
    )
    df = analysis.sweep(square, "ImplicitEuler", dt0=[0.6, 0.01])
    assert list(df["status"]) == ["implicit_nonconvergence", "ok"]


def test_fits_leave_failed_rows_out_and_say_how_many():
    h = np.array([0.4, 0.2, 0.1, 0.05, 0.025, 0.0125])
    err = 2.0 * h**2
    status = np.array(["nonfinite", "ok", "ok", "max_steps", "ok", "ok"])
    fit = convergence.fit_order(h, np.where(status == "ok", err, np.inf), status=status)
    assert fit.n_failed == 2 and abs(fit.order - 2) < 1e-9
    few = convergence.fit_order(h[:2], err[:2])
    assert few.status == "too_few_points" and np.isnan(few.order) and few.reason


def test_max_steps_is_bounded_in_float32_as_well():
    code = textwrap.dedent(
        """
        import warnings
        import jax
        jax.config.update("jax_enable_x64", False)
        warnings.simplefilter("ignore")
        import analysis
        df = analysis.sweep("lotka_volterra", "Tsit5", controller="PI34", rtol=[1e-12])
        print(df["status"].iloc[0], df["num_steps"].iloc[0])
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=600,
        env={"PATH": "", "JAX_PLATFORMS": "cpu"},
    )
    assert out.returncode == 0, out.stderr[-2000:]
    status, steps = out.stdout.split()
    assert (
        status in {"max_steps", "ok"} and int(steps) <= analysis._sweep.DEFAULT_ADAPTIVE_MAX_STEPS
    )
