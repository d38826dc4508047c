"""analysis.training: true trajectories, discretizations, training through a solve."""

import equinox as eqx
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.linalg import expm

from analysis import InvalidArgument, models, systems, training

SPIRAL = systems.get("linear10", dim=2, seed=0)  # eigenvalues -0.61 ± 0.46i: a damped spiral
A = np.asarray(SPIRAL.args)
EULER = training.Discretization("Euler", h=1.0)
TRACES = []  # one entry per trace of Rate.__call__, i.e. per compilation that calls it


class Rate(eqx.Module):
    """y' = -rate·y: one trainable number."""

    rate: jnp.ndarray

    def __call__(self, t, y, h):
        TRACES.append(1)
        return -self.rate * y


@pytest.fixture(scope="module")
def data():
    return training.trajectories(SPIRAL, 8, horizon=6.0, saves=7, seed=0)


def test_trajectories_are_the_exact_linear_flow(data):
    expected = np.stack([[expm(A * t) @ y0 for t in data.ts] for y0 in data.y0])
    np.testing.assert_allclose(data.ys, expected, atol=1e-10)


def test_euler_solve_is_the_power_of_the_step_factor():
    """Euler on y' = -y(1 + h): y_n = (1 - h - h²)^n·y0."""
    ys, code, steps = training.solve(
        lambda t, y, h: -y * (1 + h), "Euler", "fixed", 0.25, jnp.array([2.0]), jnp.arange(3.0), 8
    )
    np.testing.assert_allclose(ys[:, 0], 2.0 * (1 - 0.25 - 0.0625) ** np.array([0, 4, 8]))
    assert int(code) == 0 and int(steps) == 8


def test_training_reduces_the_loss_and_is_deterministic(data):
    model = models.make("h_input", SPIRAL, width=8)
    trained, losses = training.train(model, data, EULER, steps=60)
    assert np.all(np.isfinite(losses)) and losses[-1] < 0.2 * losses[0]
    again, repeat = training.train(model, data, EULER, steps=60)
    np.testing.assert_array_equal(losses, repeat)


def test_training_a_module_of_my_own_finds_the_best_rate():
    """Data of y' = -y, model y' = -r·y through Euler at h: the fit is the r whose Euler factor
    1 - r·h matches e^{-h} best on every save, r = (1 - e^{-h})/h, and a second model of the
    same structure compiles nothing new."""
    linear = systems.get("linear")
    data = training.trajectories(linear, 4, horizon=2.0, saves=5, seed=0)
    setting = training.Discretization("Euler", h=0.5)
    TRACES.clear()
    fitted, _ = training.train(Rate(jnp.array(0.5)), data, setting, steps=400, learning_rate=0.05)
    traced = len(TRACES)
    assert traced > 0
    np.testing.assert_allclose(fitted.rate, (1 - np.exp(-0.5)) / 0.5, rtol=1e-2)
    training.train(Rate(jnp.array(2.0)), data, setting, steps=400, learning_rate=0.05)
    assert len(TRACES) == traced  # same structure, other values: no new compile


def test_steps_to_counts_steps_and_refuses_off_grid_steps():
    assert training.steps_to(training.Discretization("Euler", h=0.25), [0.0, 1.0, 2.0]) == 8
    adaptive = training.Discretization("Tsit5", rtol=1e-6)
    assert training.steps_to(adaptive, [0.0, 1.0]) == training.ADAPTIVE_MAX_STEPS


@pytest.mark.parametrize(
    "build, match",
    [
        (lambda: training.Discretization("Euler", h=1.0, rtol=1e-3), "exactly one"),
        (lambda: training.Discretization("Euler", rtol=1e-3), "no error estimate"),
        (lambda: training.Discretization("Euler", h=-0.5), "h=-0.5"),
        (lambda: training.Discretization("Eulr", h=0.5), "Euler"),
        (lambda: training.trajectories(SPIRAL, 0), "count=0"),
        (lambda: training.trajectories(SPIRAL, 2, saves=1), "saves=1"),
        (lambda: training.train(lambda t, y, h: y, None, EULER), "equinox Module"),
    ],
)
def test_invalid_arguments(build, match):
    with pytest.raises(InvalidArgument, match=match):
        build()


def test_step_that_misses_the_save_times_is_refused(data):
    model = models.make("h_free", SPIRAL, width=4)
    with pytest.raises(InvalidArgument, match="h=0.3"):
        training.train(model, data, training.Discretization("Euler", h=0.3))
