"""Bad input gets a clear error before anything is compiled: the argument, the value, what is valid.

`CASES` is the single list of bad inputs tried; the README's reliability table is generated from
it (`python tests/test_bad_input.py` prints it) and a test keeps the two in sync.
"""

import re
from pathlib import Path

import diffrax
import jax.numpy as jnp
import numpy as np
import pytest

import analysis
import studies
from analysis import StepTerm, controller, solvers, systems

LV = "lotka_volterra"

CASES = [
    ("step size zero", lambda: analysis.sweep("linear", "Euler", dt0=[0.0])),
    ("step size negative", lambda: analysis.sweep("linear", "Euler", dt0=[0.1, -0.1])),
    ("step size not finite", lambda: analysis.sweep("linear", "Euler", dt0=[np.inf])),
    ("step size larger than the time span", lambda: analysis.sweep("linear", "Euler", dt0=[2.0])),
    ("fixed-step sweep without dt0", lambda: analysis.sweep("linear", "Euler")),
    ("t1 not after t0", lambda: systems.get("linear").with_(t1=0.0)),
    ("rtol ≤ 0", lambda: analysis.sweep(LV, "Tsit5", controller="PI34", rtol=[0.0])),
    (
        "atol not finite",
        lambda: analysis.sweep(LV, "Tsit5", controller="PI34", rtol=[1e-3], atol=[np.nan]),
    ),
    (
        "rtol and atol of different lengths",
        lambda: analysis.sweep(LV, "Tsit5", controller="PI34", rtol=[1e-3, 1e-4], atol=[1, 2, 3]),
    ),
    (
        "unstable controller coefficients",
        lambda: controller.SoderlindController(rtol=1e-3, atol=1e-3, kbeta=(3.0, 0.0, 0.0)),
    ),
    ("dtmin > dtmax", lambda: controller.make("PI34", 1e-3, 1e-3, dtmin=1.0, dtmax=0.1)),
    ("unknown controller option", lambda: controller.make("PI34", 1e-3, 1e-3, safty=0.8)),
    (
        "adaptive controller with a solver without error estimate",
        lambda: analysis.sweep("linear", "Euler", controller="PI34", rtol=[1e-3]),
    ),
    ("y0 of the wrong shape", lambda: systems.get(LV).with_(y0=jnp.ones(3))),
    ("non-finite y0", lambda: systems.get(LV).with_(y0=jnp.array([1.0, jnp.nan]))),
    ("non-finite args", lambda: systems.get(LV).with_(args=jnp.array([1.5, 1.0, jnp.inf, 3.0]))),
    (
        "vector field returns the wrong shape",
        lambda: systems.get(LV).with_(vector_field=lambda t, y, a, h: y[0]),
    ),
    (
        "vector field with the wrong signature",
        lambda: systems.get(LV).with_(vector_field=lambda t, y, a: y),
    ),
    (
        "a field that uses h declared h-free",
        lambda: systems.get("linear").with_(
            vector_field=lambda t, y, a, h: -y + h * y, h_dependent=False
        ),
    ),
    ("unknown system name", lambda: systems.get("lotka_voltera")),
    ("unknown system parameter", lambda: systems.get("logistic", rate=2.0)),
    ("unknown solver name", lambda: solvers.get("Tsit4")),
    (
        "unknown controller preset",
        lambda: analysis.sweep(LV, "Tsit5", controller="PI43", rtol=[1e-3]),
    ),
    ("unknown study name", lambda: studies.load("convergense")),
    (
        "chunk size not a positive integer",
        lambda: analysis.sweep("linear", "Euler", dt0=[0.1], chunk_size=0),
    ),
    (
        "a chunk too large for memory",
        lambda: analysis.sweep("linear10", "Dopri8", dt0=[0.1], chunk_size=10**9),
    ),
    (
        "steps the time grid cannot represent (epoch t0)",
        lambda: analysis.sweep(
            systems.get("linear").with_(name="epoch", t0=1.7e9, t1=1.7e9 + 1e-4),
            "Euler",
            dt0=[1e-6],
        ),
    ),
    ("step size below float resolution", lambda: analysis.sweep("linear", "Euler", dt0=[1e-300])),
    (
        "max_steps beyond int32",
        lambda: analysis.sweep("linear", "Euler", dt0=[0.1], max_steps=2**64),
    ),
    (
        "rtol without an adaptive controller",
        lambda: analysis.sweep("linear", "Tsit5", dt0=[0.1, 0.05], rtol=[1e-3, 1e-6]),
    ),
    (
        "diagnose with a solver without an error estimate",
        lambda: analysis.diagnose("perturbed", solver="Euler"),
    ),
    ("diagnose of a bare field without y0", lambda: analysis.diagnose(lambda t, y, a, h: -y)),
    ("diagnose at a step longer than the span", lambda: analysis.diagnose("perturbed", h=5.0)),
    ("a negative loop gain", lambda: controller.closed_loop_poles("PI34", gain=-1.0)),
    (
        "a field that uses h under a solver that is not StepAware",
        lambda: diffrax.diffeqsolve(
            StepTerm(lambda t, y, a, h: -y + h * y), diffrax.Tsit5(), 0.0, 1.0, 0.1, 1.0
        ),
    ),
]


def _message(case) -> str:
    try:
        case()
    except ValueError as e:  # InvalidArgument, and studies.load's ValueError
        return str(e)
    raise AssertionError("no error raised")


@pytest.mark.parametrize("what, case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_refused_with_a_message_before_compiling(what, case):
    before = analysis.compile_count()
    message = _message(case)
    assert analysis.compile_count() == before
    assert len(message) > 30  # the wording itself is reviewed in the README table


def table() -> str:
    """The README's reliability table: each bad input and the message it gets."""
    rows = ["| bad input | message |", "|---|---|"]
    for what, case in CASES:
        text = re.sub(r"\s+", " ", _message(case)).replace("|", "\\|")
        text = re.sub(r"\d+\.\d GiB", "… GiB", text)  # machine-dependent numbers
        text = re.sub(r"use chunk_size=\d+", "use chunk_size=…", text)
        rows.append(f"| {what} | {text} |")
    return "\n".join(rows)


def test_the_readme_lists_every_bad_input_and_its_message():
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    assert table() in readme, "regenerate with: python tests/test_bad_input.py"


if __name__ == "__main__":
    import jax

    jax.config.update("jax_enable_x64", True)
    print(table())
