"""analysis.neural: the discretization matrix, predictions, step sensitivity, the step check and
as_system, on trained models and on modules of my own with closed-form Euler solutions.

Closed forms: a hypersolver whose correction is zeroed is the true linear field y' = A·y, so
Euler's error after n steps is ((I + hA)^n - e^{nhA})·y0; the module `Damped` computes
-y·(1 + h + s) (s the h-input shift), whose Euler solution is y_n = (1 - h(1 + h + s))^n·y0.
"""

import equinox as eqx
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import pytest
from scipy.linalg import expm

from analysis import InvalidArgument, models, neural, plotting, stability, systems, training

SPIRAL = systems.get("linear10", dim=2, seed=0)  # eigenvalues -0.61 ± 0.46i: a damped spiral
A = np.asarray(SPIRAL.args)
D = training.Discretization
COARSE = D("Euler", h=1.0)
FINE = D("Tsit5", h=0.125)
TRACES = []  # one entry per trace of Damped.__call__


class Damped(eqx.Module):
    """y' = -rate·y·(1 + h): a step-dependent field that is none of the built-in kinds."""

    rate: jnp.ndarray

    def __call__(self, t, y, h):
        TRACES.append(1)
        return -self.rate * y * (1 + h)


@pytest.fixture(scope="module")
def data():
    return training.trajectories(SPIRAL, 8, horizon=6.0, saves=7, seed=1)


@pytest.fixture(scope="module")
def decay():
    """Trajectories of y' = -y (a state of one component) saved at t = 0, 1, 2, 3."""
    linear = systems.get("linear").with_(y0=jnp.array([1.0]))
    return training.trajectories(linear, 4, horizon=3.0, saves=4, seed=0)


@pytest.fixture(scope="module")
def trained():
    """The h-input model trained with Euler at h = 1 and the h-free one with Tsit5 at h = 1/8."""
    train = training.trajectories(SPIRAL, 8, horizon=6.0, saves=7, seed=0)
    coarse = training.train(models.make("h_input", SPIRAL, width=8), train, COARSE, steps=150)
    fine = training.train(models.make("h_free", SPIRAL, width=8), train, FINE, steps=150)
    return {"h_input": coarse[0], "h_free": fine[0]}


def exact_field_model():
    """A hypersolver with g ≡ 0: exactly the spiral's field A·y."""
    model = models.make("hypersolver", SPIRAL, width=4)
    last = model.g.layers[-1]
    return eqx.tree_at(
        lambda m: (m.g.layers[-1].weight, m.g.layers[-1].bias),
        model,
        (jnp.zeros_like(last.weight), jnp.zeros_like(last.bias)),
    )


def euler_vs_truth(y0s, h, counts):
    """Euler's states minus the true ones after each step count in `counts` (N, K, d)."""
    step = np.eye(2) + h * A
    return np.stack(
        [
            [np.linalg.matrix_power(step, n) @ y0 - expm(A * n * h) @ y0 for n in counts]
            for y0 in y0s
        ]
    )


def damped_euler(y0s, h, ts):
    """(states, d states / d shift at shift 0), each (N, K, d), of Euler on Damped(1)."""
    n = np.rint((ts - ts[0]) / h)[None, :, None]
    factor = 1 - h * (1 + h)
    y0s = np.asarray(y0s)[:, None, :]
    return factor**n * y0s, n * factor ** np.maximum(n - 1, 0) * (-h) * y0s


def test_matrix_of_a_module_of_my_own_is_eulers_closed_form_error(decay):
    hs = [1.0, 0.5, 0.25]
    result = neural.discretization_matrix(
        Damped(jnp.array(1.0)), D("Euler", h=1.0), [D("Euler", h=h) for h in hs], decay
    )
    assert isinstance(result, neural.DiscretizationMatrix)
    assert (result.rows["model"] == "Damped").all() and (result.rows["status"] == "ok").all()
    for h, err in zip(hs, result.rows["error"], strict=True):
        states, _ = damped_euler(decay.y0, h, decay.ts)
        np.testing.assert_allclose(err, np.sqrt(np.mean((states - decay.ys)[:, 1:] ** 2)))


