"""The catalog: exact solutions solve their ODEs, families are what they claim to be."""

import inspect

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
from helpers import ALL_SYSTEMS, fit_slope

import analysis
from analysis import InvalidArgument, StepAware, StepTerm, discrete, systems
from analysis.prepare import prepare
from analysis.systems import System

WITH_EXACT = [n for n in ALL_SYSTEMS if systems.get(n).exact is not None]


@pytest.mark.parametrize("name", ALL_SYSTEMS)
def test_every_system_builds_and_its_field_keeps_the_state_shape(name):
    sys = systems.get(name)
    for h in (0.0, 0.1):
        out = sys.vector_field(sys.t0, sys.y0, sys.args, jnp.asarray(h))
        assert out.shape == sys.y0.shape and out.dtype == jnp.float64
        assert bool(jnp.all(jnp.isfinite(out)))
    assert sys.t1 > sys.t0


@pytest.mark.parametrize("name", WITH_EXACT)
def test_exact_solution_starts_at_y0_and_solves_the_limit_ode(name):
    sys = systems.get(name)
    np.testing.assert_allclose(sys.exact(sys.t0), sys.y0, atol=1e-14)
    for t in np.linspace(sys.t0, sys.t1, 5)[1:]:
        y, dy = jax.jvp(sys.exact, (jnp.asarray(t),), (jnp.asarray(1.0),))
        np.testing.assert_allclose(dy, sys.limit_field(t, y, sys.args), rtol=1e-9, atol=1e-10)


def _variants(name):
    """The system `name` with each numeric parameter (other than the span) changed in turn."""
    for param in inspect.signature(systems._CATALOG[name]).parameters.values():
        d = param.default
        if param.name in ("t1", "steps") or isinstance(d, bool) or not isinstance(d, int | float):
            continue
        value = d + 1 if isinstance(d, int) else (2 * d if d else 0.5)
        if name == "kepler" and param.name == "eccentricity":
            value = 0.25
        yield param.name, systems.get(name, **{param.name: value})


def _fingerprint(sys):
    """y0 and the field at a few (t, y, h), h = 0 (the limit) included."""
    points = [sys.y0 + 0.1 * k for k in range(3)]
    values = [
        sys.vector_field(sys.t0 + 0.3 * k, y, sys.args, h)
        for k, y in enumerate(points)
        for h in (0.0, 0.1)
    ]
    return np.concatenate([np.ravel(sys.y0), *map(np.ravel, values)])


@pytest.mark.parametrize("name", ALL_SYSTEMS)
def test_different_systems_never_share_a_name(name):
    """A results table tells systems apart by name: a parameter that changes y0 or the field
    must show in the name (one that changes nothing, e.g. the Hénon a of the logistic map,
    must not)."""
    base = systems.get(name)
    for param, other in _variants(name):
        a, b = _fingerprint(base), _fingerprint(other)
        differs = a.shape != b.shape or not np.allclose(a, b)
        assert (other.name != base.name) == differs, (param, other.name)


def test_linear10_exact_is_the_matrix_exponential():
    sys = systems.get("linear10")
    a = np.asarray(sys.args)
    assert np.all(np.linalg.eigvals(a).real < 0)
    np.testing.assert_allclose(
        sys.exact(0.7), scipy.linalg.expm(0.7 * a) @ np.asarray(sys.y0), rtol=1e-12
    )


def test_kepler_exact_solution_keeps_energy_and_angular_momentum():
    e = 0.6
    sys = systems.get("kepler", eccentricity=e)
    for t in (0.3, 1.7, 4.0, 2 * np.pi):
        y = sys.exact(t)
        np.testing.assert_allclose(sys.invariants["energy"](y), -0.5, atol=1e-13)
        np.testing.assert_allclose(
            sys.invariants["angular_momentum"](y), np.sqrt(1 - e**2), atol=1e-13
        )
    np.testing.assert_allclose(sys.exact(2 * np.pi), sys.y0, atol=1e-12)


@pytest.mark.parametrize("name", [n for n in ALL_SYSTEMS if systems.get(n).equilibria])
def test_known_equilibria_are_zeros_of_the_field(name):
    sys = systems.get(name)
    for eq in sys.equilibria:
        np.testing.assert_allclose(sys.limit_field(0.0, eq, sys.args), 0.0, atol=1e-14)


