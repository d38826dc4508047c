"""analysis.neural: training, persistence, the discretization matrix, step sensitivity.

The exact checks use a hypersolver whose correction is zeroed: it is then the true linear field
y' = A·y, and Euler's error after n steps is ((I + hA)^n - e^{nhA})·y0 in closed form.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.linalg import expm

from analysis import InvalidArgument, neural, stability, systems

SPIRAL = systems.get("linear10", dim=2, seed=0)  # eigenvalues -0.61 ± 0.46i: a damped spiral
A = np.asarray(SPIRAL.args)
COARSE = neural.Setting("Euler", h=1.0)
FINE = neural.Setting("Tsit5", h=0.125)


@pytest.fixture(scope="module")
def data():
    train = neural.trajectories(SPIRAL, 8, horizon=6.0, saves=7, seed=0)
    test = neural.trajectories(SPIRAL, 8, horizon=6.0, saves=7, seed=1)
    return train, test


@pytest.fixture(scope="module")
def trained(data):
    """The h-input model trained with Euler at h = 1 and the h-free one with Tsit5 at h = 1/8."""
    train, _ = data
    coarse = neural.train(neural.make("h_input", SPIRAL, width=8), train, COARSE, steps=150)
    fine = neural.train(neural.make("h_free", SPIRAL, width=8), train, FINE, steps=150)
    return {"h_input": coarse, "h_free": fine}


def exact_field_model():
    """A hypersolver with g ≡ 0: exactly the spiral's field A·y."""
    model = neural.make("hypersolver", SPIRAL, width=4)
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


def test_trajectories_are_the_exact_linear_flow(data):
    train, _ = data
    expected = np.stack([[expm(A * t) @ y0 for t in train.ts] for y0 in train.y0])
    np.testing.assert_allclose(train.ys, expected, atol=1e-10)


def test_training_reduces_the_loss(trained):
    for _, losses in trained.values():
        assert np.all(np.isfinite(losses))
        assert losses[-1] < 0.05 * losses[0]


def test_training_is_deterministic(data, trained):
    """Retraining the fixture's h-input model (same seed, data, setting) repeats it exactly."""
    train, _ = data
    again = neural.train(neural.make("h_input", SPIRAL, width=8), train, COARSE, steps=150)
    np.testing.assert_array_equal(again[1], trained["h_input"][1])


def test_hypersolver_euler_step_is_y_plus_hf_plus_h2g():
    model = neural.make("hypersolver", SPIRAL, width=4, seed=1)
    h, y = 0.3, jnp.array([0.7, -0.2])
    phi = stability.one_step_map(neural.as_system(model, SPIRAL), "Euler", h)
    g = model.g(jnp.array([0.7, -0.2, h]))
    np.testing.assert_allclose(phi(y), y + h * (A @ y) + h**2 * g, rtol=1e-14)


def test_as_system_names_tell_trained_models_apart(trained):
    model = trained["h_input"][0]
    init = neural.make("h_input", SPIRAL, width=8)
    names = {neural.as_system(m, SPIRAL).name for m in (model, init, init)}
    assert len(names) == 2  # sweep's result cache keys on the name


def test_h_free_model_is_not_step_dependent():
    model = neural.make("h_free", SPIRAL, width=4)
    assert not neural.as_system(model, SPIRAL).h_dependent
    y = jnp.array([0.5, 1.0])
    np.testing.assert_array_equal(model(0.0, y, 0.0), model(0.0, y, 0.7))


def test_save_load_round_trip(tmp_path, trained, data):
    model, _ = trained["h_input"]
    path = tmp_path / "model.eqx"
    neural.save(path, model)
    loaded = neural.load(path, neural.make("h_input", SPIRAL, width=8, seed=99))
    leaves = [jax.tree_util.tree_leaves(eqx.filter(m, eqx.is_array)) for m in (model, loaded)]
    for a, b in zip(*leaves, strict=True):
        np.testing.assert_array_equal(a, b)
    _, test = data
    np.testing.assert_array_equal(
        neural.predict(model, COARSE, test.y0, test.ts),
        neural.predict(loaded, COARSE, test.y0, test.ts),
    )