def test_predictions_and_predict_of_a_module_of_my_own(decay):
    model = Damped(jnp.array(1.0))
    result = neural.predictions(model, [D("Euler", h=0.5)], decay, which=(0, 2))
    for i in (0, 2):
        rows = result.rows[result.rows["trajectory"] == i]
        np.testing.assert_allclose(rows["y0"], damped_euler(decay.y0, 0.5, decay.ts)[0][i, :, 0])
        truth = result.truth[result.truth["trajectory"] == i]
        np.testing.assert_array_equal(truth["y0"], decay.ys[i, :, 0])
    states = neural.predict(model, D("Euler", h=0.5), decay.y0, decay.ts)
    np.testing.assert_allclose(states, damped_euler(decay.y0, 0.5, decay.ts)[0])


def test_sensitivity_of_a_module_of_my_own_to_its_h_input(decay):
    """L(s) = mean (y_n(s) - y(t_n))², dL/ds = mean 2·(y_n - y)·dy_n/ds, at s = 0."""
    result = neural.step_sensitivity(
        Damped(jnp.array(1.0)), decay, "Euler", hs=[1.0, 0.5], wrt="h_input"
    )
    for h, loss, slope in zip([1.0, 0.5], result.rows["loss"], result.rows["dloss"], strict=True):
        states, dstates = damped_euler(decay.y0, h, decay.ts)
        diff = (states - decay.ys)[:, 1:]
        np.testing.assert_allclose(loss, np.mean(diff**2), rtol=1e-12)
        np.testing.assert_allclose(slope, np.mean(2 * diff * dstates[:, 1:]), rtol=1e-12)


def test_as_system_of_a_module_of_my_own():
    system = neural.as_system(Damped(jnp.array(2.0)), "linear")
    assert system.name.startswith("neural(Damped, linear") and system.h_dependent
    phi = stability.one_step_map(system, "Euler", 0.5)  # y -> (1 - 2·0.5·1.5)·y
    np.testing.assert_allclose(phi(jnp.array([1.0])), [-0.5])


def test_one_compile_per_model_structure(decay):
    """A second module of the same structure (other values) compiles nothing new."""
    settings = [D("Euler", h=1.0), D("Euler", h=0.5), D("Dopri5", rtol=1e-6)]
    TRACES.clear()
    first = neural.discretization_matrix(Damped(jnp.array(1.0)), settings[0], settings, decay)
    traced = len(TRACES)
    assert traced > 0
    second = neural.discretization_matrix(Damped(jnp.array(0.5)), settings[0], settings, decay)
    assert len(TRACES) == traced
    assert not np.allclose(first.rows["error"], second.rows["error"])


def test_hypersolver_euler_step_is_y_plus_hf_plus_h2g():
    model = models.make("hypersolver", SPIRAL, width=4, seed=1)
    h, y = 0.3, jnp.array([0.7, -0.2])
    phi = stability.one_step_map(neural.as_system(model, SPIRAL), "Euler", h)
    g = model.g(jnp.array([0.7, -0.2, h]))
    np.testing.assert_allclose(phi(y), y + h * (A @ y) + h**2 * g, rtol=1e-14)


def test_as_system_names_tell_trained_models_apart(trained):
    init = models.make("h_input", SPIRAL, width=8)
    names = {neural.as_system(m, SPIRAL).name for m in (trained["h_input"], init, init)}
    assert len(names) == 2  # sweep's result cache keys on the name
    assert not neural.as_system(trained["h_free"], SPIRAL).h_dependent


def test_discretization_matrix_columns(trained, data):
    settings = [D("Euler", h=1.0), D("Euler", h=0.25), D("Tsit5", h=0.5), D("Dopri5", rtol=1e-3)]
    rows = neural.discretization_matrix(trained["h_input"], COARSE, settings, data).rows
    assert list(rows.columns) == [
        "model",
        "train_setting",
        "test_setting",
        "test_solver",
        "control",
        "test_h",
        "test_rtol",
        "status",
        "error",
        "num_steps",
    ]
    assert (rows["status"] == "ok").all() and (rows["model"] == "h_input").all()
    assert list(rows["num_steps"][:3]) == [6, 24, 12]  # horizon / h
    assert rows["test_h"].isna().tolist() == [False, False, False, True]


def test_discretization_matrix_error_is_eulers_exact_error(data):
    hs = [1.0, 0.5, 0.25]
    result = neural.discretization_matrix(
        exact_field_model(), COARSE, [D("Euler", h=h) for h in hs], data
    )
    for h, err in zip(hs, result.rows["error"], strict=True):
        counts = np.rint((data.ts[1:] - data.ts[0]) / h).astype(int)
        expected = np.sqrt(np.mean(euler_vs_truth(data.y0, h, counts) ** 2))
        np.testing.assert_allclose(err, expected, rtol=1e-9)