def test_unknown_names_and_parameters_are_clear_errors():
    with pytest.raises(InvalidArgument, match="Did you mean 'logistic'.*Valid systems"):
        systems.get("logistc")
    with pytest.raises(InvalidArgument, match="no parameter 'rr'.*Valid parameters: r, y0, t1"):
        systems.get("logistic", rr=2.0)
    with pytest.raises(InvalidArgument, match="terms=3"):
        systems.get("modified_euler", base="logistic", terms=3)
    with pytest.raises(InvalidArgument, match="map='henonn'"):
        systems.get("lifted_map", map="henonn")


def test_perturbed_adds_c_h_to_the_q_times_g_and_has_the_base_limit():
    base = systems.get("logistic")
    sys = systems.get("perturbed", base=base, c=2.0, q=3, g="square")
    y = jnp.asarray(0.3)
    np.testing.assert_allclose(sys.vector_field(0.0, y, sys.args, 0.0), 0.3 * 0.7)
    np.testing.assert_allclose(
        sys.vector_field(0.0, y, sys.args, 0.1), 0.3 * 0.7 + 2.0 * 0.1**3 * 0.09, rtol=1e-14
    )
    assert sys.exact is base.exact and sys.h_dependent
    by_name = systems.get("perturbed", base="linear", c=1.0, q=2)
    assert by_name.name == "perturbed(linear, c=1.0, q=2, g=sin)"


def test_modified_euler_terms_are_the_flow_derivatives():
    # Logistic f = y - y²: Df = f'f, D²f = f''(f, f) + f'f'f with f' = 1 - 2y, f'' = -2.
    y, h = 0.3, 0.2
    f, fp, fpp = y - y**2, 1 - 2 * y, -2.0
    one = systems.get("modified_euler", base="logistic", terms=1)
    two = systems.get("modified_euler", base="logistic", terms=2)
    np.testing.assert_allclose(
        one.vector_field(0.0, jnp.asarray(y), one.args, h), f + h / 2 * fp * f, rtol=1e-14
    )
    np.testing.assert_allclose(
        two.vector_field(0.0, jnp.asarray(y), two.args, h),
        f + h / 2 * fp * f + h**2 / 6 * (fpp * f * f + fp * fp * f),
        rtol=1e-14,
    )


def _euler_max_error(system, n):
    """Max over the grid of |Euler(system) - exact|: final-time errors can cross zero."""
    sol = diffrax.diffeqsolve(
        StepTerm(system.vector_field),
        StepAware(diffrax.Euler()),
        system.t0,
        system.t1,
        (system.t1 - system.t0) / n,
        system.y0,
        system.args,
        max_steps=int(n) + 1,
        saveat=diffrax.SaveAt(steps=True),
    )
    ts = jnp.linspace(system.t0, system.t1, int(n) + 1)[1:]
    return float(jnp.max(jnp.abs(sol.ys[:n] - jax.vmap(system.exact)(ts))))


@pytest.mark.parametrize("base", ["logistic", "prothero_robinson", "harmonic"])
@pytest.mark.parametrize("terms, order", [(1, 2), (2, 3)])
def test_euler_on_modified_euler_gains_one_order_per_term(base, terms, order):
    # prothero_robinson is non-autonomous: the ∂/∂t parts of D f and D²f matter there.
    params = {"stiffness": 2.0} if base == "prothero_robinson" else {}
    sys = systems.get("modified_euler", base=base, terms=terms, base_params=params)
    ns = np.array([40, 57, 80, 113, 160, 226, 320])
    err = [_euler_max_error(sys, n) for n in ns]
    assert abs(fit_slope(sys.t1 / ns, err) - order) < 0.05


def test_lifted_map_field_falls_back_at_h_zero():
    # Euler on a lifted map iterates the map: tests/test_discrete.py (the one test of it).
    sys = systems.get("lifted_map", map="henon", h_train=0.5)
    y = jnp.asarray([0.2, -0.1])
    phi = jnp.asarray([1 - 1.4 * 0.04 - 0.1, 0.3 * 0.2])
    np.testing.assert_allclose(sys.vector_field(0.0, y, None, 0.0), (phi - y) / 0.5, rtol=1e-14)
    res = systems.get("lifted_map", map="residual", dim=3)
    assert res.y0.shape == (3,)