@pytest.mark.parametrize(
    "skeleton",
    [
        neural.make("h_input", SPIRAL, width=4),  # other widths
        neural.make("h_input", SPIRAL, width=8, depth=3),  # more arrays than the file holds
        neural.make("h_free", SPIRAL, width=8),  # another kind: y alone as input
    ],
)
def test_load_refuses_a_mismatched_file(tmp_path, trained, skeleton):
    path = tmp_path / "model.eqx"
    neural.save(path, trained["h_input"][0])
    with pytest.raises(InvalidArgument, match="does not hold parameters"):
        neural.load(path, skeleton)


def test_load_refuses_a_file_with_extra_arrays(tmp_path):
    path = tmp_path / "deep.eqx"
    model = neural.make("h_input", SPIRAL, width=4)
    eqx.tree_serialise_leaves(path, (model, jnp.zeros(3)))  # the model, then one more array
    with pytest.raises(InvalidArgument, match="more arrays"):
        neural.load(path, model)


def test_discretization_matrix_shape_and_columns(trained, data):
    _, test = data
    model, _ = trained["h_input"]
    settings = [
        neural.Setting("Euler", h=1.0),
        neural.Setting("Euler", h=0.25),
        neural.Setting("Tsit5", h=0.5),
        neural.Setting("Dopri5", rtol=1e-3),
        neural.Setting("Dopri5", rtol=1e-6),
    ]
    df = neural.discretization_matrix(model, COARSE, settings, test)
    assert list(df.columns) == [
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
    assert len(df) == len(settings)
    assert (df["status"] == "ok").all() and (df["model"] == "h_input").all()
    assert list(df["num_steps"][:3]) == [6, 24, 12]
    assert df["test_h"].isna().tolist() == [False, False, False, True, True]


def test_discretization_matrix_compiles_once_per_solver_kind_and_model_structure(data):
    _, test = data
    settings = [
        neural.Setting("Euler", h=1.0),
        neural.Setting("Euler", h=0.5),
        neural.Setting("Tsit5", h=0.5),
        neural.Setting("Dopri5", rtol=1e-3),
        neural.Setting("Dopri5", rtol=1e-6),
    ]
    first, second = (neural.make("h_free", SPIRAL, width=7, seed=s) for s in (0, 1))
    df = neural.discretization_matrix(first, COARSE, settings, test)
    assert df.attrs["compilations"] == 3  # Euler fixed, Tsit5 fixed, Dopri5 adaptive
    again = neural.discretization_matrix(second, COARSE, settings, test)
    assert again.attrs["compilations"] == 0  # same structure, other values: no new compile
    assert not np.allclose(df["error"], again["error"])


def test_discretization_matrix_error_is_eulers_exact_error(data):
    _, test = data
    hs = [1.0, 0.5, 0.25]
    df = neural.discretization_matrix(
        exact_field_model(), COARSE, [neural.Setting("Euler", h=h) for h in hs], test
    )
    for h, err in zip(hs, df["error"], strict=True):
        counts = np.rint((test.ts[1:] - test.ts[0]) / h).astype(int)
        expected = np.sqrt(np.mean(euler_vs_truth(test.y0, h, counts) ** 2))
        np.testing.assert_allclose(err, expected, rtol=1e-9)


def test_h_free_fine_model_is_flatter_across_h_than_h_input_coarse_euler(trained, data):
    """Ott et al.'s finding in miniature: under its own solver, the h-input model trained with
    Euler at h = 1 changes its error as h shrinks (it learned Euler's map at h = 1); the h-free
    model trained at a small step keeps its error (it learned a vector field)."""
    _, test = data
    hs = [1.0, 0.5, 0.25, 0.125]

    def spread(kind, solver):
        model, _ = trained[kind]
        settings = [neural.Setting(solver, h=h) for h in hs]
        df = neural.discretization_matrix(model, settings[0], settings, test)
        logs = np.log10(df["error"].to_numpy())
        return logs.max() - logs.min()

    assert spread("h_free", "Tsit5") < 0.5 * spread("h_input", "Euler")


def test_step_sensitivity_matches_closed_form_derivative(data):
    """L(h) = mean |(I + hA)^n y0 - e^{nhA} y0|², n = m·k; dL/dh = mean 2·e·(nA(I + hA)^{n-1}y0
    - nA e^{nhA} y0)."""
    train, _ = data
    hs = [1.0, 0.5]
    model = exact_field_model()
    auto = neural.step_sensitivity(model, train, "Euler", hs=hs)
    fd = neural.step_sensitivity(model, train, "Euler", hs=hs, method="finite_difference")
    for i, h in enumerate(hs):
        counts = np.rint((train.ts[1:] - train.ts[0]) / h).astype(int)
        diff = euler_vs_truth(train.y0, h, counts)
        step = np.eye(2) + h * A
        ddiff = np.stack(
            [
                [
                    n * A @ np.linalg.matrix_power(step, n - 1) @ y0 - n * A @ expm(A * n * h) @ y0
                    for n in counts
                ]
                for y0 in train.y0
            ]
        )
        np.testing.assert_allclose(auto["loss"][i], np.mean(diff**2), rtol=1e-9)
        np.testing.assert_allclose(auto["dloss"][i], np.mean(2 * diff * ddiff), rtol=1e-8)
        np.testing.assert_allclose(fd["dloss"][i], np.mean(2 * diff * ddiff), rtol=1e-5)
    assert set(auto["method"]) == {"autodiff"} and set(fd["method"]) == {"finite_difference"}


def test_sensitivity_to_the_h_input_alone(trained, data):
    """Zero for the h-free model (exactly); autodiff = finite differences for the h-input one."""
    _, test = data
    hs = [1.0, 0.5]
    free = neural.step_sensitivity(trained["h_free"][0], test, "Euler", hs=hs, wrt="h_input")
    assert (free["dloss"] == 0.0).all() and (free["wrt"] == "h_input").all()
    model = trained["h_input"][0]
    auto = neural.step_sensitivity(model, test, "Euler", hs=hs, wrt="h_input")
    fd = neural.step_sensitivity(
        model, test, "Euler", hs=hs, wrt="h_input", method="finite_difference"
    )
    assert (auto["dloss"] != 0.0).all()
    np.testing.assert_allclose(auto["dloss"], fd["dloss"], rtol=1e-5)


def test_step_sensitivity_under_adaptive_control_is_a_finite_difference(trained, data):
    _, test = data
    df = neural.step_sensitivity(trained["h_free"][0], test, "Tsit5", rtols=[1e-4])
    assert df["wrt"].tolist() == ["log_rtol"] and df["method"].tolist() == ["finite_difference"]
    assert np.isfinite(df["dloss"]).all() and df["h"].isna().all()


def test_step_adaptation_finds_where_euler_and_tsit5_agree(trained, data):
    _, test = data
    result = neural.step_adaptation(
        trained["h_input"][0], test, solver="Euler", h=1.0, threshold=0.1, max_halvings=4
    )
    table = result.table
    assert list(table["h"]) == [1.0 / 2**k for k in range(5)]
    assert not table["agrees"].iloc[0]  # at its training step Euler and Tsit5 disagree
    assert result.step is not None and result.step == table["h"][table["agrees"]].iloc[0]
    never = neural.step_adaptation(
        trained["h_input"][0], test, solver="Euler", h=1.0, threshold=0.1, max_halvings=0
    )
    assert never.step is None


@pytest.mark.parametrize(
    "build, match",
    [
        (lambda: neural.Setting("Euler", h=1.0, rtol=1e-3), "exactly one"),
        (lambda: neural.Setting("Euler", rtol=1e-3), "no error estimate"),
        (lambda: neural.Setting("Euler", h=-0.5), "h=-0.5"),
        (lambda: neural.Setting("Eulr", h=0.5), "Euler"),
        (lambda: neural.make("resnet", SPIRAL), "kind='resnet'"),
        (lambda: neural.make("h_input", SPIRAL, width=0), "width=0"),
        (lambda: neural.trajectories(SPIRAL, 0), "count=0"),
        (
            lambda: neural.step_adaptation(None, None, solver="Tsit5", h=1.0, test_solver="Tsit5"),
            "test_solver='Tsit5'",
        ),
    ],
)
def test_invalid_arguments(build, match):
    with pytest.raises(InvalidArgument, match=match):
        build()


def test_step_that_misses_the_save_times_is_refused(data):
    train, _ = data
    with pytest.raises(InvalidArgument, match="h=0.3"):
        neural.train(neural.make("h_free", SPIRAL, width=4), train, neural.Setting("Euler", h=0.3))
