"""The diagnose study through the runner (QUICK: the catalog's perturbed family): a page per
family that parses, linked from the gallery, and tables that read back into a Diagnosis whose
numbers are those known for y' = -y + h·sin(y)."""

import pytest
from helpers import check_report_html

import studies.__main__ as runner
from analysis import run_store
from studies import diagnose as study

pytestmark = pytest.mark.slow  # a whole quick diagnosis through the runner


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    out = tmp_path_factory.mktemp("diagnose-study")
    assert runner.main(["run", "diagnose", "--quick", "--out", str(out)]) == 0
    return out


def test_a_page_per_family_linked_from_the_gallery(out):
    page = out / "figures" / "diagnose" / "perturbed.html"
    parsed = check_report_html(page.read_text())
    assert set(study.QUICK.sections) <= set(parsed.ids)
    gallery = (out / "figures" / "README.md").read_text()
    assert "[perturbed](diagnose/perturbed.html)" in gallery
    assert (out / "figures" / "diagnose" / "gaps.png").stat().st_size > 1000


def test_the_stored_tables_are_a_diagnosis_with_the_known_orders(out):
    """f = -y + h·sin(y): ∂f/∂h = sin(y) ≠ 0 along the solution, so order 1 for every solver."""
    tables, _ = run_store.read_tables(out / "results" / "diagnose")
    d = study.diagnoses(tables)["perturbed"]
    assert (d.sections["status"] == "ok").all()
    fits = d.orders[d.orders["formulation"].str.startswith("model")].set_index("solver")
    for solver in ("Euler", "Heun", "Tsit5"):
        fit = fits.loc[solver]
        assert fit["status"] == "ok" and fit["ci_low"] <= 1.0 <= fit["ci_high"], fit