def test_a_system_object_is_accepted_wherever_a_name_is():
    sys = systems.get("harmonic", omega=2.0)
    assert systems.get(sys) is sys
    fam = systems.get("modified_euler", base=sys)
    assert "harmonic(omega=2.0)" in fam.name


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(t1=0.0), r"t0=0.0, t1=0.0 is invalid; t1 must be finite and after t0"),
        (dict(t1=float("nan")), "t1 must be finite"),
        (dict(y0=jnp.array([1.0, jnp.nan])), "y0 has non-finite entries"),
        (dict(args=jnp.array([1.0, jnp.inf, 1.0, 3.0])), "args has non-finite entries"),
        (dict(y0=jnp.array([1.0, 1.0, 1.0])), "fails on y0 of shape \\(3,\\)|must return"),
        (dict(vector_field=lambda t, y, a, h: y[0]), r"returns shape \(\) .* shape \(2,\)"),
        (dict(vector_field=lambda t, y, a: y), "fails on y0 of shape"),
    ],
)
def test_an_invalid_system_is_refused_before_anything_compiles(changes, message):
    base = systems.get("lotka_volterra")
    with pytest.raises(InvalidArgument, match=message):
        base.with_(**changes)


def test_h_dependence_is_read_from_the_field_unless_given():
    """Forgetting h_dependent=True must not silently turn a model into its h → 0 limit."""
    stepdep = System(name="m", vector_field=lambda t, y, a, h: -y + h * y, y0=jnp.array(1.0))
    plain = System(name="p", vector_field=lambda t, y, a, h: -y, y0=jnp.array(1.0))
    assert stepdep.h_dependent is True and plain.h_dependent is False
    # Euler on f = -y + h·y: y_N = (1 - h + h²)^N, not the limit's (1 - h)^N.
    rows = analysis.sweep(stepdep, "Euler", dt0=[0.1])
    np.testing.assert_allclose(rows["y_final_0"], (1 - 0.1 + 0.01) ** 10, rtol=1e-13)
    # A new field through with_ has its dependence read afresh.
    assert plain.with_(vector_field=stepdep.vector_field).h_dependent is True
    with pytest.raises(InvalidArgument, match="h_dependent=False, but vector_field uses h"):
        stepdep.with_(h_dependent=False)


def test_limit_is_the_h_free_system_at_h_zero():
    model = systems.get("perturbed", base="linear", c=1.0, q=1)  # -y + h·sin(y)
    limit = model.limit()
    assert limit.h_dependent is False and limit.name == f"{model.name} (h → 0)"
    y = jnp.array(0.7)
    np.testing.assert_allclose(limit.vector_field(0.0, y, limit.args, 0.3), -y)
    rows = analysis.sweep(limit, "Heun", dt0=[0.1])
    np.testing.assert_allclose(rows["y_final_0"], (1 - 0.1 + 0.005) ** 10, rtol=1e-13)


def test_a_lifted_maps_limit_is_the_field_frozen_at_h_train_and_says_so():
    # (Φ(y) - y)/h has no h → 0 limit; at h = 0 it falls back to h_train. That is what
    # limit() returns, and the system and its limit() both carry frozen_h to say so.
    lifted = discrete.lift(lambda y: 0.5 * y, h_train=0.25, y0=1.0)
    assert lifted.frozen_h == 0.25 and not lifted.has_limit
    frozen = lifted.limit()
    assert frozen.frozen_h == 0.25 and not frozen.has_limit and frozen.h_dependent is False
    assert frozen.name.endswith("(frozen at h = 0.25)") and "h → 0" not in frozen.name
    y = jnp.array(0.8)
    np.testing.assert_allclose(frozen.vector_field(0.0, y, None, 0.1), (0.5 * y - y) / 0.25)
    np.testing.assert_allclose(lifted.limit_field(0.0, y, None), (0.5 * y - y) / 0.25)
    # Derived systems keep it (a perturbation of a frozen field is frozen at h = 0 too) ...
    assert systems.get("perturbed", base=lifted).frozen_h == 0.25
    assert systems.get("lifted_map", map="henon", h_train=0.5).frozen_h == 0.5
    # ... and systems with a genuine limit have none.
    for name in ("linear", "perturbed", "modified_euler"):
        model = systems.get(name)
        assert model.frozen_h is None and model.has_limit and model.limit().has_limit
    assert lifted.with_(frozen_h=None).has_limit
    with pytest.raises(InvalidArgument, match="frozen_h=-1.0 is invalid"):
        lifted.with_(frozen_h=-1.0)


