"""Studies: one module each, reading like a methods section.

A study module exposes `CONFIG` and `QUICK` (frozen dataclasses), `run(config)` returning a dict
of named DataFrames (no file I/O), `plot(results)` returning a dict of named Figures, and
`CAPTIONS` (figure name -> what it shows and what to look for); optionally `PAPER_TABLES` (names
of returned tables, or name -> LaTeX caption) that the runner also writes as CSV and LaTeX next
to the figures, and `pages(results)` (name -> a self-contained HTML page, written as NAME.html
next to the figures and linked from the gallery). The runner (`python -m studies`) does every
bit of I/O.
"""

import importlib

#: Registered studies, in the order `make figures` runs them.
STUDIES = (
    "demo",
    "fsal",
    "stability",
    "controllers",
    "convergence",
    "discrete_maps",
    "neural",
    "diagnose",
)


def load(name: str):
    """Import the study module `name`; a ValueError lists the studies otherwise."""
    if name not in STUDIES:
        import difflib

        close = difflib.get_close_matches(name, STUDIES, n=3)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ValueError(f"study {name!r} is unknown.{hint} Valid studies: {', '.join(STUDIES)}")
    return importlib.import_module(f"studies.{name}")


def describe(name: str) -> str:
    """The first line of a study's docstring."""
    return (load(name).__doc__ or "").strip().splitlines()[0]
