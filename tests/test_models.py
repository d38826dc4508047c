"""analysis.models: the built-in kinds, the h-free control, save/load and its refusals."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from analysis import InvalidArgument, models, systems

SPIRAL = systems.get("linear10", dim=2, seed=0)
A = np.asarray(SPIRAL.args)


def test_hypersolver_is_the_known_field_plus_h_times_the_correction():
    """f(y) + h·g(y, h) with f the system's limit field A·y."""
    model = models.make("hypersolver", SPIRAL, width=4, seed=1)
    h, y = 0.3, jnp.array([0.7, -0.2])
    g = model.g(jnp.array([0.7, -0.2, h]))
    np.testing.assert_allclose(model(0.0, y, h), A @ y + h * g, rtol=1e-14)
    np.testing.assert_allclose(model(0.0, y, 0.0), A @ y, rtol=1e-14)


def test_h_free_model_ignores_h():
    model = models.make("h_free", SPIRAL, width=4)
    y = jnp.array([0.5, 1.0])
    np.testing.assert_array_equal(model(0.0, y, 0.0), model(0.0, y, 0.7))


def test_kind_of_names_built_in_kinds_and_other_modules_by_class():
    class Damped(eqx.Module):
        def __call__(self, t, y, h):
            return -y * (1 + h)

    assert [models.kind_of(models.make(k, SPIRAL, width=4)) for k in models.KINDS] == list(
        models.KINDS
    )
    assert models.kind_of(Damped()) == "Damped"
    with pytest.raises(InvalidArgument, match="equinox Module"):
        models.kind_of(lambda t, y, h: -y)


def test_fingerprint_tells_values_apart():
    a, b = (models.make("h_input", SPIRAL, width=4, seed=s) for s in (0, 1))
    assert models.fingerprint(a) == models.fingerprint(models.make("h_input", SPIRAL, width=4))
    assert models.fingerprint(a) != models.fingerprint(b)


def test_save_load_round_trip(tmp_path):
    model = models.make("h_input", SPIRAL, width=8, seed=3)
    path = tmp_path / "model.eqx"
    models.save(path, model)
    loaded = models.load(path, models.make("h_input", SPIRAL, width=8, seed=99))
    leaves = [jax.tree_util.tree_leaves(eqx.filter(m, eqx.is_array)) for m in (model, loaded)]
    for a, b in zip(*leaves, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    "skeleton",
    [
        models.make("h_input", SPIRAL, width=4),  # other widths
        models.make("h_input", SPIRAL, width=8, depth=3),  # more arrays than the file holds
        models.make("h_free", SPIRAL, width=8),  # another kind: y alone as input
    ],
)
def test_load_refuses_a_mismatched_file(tmp_path, skeleton):
    path = tmp_path / "model.eqx"
    models.save(path, models.make("h_input", SPIRAL, width=8))
    with pytest.raises(InvalidArgument, match="does not hold parameters"):
        models.load(path, skeleton)


def test_load_refuses_a_file_with_extra_arrays(tmp_path):
    path = tmp_path / "deep.eqx"
    model = models.make("h_input", SPIRAL, width=4)
    eqx.tree_serialise_leaves(path, (model, jnp.zeros(3)))  # the model, then one more array
    with pytest.raises(InvalidArgument, match="more arrays"):
        models.load(path, model)


@pytest.mark.parametrize(
    "build, match",
    [
        (lambda: models.make("resnet", SPIRAL), "kind='resnet'"),
        (lambda: models.make("h_input", SPIRAL, width=0), "width=0"),
        (lambda: models.load("no/such/file.eqx", models.make("h_free", SPIRAL)), "not a file"),
        (lambda: models.require_model(object(), "net"), "net="),
    ],
)
def test_invalid_arguments(build, match):
    with pytest.raises(InvalidArgument, match=match):
        build()