# ------------------------------------------------------------------ a system is a pytree


def _tracing_counter(fn):
    """fn under eqx.filter_jit, and a dict counting how often it was traced (compiled)."""
    count = {"traces": 0}

    def counted(*a):
        count["traces"] += 1
        return fn(*a)

    return eqx.filter_jit(counted), count


def _euler_final(system, h):
    return prepare(system, "Euler").solve(h).ys[-1]


def test_a_system_is_a_pytree_whose_numbers_are_leaves():
    sys = systems.get("lifted_map", map="residual", dim=3)
    arrays = [x for x in jax.tree_util.tree_leaves(sys) if eqx.is_array(x)]
    weights = sys.vector_field.phi
    for part in (sys.y0, weights.w, weights.bias):
        assert any(x is part for x in arrays)
    assert sys.name not in jax.tree_util.tree_leaves(sys)  # static
    # equal when every leaf is, hashed alike over structure (values left out)
    other = eqx.tree_at(lambda s: s.y0, sys, sys.y0 + 1.0)
    assert sys == systems.get("lifted_map", map="residual", dim=3) and sys != other
    assert hash(sys) == hash(systems.get("lifted_map", map="residual", dim=3)) == hash(other)


def test_a_changed_parameter_value_does_not_recompile():
    """Euler on y' = -λy: y_N = (1 - hλ)^N·y0, for each λ and y0, from one compilation."""
    solve, count = _tracing_counter(_euler_final)
    base = systems.get("linear")
    for lam, y0 in [(1.0, 1.0), (3.0, 2.0), (0.5, -1.0)]:
        sys = base.with_(args=jnp.asarray(lam), y0=jnp.asarray(y0))
        np.testing.assert_allclose(solve(sys, 0.125), (1 - 0.125 * lam) ** 8 * y0, rtol=1e-14)
    assert count["traces"] == 1


def test_new_weights_of_a_map_do_not_recompile():
    """Euler on the lifted residual map iterates Φ(x) = x + tanh(Wx + b) exactly, whatever W."""
    solve, count = _tracing_counter(_euler_final)
    sys = systems.get("lifted_map", map="residual", dim=2, h_train=0.25, steps=8)
    for scale in (1.0, 0.5, -2.0):
        phi = eqx.tree_at(lambda p: p.w, sys.vector_field.phi, scale * sys.vector_field.phi.w)
        trained = eqx.tree_at(lambda s: s.vector_field.phi, sys, phi)
        y = np.asarray(sys.y0)
        for _ in range(8):
            y = y + np.tanh(np.asarray(phi.w) @ y + np.asarray(phi.bias))
        np.testing.assert_allclose(solve(trained, 0.25), y, rtol=1e-13)
    assert count["traces"] == 1


@pytest.mark.parametrize("name", ["perturbed", "modified_euler", "lifted_map", "kepler"])
def test_rebuilt_systems_and_limits_are_equal_and_compile_once(name):
    solve, count = _tracing_counter(lambda s: prepare(s, "Heun").solve(0.25).ys[-1])
    model = systems.get(name)
    assert systems.get(name) == model and model.limit() == model.limit()
    assert eqx.tree_equal(model.term(), model.term()) and eqx.tree_equal(
        model.limit().term(), model.limit().term()
    )
    for sys in (model, systems.get(name)):
        solve(sys)
    for _ in range(2):
        solve(model.limit())
    assert count["traces"] == 2  # one per structure: the model, its limit


