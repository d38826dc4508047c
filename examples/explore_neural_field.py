# %% [markdown]
# # Exploring a neural field that sees h
#
# A notebook in jupytext percent format: open it in Jupyter with jupytext, or run it as a script
# (`python examples/explore_neural_field.py --quick`). We train a small MLP f_θ(y, h) on a damped
# spiral through Euler at a coarse step, then ask what it learned: an ODE, or the discretization?

# %%
import sys

import jax

jax.config.update("jax_enable_x64", True)
import numpy as np

from analysis import models, neural, systems, training

QUICK = "--quick" in sys.argv
STEPS = 60 if QUICK else 400

# %% [markdown]
# ## Data: trajectories of a damped spiral (a 2-D linear system with an exact solution)

# %%
spiral = systems.get("linear10", dim=2, seed=0)
train_data = training.trajectories(spiral, 8, horizon=4.0, seed=0)
test_data = training.trajectories(spiral, 8, horizon=4.0, seed=1)

# %% [markdown]
# ## Train: the h-input model through Euler at h = 0.5

# %%
euler = training.Discretization("Euler", h=0.5)
model = models.make("h_input", spiral, seed=0)
model, losses = training.train(model, train_data, euler, steps=STEPS)
print(f"loss {float(losses[0]):.3g} -> {float(losses[-1]):.3g} after {STEPS} steps")

# %% [markdown]
# ## What did it learn? Its error under other solvers and steps (Ott et al., ICLR 2021)
#
# An ODE keeps its error as h shrinks or the solver improves; a model that learned the
# discretization gets *worse* away from its training setting.

# %%
tests = [training.Discretization("Euler", h=h) for h in (0.5, 0.25, 0.125)]
tests += [training.Discretization("Tsit5", h=0.125)]
matrix = neural.discretization_matrix(model, euler, tests, test_data).rows
print(matrix[["test_setting", "status", "error"]].to_string(index=False))

# %% [markdown]
# ## The same question for the h-free control model

# %%
control = models.make("h_free", spiral, seed=0)
control, _ = training.train(control, train_data, euler, steps=STEPS)
control_matrix = neural.discretization_matrix(control, euler, tests, test_data).rows
ratio = control_matrix["error"].max() / control_matrix["error"].min()
print(f"h-free control: error varies by a factor {ratio:.3g} across test settings")
print(
    f"h-input model:  error varies by a factor {matrix['error'].max() / matrix['error'].min():.3g}"
)
assert np.all(np.isfinite(matrix["error"]))
