"""Test configuration: every test runs in float64, as every measurement in this toolkit does."""

import jax

jax.config.update("jax_enable_x64", True)