# ------------------------------------------------------------------ pytree states


def _oscillator(step_dependent: bool = False) -> System:
    """x' = v, v' = -x (- h·v with step_dependent), with state {'x': x, 'v': v}."""

    def field(t, y, args, h):
        v = -y["x"] - h * y["v"] if step_dependent else -y["x"]
        return {"x": y["v"], "v": v}

    return System(name="oscillator", vector_field=field, y0={"x": 1.0, "v": 0.5}, t1=2.0)


@pytest.mark.parametrize("step_dependent", [False, True])
def test_a_dict_state_solves_to_the_power_of_eulers_step_matrix(step_dependent):
    """Euler: (x, v) -> (x + h·v, v + h·(-x - c·h·v)) = M (x, v), so the end state is M^N y0."""
    sys, h, n = _oscillator(step_dependent), 0.125, 16
    assert sys.h_dependent is step_dependent
    c = 1.0 if step_dependent else 0.0
    m = np.array([[1.0, h], [-h, 1.0 - c * h**2]])
    want = np.linalg.matrix_power(m, n) @ np.array([1.0, 0.5])
    sol = prepare(sys, "Euler").solve(h)
    assert set(sol.ys) == {"x", "v"}
    np.testing.assert_allclose([sol.ys["x"][-1], sol.ys["v"][-1]], want, rtol=1e-14)


def test_the_step_dependent_families_take_pytree_states():
    """Per leaf y' = λy: Euler's factor is 1 + hλ + c·h² on perturbed (g = identity, q = 1),
    1 + hλ + (hλ)²/2 on modified_euler; on the lifted map Φ(y) = y/2 Euler iterates Φ."""
    base = System(
        name="decay",
        vector_field=lambda t, y, args, h: {"a": -y["a"], "b": -2.0 * y["b"]},
        y0={"a": 1.0, "b": 2.0},
    )
    h, n = 0.125, 8
    families = {
        "perturbed": (dict(c=0.5, q=1, g="identity"), lambda z: 1 + z + 0.5 * h**2),
        "modified_euler": ({}, lambda z: 1 + z + z**2 / 2),
    }
    for family, (opts, factor) in families.items():
        ys = prepare(systems.get(family, base=base, **opts), "Euler").solve(h).ys
        np.testing.assert_allclose(ys["a"][-1], factor(-h) ** n, rtol=1e-14)
        np.testing.assert_allclose(ys["b"][-1], 2 * factor(-2 * h) ** n, rtol=1e-14)
    lifted = systems.get(
        "lifted_map", map=lambda y: {"a": y["a"] / 2}, y0={"a": 1.0}, h_train=0.5, steps=4
    )
    np.testing.assert_allclose(prepare(lifted, "Euler").solve(0.5).ys["a"][-1], 0.5**4)


@pytest.mark.parametrize(
    "y0, message",
    [
        ({"x": 1.0, "v": jnp.nan}, r"y0\['v'\] has non-finite entries"),
        ({"x": 1.0, "v": jnp.asarray(1)}, r"y0\['v'\] has dtype int.*not floating"),
        ({"x": 1.0, "v": [0.5, 1.0]}, r"y0\['v'\] is a python list"),
        ([1.0, 0.5], r"y0 is a python list .* jnp.asarray\(y0\)"),
        ({"x": 1.0, "v": "fast"}, r"y0\['v'\] is a str .* not an array"),
        ({"x": 1.0}, r"fails on y0 with leaf shapes \{'x': \(\)\}: KeyError: 'v'"),
    ],
)
def test_a_bad_pytree_state_is_refused_naming_the_leaf(y0, message):
    with pytest.raises(InvalidArgument, match=message):
        _oscillator().with_(y0=y0)


def test_a_field_returning_another_structure_is_refused():
    with pytest.raises(InvalidArgument, match="must return y0's structure"):
        _oscillator().with_(vector_field=lambda t, y, args, h: {"x": y["v"]})
    with pytest.raises(InvalidArgument, match=r"at y0\['v'\]; it must return y0's shape \(\)"):
        _oscillator().with_(vector_field=lambda t, y, args, h: {"x": y["v"], "v": jnp.ones(2)})
