"""Diagnose a step-dependent model of your own: one call, one HTML report, a verdict.

Run: python examples/diagnose_my_model.py [--quick]   (--quick: two sections, a smoke test)
 or: stepdep diagnose examples/diagnose_my_model.py:model --quick   (every section, quick sizes)
"""

import sys

import jax

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp

from analysis import diagnose, diagnosis
from analysis.systems import System


def my_field(t, y, args, h):
    """A damped oscillator whose damping the model 'learned' at its training step."""
    return jnp.stack([y[1], -y[0] - (0.3 + 2.0 * h) * y[1]])


model = System(name="my_model", vector_field=my_field, y0=jnp.array([1.0, 0.0]), t1=5.0)

if __name__ == "__main__":
    quick = "--quick" in sys.argv
    sections = ("convergence", "formulations") if quick else diagnosis.SECTIONS
    d = diagnose(model, h=0.1, quick=quick, sections=sections)  # trained at h = 0.1
    print(d.verdict[["question", "answer"]].to_string(index=False))
    print("report:", d.save("my_model_diagnosis"))  # report.html + every table as parquet