def test_h_free_fine_model_is_flatter_across_h_than_h_input_coarse_euler(trained, data):
    """Ott et al.'s finding in miniature: under its own solver, the h-input model trained with
    Euler at h = 1 changes its error as h shrinks (it learned Euler's map at h = 1); the h-free
    model trained at a small step keeps its error (it learned a vector field)."""
    hs = [1.0, 0.5, 0.25, 0.125]

    def spread(kind, solver):
        settings = [D(solver, h=h) for h in hs]
        rows = neural.discretization_matrix(trained[kind], settings[0], settings, data).rows
        logs = np.log10(rows["error"].to_numpy())
        return logs.max() - logs.min()

    assert spread("h_free", "Tsit5") < 0.5 * spread("h_input", "Euler")


def test_step_sensitivity_matches_closed_form_derivative(data):
    """L(h) = mean |(I + hA)^n y0 - e^{nhA} y0|², n = m·k; dL/dh = mean 2·e·(nA(I + hA)^{n-1}y0
    - nA e^{nhA} y0)."""
    hs = [1.0, 0.5]
    model = exact_field_model()
    auto = neural.step_sensitivity(model, data, "Euler", hs=hs).rows
    fd = neural.step_sensitivity(model, data, "Euler", hs=hs, method="finite_difference").rows
    for i, h in enumerate(hs):
        counts = np.rint((data.ts[1:] - data.ts[0]) / h).astype(int)
        diff = euler_vs_truth(data.y0, h, counts)
        step = np.eye(2) + h * A
        ddiff = np.stack(
            [
                [
                    n * A @ np.linalg.matrix_power(step, n - 1) @ y0 - n * A @ expm(A * n * h) @ y0
                    for n in counts
                ]
                for y0 in data.y0
            ]
        )
        np.testing.assert_allclose(auto["loss"][i], np.mean(diff**2), rtol=1e-9)
        np.testing.assert_allclose(auto["dloss"][i], np.mean(2 * diff * ddiff), rtol=1e-8)
        np.testing.assert_allclose(fd["dloss"][i], np.mean(2 * diff * ddiff), rtol=1e-5)
    assert set(auto["method"]) == {"autodiff"} and set(fd["method"]) == {"finite_difference"}


def test_sensitivity_to_the_h_input_alone(trained, data):
    """Zero for the h-free model (exactly); autodiff = finite differences for the h-input one."""
    hs = [1.0, 0.5]
    free = neural.step_sensitivity(trained["h_free"], data, "Euler", hs=hs, wrt="h_input").rows
    assert (free["dloss"] == 0.0).all() and (free["wrt"] == "h_input").all()
    model = trained["h_input"]
    auto = neural.step_sensitivity(model, data, "Euler", hs=hs, wrt="h_input").rows
    fd = neural.step_sensitivity(
        model, data, "Euler", hs=hs, wrt="h_input", method="finite_difference"
    ).rows
    assert (auto["dloss"] != 0.0).all()
    np.testing.assert_allclose(auto["dloss"], fd["dloss"], rtol=1e-5)


def test_step_sensitivity_under_adaptive_control_is_a_finite_difference(trained, data):
    rows = neural.step_sensitivity(
        trained["h_free"], data, "Tsit5", rtols=[1e-4], train_setting=FINE
    ).rows
    assert rows["wrt"].tolist() == ["log_rtol"] and rows["method"].tolist() == ["finite_difference"]
    assert np.isfinite(rows["dloss"]).all() and rows["h"].isna().all()
    assert rows["train_setting"].tolist() == ["Tsit5 h=0.125"] and rows["train_h"][0] == 0.125


def test_step_adaptation_finds_where_euler_and_tsit5_agree(trained, data):
    result = neural.step_adaptation(
        trained["h_input"], data, solver="Euler", h=1.0, threshold=0.1, max_halvings=4
    )
    rows = result.rows
    assert list(rows["h"]) == [1.0 / 2**k for k in range(5)]
    assert not rows["agrees"].iloc[0]  # at its training step Euler and Tsit5 disagree
    assert result.step is not None and result.step == rows["h"][rows["agrees"]].iloc[0]
    assert result.summary["start"].tolist() == ["Euler h=1"]
    never = neural.step_adaptation(
        trained["h_input"], data, solver="Euler", h=1.0, threshold=0.1, max_halvings=0
    )
    assert never.step is None


