"""`diagnose` on three models of our own (tests/own_models.py), each number checked against what
is known for that kind of model: orders from the structure of the h-dependence, multipliers from
the solver's stability polynomial, a lifted map's h-free error estimate; the command line, the
stored tables read back and the report's HTML."""

import io
import sys
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import own_models as M
import pytest
from helpers import NEEDS_BROWSER, browser_ink, check_report_html

import studies.__main__ as runner
from analysis import diagnose, progress, run_store, stability
from analysis.diagnosis import SECTIONS, THRESHOLDS, Diagnosis
from analysis.errors import InvalidArgument

pytestmark = pytest.mark.slow  # three whole diagnoses (about 30 s each)

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def hypersolver(tmp_path_factory):
    """The Heun hypersolver at h0 = 0.2, through the command line; read back from its files."""
    out = tmp_path_factory.mktemp("diagnose") / "hyper"
    target = f"{HERE / 'own_models.py'}:hypersolver"
    argv = ["diagnose", target, "--quick", "--h", "0.2", "--solver", "Heun", "--out", str(out)]
    assert runner.main(argv) == 0
    tables, prov = run_store.read_tables(out)
    return Diagnosis.from_tables(tables), out, prov


@pytest.fixture(scope="module")
def mlp():
    return diagnose(M.h_input_mlp, quick=True, progress=False)


@pytest.fixture(scope="module")
def lifted():
    return diagnose(M.lifted_map, quick=True, progress=False)


def _orders(d, prefix):
    fits = d.orders[d.orders["formulation"].str.startswith(prefix)]
    return fits.set_index("solver")


def _answer(d, start):
    rows = d.verdict[d.verdict["question"].str.startswith(start)]
    assert len(rows) == 1, d.verdict["question"].tolist()
    return rows["answer"].iloc[0]


def _contains(fit, value):
    return fit["status"] == "ok" and fit["ci_low"] <= value <= fit["ci_high"]


# ---------------------------------------------------------------------------- every section ran


@pytest.mark.parametrize("name", ["hypersolver", "mlp", "lifted"])
def test_every_section_runs(name, request):
    d = request.getfixturevalue(name)
    d = d[0] if isinstance(d, tuple) else d
    assert d.sections["section"].tolist() == list(SECTIONS)
    assert (d.sections["status"] == "ok").all(), d.sections[["section", "message"]].values
    assert len(d.verdict) >= 5


# ------------------------------------------------------------------------------- the hypersolver


def test_hypersolver_orders_are_those_of_its_correction(hypersolver):
    """Heun + h²A³/6 cancels Heun's z³/6 defect: order 3 with Heun towards y' = Ay; Euler keeps
    order 1; Tsit5 sees an O(h²) field perturbation; frozen, it is an ODE (nominal orders)."""
    d = hypersolver[0]
    model = _orders(d, "model")
    assert _contains(model.loc["Heun"], 3.0), model.loc["Heun"]
    assert _contains(model.loc["Euler"], 1.0)
    assert _contains(model.loc["Tsit5"], 2.0)
    frozen = _orders(d, "frozen")  # quick: Heun only
    assert list(frozen.index) == ["Heun"] and _contains(frozen.loc["Heun"], 2.0)
    assert _answer(d, "What does the model converge to").startswith("Towards its h → 0 limit")


def test_hypersolver_is_reproduced_by_its_limit_not_by_freezing_h(hypersolver):
    d = hypersolver[0]
    f = d.formulations.set_index("formulation")
    limit = f.loc["h → 0 limit ODE", "gap"]
    frozen = f.loc[[i for i in f.index if i.startswith("ODE frozen")][0], "gap"]
    assert limit < THRESHOLDS["reproduces"] < frozen
    assert limit < frozen / 4  # the correction is O(h0³) from the limit, freezing O(h0²)
    assert _answer(d, "Does h act").startswith("h acts as an input")
    assert "The h → 0 limit ODE reproduces it" in _answer(d, "Which formulation")


def test_hypersolver_error_estimate_keeps_heuns_exponent_and_the_loop_is_smooth(hypersolver):
    """Heun's estimate |y_Heun - y_Euler| ~ h²/2·|f'f| whatever the O(h²) correction: k_a = 2."""
    loop = hypersolver[0].loop.set_index("preset")
    assert (loop["assumed_k"] == 2).all()
    assert np.allclose(loop["measured_k"], 2.0, atol=0.15)
    assert (loop["predicted"] == "smooth").all() and loop["agrees"].all()
    assert (loop["successful"]).all()


