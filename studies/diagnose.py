"""Diagnose: what the step size does to the catalog's step-dependent families, one page each.

`analysis.diagnose` (the `stepdep diagnose` command) on each step-dependent family of the
catalog — a modified integrator (logistic + h/2·f'f), a perturbed field (-y + h·sin y) and a
lifted map ((Φ(y) - y)/h of the logistic map, h_train = 1) — in its quick form (three presets,
three tolerances, five steps; QUICK: one family, three sections). Each diagnosis is stored as
tables named FAMILY__TABLE and drawn as one self-contained HTML page,
figures/diagnose/FAMILY.html, linked from the gallery; the figure here is the one-line summary:
each family's verdict on h as an input.
"""

from __future__ import annotations

import dataclasses

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from analysis import systems
from analysis.diagnosis import SECTIONS, Diagnosis, diagnose
from analysis.plotting import paper_style

SEP = "__"  # FAMILY__TABLE


@dataclasses.dataclass(frozen=True)
class Config:
    # (family slug, catalog name, parameters as (key, value) pairs, solver)
    families: tuple = (
        ("modified_euler", "modified_euler", (), "Tsit5"),
        ("perturbed", "perturbed", (), "Tsit5"),
        ("lifted_map", "lifted_map", (), "Tsit5"),
    )
    quick: bool = True
    sections: tuple = SECTIONS


CONFIG = Config()
# the smoke test: one family, the sections that need no controller solves
QUICK = Config(
    families=(("perturbed", "perturbed", (), "Tsit5"),),
    sections=("convergence", "discrete", "formulations"),
)
PAPER_TABLES = ()

CAPTIONS = {
    "gaps": (
        "How far each continuous formulation of a step-dependent family is from the family run "
        "at its operating step h0 (relative gap of y(T), log scale; dotted: the 1e-2 threshold "
        "under which a formulation reproduces the model). Below the line for the frozen-h ODE, "
        "h acts as a parameter; below it for the limit, the h-dependence is a small correction. "
        "The full diagnosis of each family is its HTML page in this folder."
    ),
}


def run(config: Config = CONFIG) -> dict[str, pd.DataFrame]:
    """Every family's diagnosis, its tables named FAMILY__TABLE."""
    tables = {}
    for slug, name, params, solver in config.families:
        system = systems.get(name, **dict(params))
        d = diagnose(system, solver=solver, quick=config.quick, sections=config.sections)
        tables |= {f"{slug}{SEP}{t}": df for t, df in d.tables().items()}
    return tables


def diagnoses(results: dict[str, pd.DataFrame]) -> dict[str, Diagnosis]:
    """The stored tables as one Diagnosis per family."""
    slugs = dict.fromkeys(k.split(SEP)[0] for k in results)
    return {
        s: Diagnosis.from_tables(
            {k.split(SEP, 1)[1]: v for k, v in results.items() if k.startswith(s + SEP)}
        )
        for s in slugs
    }


def pages(results: dict[str, pd.DataFrame]) -> dict[str, str]:
    """One HTML page per family (written by the runner next to the figures)."""
    return {
        slug: d.report(command="python -m studies run diagnose")
        for slug, d in diagnoses(results).items()
    }


def plot(results: dict[str, pd.DataFrame]) -> dict:
    """The formulations' gaps per family."""
    ds = diagnoses(results)
    with paper_style():
        fig, ax = plt.subplots(figsize=(4.2, 0.5 + 0.45 * len(ds) * 3))
        labels, gaps, y = [], [], 0
        for slug, d in ds.items():
            for r in d.formulations.iloc[1:].itertuples():
                labels.append(f"{slug}: {r.formulation}")
                gaps.append(max(float(r.gap), 1e-17))
                y += 1
        ax.barh(np.arange(len(gaps)), gaps, color="0.45")
        ax.set_xscale("log")
        ax.axvline(1e-2, color="0.2", ls=":", lw=0.8)
        ax.set_yticks(np.arange(len(gaps)), labels)
        ax.invert_yaxis()
        ax.set_xlabel("relative gap of y(T) to the model at h0")
    return {"gaps": fig}