@pytest.mark.parametrize(
    "build, match",
    [
        (lambda d: neural.discretization_matrix(Damped(1.0), COARSE, [], d), "test_settings"),
        (lambda d: neural.discretization_matrix(Damped(1.0), "Euler", [COARSE], d), "train_"),
        (lambda d: neural.discretization_matrix(lambda t, y, h: y, COARSE, [COARSE], d), "Module"),
        (lambda d: neural.predictions(Damped(1.0), [COARSE], d, which=[9]), "which="),
        (lambda d: neural.step_sensitivity(Damped(1.0), d, "Euler"), "give hs"),
        (lambda d: neural.step_sensitivity(Damped(1.0), d, "Euler", hs=[1], wrt="t"), "wrt='t'"),
        (
            lambda d: neural.step_adaptation(Damped(1.0), d, solver="Tsit5", h=1.0),
            "test_solver='Tsit5'",
        ),
    ],
)
def test_invalid_arguments(decay, build, match):
    with pytest.raises(InvalidArgument, match=match):
        build(decay)


# ------------------------------------------------------------------------------------ plots


def test_heatmap_draws_the_log_errors_of_each_training_row(decay):
    settings = [D("Euler", h=h) for h in (1.0, 0.5)]
    matrices = [
        neural.discretization_matrix(Damped(jnp.array(1.0)), train, settings, decay)
        for train in settings
    ]
    fig = plotting.discretization_heatmaps(matrices)
    image = np.asarray(fig.axes[0].images[0].get_array())
    for i, result in enumerate(matrices):
        np.testing.assert_allclose(image[i], np.log10(result.rows["error"]))
    plotting.close(fig)


def test_trajectory_panels_draw_truth_and_each_step(data, decay):
    settings = [D("Euler", h=1.0), D("Euler", h=0.5)]
    result = neural.predictions(exact_field_model(), settings, data, train_setting=COARSE)
    fig, ax = plt.subplots()
    assert plotting.trajectory_panels(result, axes=[ax]) is fig
    truth, coarse, fine = ax.lines
    np.testing.assert_array_equal(truth.get_ydata(), data.ys[0, :, 1])
    rows = result.rows
    np.testing.assert_array_equal(fine.get_xdata(), rows[rows["h"] == 0.5]["y0"])
    one_d = neural.predictions(Damped(jnp.array(1.0)), settings, decay)
    with pytest.raises(InvalidArgument, match="lacks column 'y1'"):
        plotting.trajectory_panels(one_d)  # a 1-d state has no phase plane
    plotting.close(fig)


def test_step_sensitivity_and_step_adaptation_plots_draw_their_producer(trained, data):
    model = trained["h_input"]
    both = [
        neural.step_sensitivity(model, data, "Euler", hs=[1.0, 0.5], wrt=w, train_setting=COARSE)
        for w in ("h", "h_input")
    ]
    fig = plotting.step_sensitivity(both)
    loss, dh, dinput = fig.axes
    np.testing.assert_array_equal(dinput.lines[0].get_ydata(), both[1].rows["dloss"][::-1])
    np.testing.assert_array_equal(loss.lines[0].get_ydata(), both[0].rows["loss"][::-1])
    assert dh.lines[1].get_xdata()[0] == 1.0  # the dotted training step
    check = neural.step_adaptation(model, data, solver="Euler", h=1.0, max_halvings=3)
    fig2 = plotting.step_adaptation(check)
    lines = fig2.axes[0].lines
    np.testing.assert_array_equal(lines[1].get_ydata(), check.rows["error_test"])
    np.testing.assert_array_equal(lines[2].get_xdata(), [check.step])  # the star
    plotting.close(fig)
    plotting.close(fig2)


def test_plots_refuse_what_their_producer_does_not_return(decay):
    result = neural.discretization_matrix(Damped(jnp.array(1.0)), COARSE, [COARSE], decay)
    with pytest.raises(InvalidArgument, match="discretization_matrix returns"):
        plotting.discretization_heatmaps(result.rows)
    with pytest.raises(InvalidArgument, match="lacks column 'error'"):
        plotting.discretization_heatmaps(
            neural.DiscretizationMatrix(rows=result.rows.drop(columns="error"))
        )
    with pytest.raises(InvalidArgument, match=r"step_adaptation\(...\).rows lacks columns"):
        plotting.step_adaptation(result)  # another result's rows
    with pytest.raises(InvalidArgument, match="2 panels"):
        fig, ax = plt.subplots()
        both = [
            neural.discretization_matrix(m, COARSE, [COARSE], decay)
            for m in (Damped(jnp.array(1.0)), models.make("h_free", "linear", width=2))
        ]
        plotting.discretization_heatmaps(both, axes=[ax])
    plotting.close(fig)