def test_hypersolver_largest_stable_step_is_that_of_heuns_polynomial(hypersolver):
    """|R(z)| = |1 + z + z²/2| with z = h·eig(A + h²A³/6), bisected here independently."""
    lam = np.linalg.eigvals(np.asarray(M.A))

    def stable(h):
        a = np.asarray(M.A)
        z = h * np.linalg.eigvals(a + h**2 * a @ a @ a / 6)
        return np.max(np.abs(1 + z + z**2 / 2)) <= 1

    lo, hi = 0.01, 3.0
    assert stable(lo) and not stable(hi)
    for _ in range(60):
        lo, hi = (0.5 * (lo + hi), hi) if stable(0.5 * (lo + hi)) else (lo, 0.5 * (lo + hi))
    steps = hypersolver[0].stable_steps
    assert len(steps) == 1 and steps["status"].iloc[0] == "unstable"
    assert steps["max_stable_step"].iloc[0] == pytest.approx(lo, rel=1e-5)
    assert lam.real.max() < 0  # a stable equilibrium of the limit: kind "equilibrium"
    assert set(hypersolver[0].fixed_points["kind"]) == {"equilibrium"}


def test_the_command_writes_a_report_that_parses_and_tables_with_provenance(hypersolver):
    d, out, prov = hypersolver
    html = (out / "report.html").read_text()
    page = check_report_html(html)
    for key in SECTIONS:
        assert key in page.ids
    assert len(page.images) >= 7  # 2 convergence, 2 controllers, loop, orbit, 2 discrete
    assert min(page.tables) >= 1 and len(page.tables) >= 10
    assert "stepdep diagnose " in html and "--solver Heun" in html
    assert "diagnose diagnose" not in html  # the command as typed, once
    assert prov["study"] == "diagnose" and "versions" in prov
    assert "Heun hypersolver" in html


@NEEDS_BROWSER
def test_a_browser_draws_the_diagnosis(hypersolver, tmp_path):
    ink = browser_ink(hypersolver[1] / "report.html", tmp_path, height=6000)
    assert 0.02 < ink < 0.6, f"{ink:.3f} of the screenshot is drawn"


def test_hypersolver_map_against_the_limit_is_heuns_matrix_power(hypersolver):
    """Heun on y' = Ãy, Ã = A + h²A³/6, is y_n = R(hÃ)^n·y0 with R(Z) = I + Z + Z²/2; the limit
    is expm(A·t)·y0: the discrete section's gap, recomputed here by matrix powers."""
    import scipy.linalg

    d = hypersolver[0]
    gap = d.map_gap
    h, a = d.h0, np.asarray(M.A)
    z = h * (a + h**2 * a @ a @ a / 6)
    r = np.eye(2) + z + z @ z / 2
    y0 = np.array([1.0, 0.0])
    want = [
        np.max(np.abs(np.linalg.matrix_power(r, n) @ y0 - scipy.linalg.expm(a * t) @ y0))
        for n, t in zip(gap["step"], gap["t"], strict=True)
    ]
    # the limit side is a Dopri8 solve at rtol = 1e-12, whose global error against expm here is
    # 2.7e-10 (measured): the gaps (1e-4 to 1e-2) agree to that
    np.testing.assert_allclose(gap["error"], want, rtol=0, atol=5e-10)
    # The modified equation expands f(·, h) about the limit f(·, 0) = A·y: Heun's map is
    # R(hÃ) = I + hA + (hA)²/2 + (hA)³/6 + O(h⁴) = expm(hA) + O(h⁴), so the corrections f₂, f₃
    # vanish and the defect with 0 or 1 of them is O(h⁴) (Heun alone on y' = Ay: O(h³)).
    for order, rows in d.defects.groupby("order"):
        fit = np.polyfit(np.log(rows["h"]), np.log(rows["defect"]), 1)[0]
        assert abs(fit - 4) < 0.15, (order, fit)


# ----------------------------------------------------------------------- the network reading h


def test_mlp_converges_at_order_one_towards_its_limit(mlp):
    """tanh(W1·y + w_h·h + b1) is smooth in h with ∂f/∂h ≠ 0: every solver converges at order 1
    towards f(·, 0); the frozen network is an ODE: Heun converges at its order 2."""
    model = _orders(mlp, "model")
    for solver in ("Euler", "Heun", "Tsit5"):
        assert _contains(model.loc[solver], 1.0), model.loc[solver]
    assert _contains(_orders(mlp, "frozen").loc["Heun"], 2.0)


def test_mlp_h_is_a_parameter_and_the_model_is_controller_sensitive(mlp):
    f = mlp.formulations.set_index("formulation")
    frozen = f.loc[[i for i in f.index if i.startswith("ODE frozen")][0], "gap"]
    assert frozen < 1e-4 < THRESHOLDS["reproduces"] < f.loc["h → 0 limit ODE", "gap"]
    assert _answer(mlp, "Does h act").startswith("h can be frozen as a parameter")
    spread = mlp.spread.sort_values("rtol").groupby("formulation").head(1)
    spread = spread.set_index("formulation")["spread"]
    assert spread["model"] > 1e3 * spread.drop("model").max()
    assert "controller-sensitive" in _answer(mlp, "Do the results depend")


