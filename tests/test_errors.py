"""The float32 warning: measurements started without x64 say so and say how to fix it."""

import subprocess
import sys
import textwrap

from helpers import checkout_env


def test_a_sweep_in_float32_warns_and_names_the_fix():
    code = textwrap.dedent(
        """
        import warnings
        import jax
        jax.config.update("jax_enable_x64", False)
        import analysis
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            analysis.sweep("linear", "Euler", dt0=[0.1])
        msgs = [str(w.message) for w in caught if issubclass(w.category, analysis.PrecisionWarning)]
        assert msgs and "jax_enable_x64" in msgs[0], msgs
        print("warned")
        """
    )
    env = checkout_env({"PATH": "", "JAX_PLATFORMS": "cpu"})
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300
    )
    assert out.returncode == 0, out.stderr
    assert "warned" in out.stdout
