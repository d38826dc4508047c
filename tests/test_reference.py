"""References in float32: a tolerance the dtype can meet, said so in the rows, and a failed
reference solve that leaves the rows with their statuses and NaN errors instead of raising."""

import json
import subprocess
import sys
import textwrap

import jax.numpy as jnp
import numpy as np
from helpers import checkout_env

import analysis
from analysis import convergence, reference, systems

# Runs without x64 (float32), as a new user's first try would.
_FLOAT32_RUN = textwrap.dedent(
    """
    import json, warnings
    import jax.numpy as jnp
    import analysis
    from analysis import convergence
    from analysis.systems import System

    damped = System(
        name="p32",
        vector_field=lambda t, y, args, h: jnp.stack([y[1], -y[0] - 0.3 * y[1]]),
        y0=jnp.array([1.0, 0.0], jnp.float32),
        t1=5.0,
        h_dependent=True,
    )
    out = {}
    for call in ("sweep", "measure"):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if call == "sweep":
                df = analysis.sweep(damped, ["Euler", "Heun"], dt0=[0.1, 0.05, 0.025])
            else:
                df = convergence.measure(damped, ["Euler", "Heun"], dt0=[0.1, 0.05, 0.025]).rows
        out[call] = dict(
            warnings=[w.category.__name__ for w in caught],
            messages=[str(w.message) for w in caught],
            status=df["status"].tolist(),
            error=[float(e) for e in df["error"]],
            error_source=df["error_source"].tolist(),
        )
    print(json.dumps(out))
    """
)


def test_float32_measurements_warn_and_return_rows_with_a_float32_reference():
    run = subprocess.run(
        [sys.executable, "-c", _FLOAT32_RUN],
        capture_output=True,
        text=True,
        timeout=600,
        env=checkout_env({"PATH": "", "JAX_PLATFORMS": "cpu"}),  # no JAX_ENABLE_X64
    )
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    for call, res in out.items():
        assert res["warnings"] == ["PrecisionWarning"], (call, res["messages"])  # one, not three
        assert " is computed in float32" in res["messages"][0]
        assert "jax_enable_x64" in res["messages"][0]
        assert res["status"] == ["ok"] * 6
        err = np.array(res["error"])
        for e, source in zip(err, res["error_source"], strict=True):
            # finite against a reference that says it is float32, or NaN with a reason
            assert (np.isfinite(e) and "float32" in source) or (
                np.isnan(e) and source.startswith(("none (", "limit: none ("))
            ), (call, e, source)
        assert np.isfinite(err).all(), res["error_source"]  # this reference solve succeeds
        assert "rtol=1.2e-05" in res["error_source"][0]  # 100 eps of float32
    # Euler's errors halve with h: the float32 reference is accurate far beyond them.
    euler = np.array(out["sweep"]["error"][:3])
    assert np.all(np.abs(euler[:-1] / euler[1:] - 2) < 0.3)
    assert abs(euler[0] - 0.119882) < 1e-4  # float64 measurement: 0.1198816...


def test_float64_reference_settings_are_unchanged():
    assert reference.REFERENCE_SETTINGS == {
        "nonstiff": ("Dopri8", 1e-13),
        "stiff": ("Kvaerno5", 1e-12),
    }
    assert reference.settings(systems.get("lotka_volterra")) == ("Dopri8", 1e-13, 100 * 1e-13, "")
    stiff = systems.get("van_der_pol", mu=1000.0)
    assert reference.settings(stiff) == ("Kvaerno5", 1e-12, 100 * 1e-12, "")
    df = analysis.sweep("lotka_volterra", "Heun", dt0=[0.1])
    assert df["error_source"].iloc[0] == "reference"


def test_a_float32_state_gets_a_tolerance_of_100_eps():
    decay32 = systems.System(
        name="decay32", vector_field=lambda t, y, a, h: -y, y0=jnp.array([1.0], jnp.float32)
    )
    name, rtol, looser, note = reference.settings(decay32)
    eps = float(np.finfo(np.float32).eps)
    assert name == "Dopri8" and rtol == reference.EPS_FACTOR * eps and looser == 10 * rtol
    assert note.startswith("float32 reference")


def test_a_failed_reference_solve_gives_nan_errors_with_a_reason_in_measure_too():
    blowup = systems.System(
        name="blowup_measure", vector_field=lambda t, y, a, h: y**2, y0=np.float64(1.0), t1=2.0
    )
    result = convergence.measure(blowup, "Euler", dt0=[0.1, 0.05])
    df = result.rows
    assert df["status"].tolist() == ["ok", "nonfinite"]  # each run keeps its own status
    assert df["error"].isna().all()
    assert df["target"].iloc[0].startswith("limit: none (reference solve failed")
    assert (df["error_source"] == df["target"]).all()
    fit = result.fits
    assert np.isnan(fit["order"].iloc[0]) and fit["status"].iloc[0] != "ok"
    assert "reference solve failed" in fit["reason"].iloc[0]


def test_an_exact_solution_in_numpy_or_jax_is_the_reference_exactly():
    """The exact solution is evaluated compiled where it traces, and as it is where it is
    written for concrete numbers (numpy on a float t)."""
    from analysis.systems import System

    field = lambda t, y, args, h: -y  # noqa: E731
    in_numpy = System(name="np_exact", vector_field=field, y0=1.0, exact=lambda t: np.exp(-t))
    in_jax = System(name="jax_exact", vector_field=field, y0=1.0, exact=lambda t: jnp.exp(-t))
    for system in (in_numpy, in_jax):
        ref = reference.final_state(system)
        assert ref.source == "exact" and abs(float(ref.y) - np.exp(-1.0)) <= 2.3e-16 * 0.37