def test_mlp_fixed_point_moved_with_h(mlp):
    """The network's equilibrium depends on h (w_h ≠ 0): f(y*, h0) = 0 but f(y*, 0) ≠ 0."""
    fp = mlp.fixed_points
    assert fp["kind"].tolist() == ["model"]
    y = jnp.asarray(fp[["y0", "y1"]].to_numpy()[0])
    assert np.max(np.abs(M.h_input_mlp.vector_field(0.0, y, None, mlp.h0))) < 1e-10
    assert np.max(np.abs(M.h_input_mlp.vector_field(0.0, y, None, 0.0))) > 1e-4


# ------------------------------------------------------------------------------ the lifted map


def test_lifted_map_error_estimate_ignores_h_so_every_preset_drifts(lifted):
    """Each RK stage of (Φ(y) - y)/h is y + Σ a_ij·(Φ(Y_j) - Y_j): nothing depends on h, k_a = 0,
    a pole at 1; the controller shrinks h without end (every attempt rejected)."""
    loop = lifted.loop
    assert np.all(np.abs(loop["measured_k"]) < 1e-6)
    assert (loop["predicted"] == "drifts").all() and loop["agrees"].all()
    assert not loop["successful"].any()
    assert _answer(lifted, "Do the results depend").startswith("No controller solves the model")


def test_lifted_map_has_no_convergence_and_only_its_frozen_field(lifted):
    model = _orders(lifted, "model")
    assert (model["status"] != "ok").all()
    assert _answer(lifted, "What does the model converge to").startswith("No clean convergence")
    assert "h → 0 limit ODE" not in set(lifted.formulations["formulation"])


def test_lifted_map_multipliers_are_the_stability_polynomial_at_dphi_minus_one(lifted):
    """At Φ's fixed point 0 the step map's Jacobian is R(DΦ - I): multipliers R(μ - 1) for the
    eigenvalues μ = 0.5, -0.4 of DΦ(0), and stable at every h (no h in the map at all)."""
    fp = lifted.fixed_points
    assert len(fp) == 1 and fp["kind"].iloc[0] == "equilibrium"
    got = np.sort([fp["multiplier_0_real"].iloc[0], fp["multiplier_1_real"].iloc[0]])
    want = np.sort(np.real(stability.tableau_amplification("Tsit5", np.array([-0.5, -1.4]))))
    np.testing.assert_allclose(got, want, rtol=1e-10)
    steps = lifted.stable_steps
    assert steps["status"].tolist() == ["stable"] and np.isinf(steps["max_stable_step"]).all()


# ----------------------------------------------------------------------------- input, progress


def test_bad_input_is_refused_before_anything_runs():
    with pytest.raises(InvalidArgument, match="solver='Euler' has no error estimate"):
        diagnose(M.hypersolver, solver="Euler")
    with pytest.raises(InvalidArgument, match="h=-0.1"):
        diagnose(M.hypersolver, h=-0.1)
    with pytest.raises(InvalidArgument, match="longer than the span"):
        diagnose(M.hypersolver, h=100.0)
    with pytest.raises(InvalidArgument, match="sections="):
        diagnose(M.hypersolver, sections=("convergence", "nonsense"))
    with pytest.raises(InvalidArgument, match="without y0"):
        diagnose(M.hypersolver_field)
    assert runner.main(["diagnose", "no_such_module_here:model"]) == 2
    assert runner.main(["diagnose", f"{HERE / 'own_models.py'}:nothing"]) == 2
    bad_y0 = ["diagnose", f"{HERE / 'own_models.py'}:hypersolver_field", "--y0", "1,x"]
    assert runner.main([*bad_y0, "--t1", "1"]) == 2


def test_a_run_that_blows_up_at_h0_decides_nothing():
    """Heun at h0 = 0.1 on y' = -(50 + h)·y: |R(-5.01)| ≈ 8.5 per step, infinite within 400
    steps; the finite start of the run must not count as the frozen ODE reproducing it."""
    d = diagnose(
        lambda t, y, a, h: -(50.0 + h) * y, y0=1.0, t1=40.0, h=0.1, solver="Heun",
        sections=("formulations",), progress=False,
    )  # fmt: skip
    assert (d.formulations["status"].iloc[1:] == "nonfinite").all()
    assert _answer(d, "Does h act").startswith("Undecided")
    assert _answer(d, "Which formulation").startswith("Only the discrete-time map")


def test_a_bare_field_with_y0_and_t1_and_a_progress_bar(monkeypatch):
    out = io.StringIO()
    monkeypatch.setattr(sys, "stderr", out)
    with progress.enabled(True):
        d = diagnose(M.hypersolver_field, y0=[1.0, 0.0], t1=2.0, h=0.1, sections=("formulations",))
    assert d.sections["status"].tolist() == ["ok"]
    assert d.settings["system"].iloc[0] == "hypersolver_field"
    assert "formulations" in out.getvalue() and "2/2" in out.getvalue()
