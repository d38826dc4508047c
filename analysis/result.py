"""Typed results: what an analysis returns, carrying its rows and what was derived from them.

An analysis (a convergence measurement, a stability scan, a controller spread, a map comparison,
a neural discretization matrix) returns a frozen dataclass derived from `Result` (declared with
``@dataclasses.dataclass(frozen=True, repr=False)``, so that it keeps the short repr) whose fields
are tidy DataFrames, e.g. ``ConvergenceResult(rows=..., fits=...)``. Derived tables (fitted orders,
bounds) are computed once, by the analysis, and stored in the result; a plot function draws
them and never fits again (the DiffEqDevTools.jl way: results carry their fits, plot recipes only
draw).

- ``result.to_frame()``: the main table (the first field), a copy.
- ``result.tables()`` / ``Cls.from_tables(tables)``: every table by field name, for the run store
  and back, so a figure redrawn from stored tables is the figure drawn from the live result.
- `require_columns`: what a plot calls first on its input; a missing column is an
  `InvalidArgument` naming it and the producer, never a raw KeyError.

Examples:
    >>> import dataclasses, pandas as pd
    >>> @dataclasses.dataclass(frozen=True, repr=False)
    ... class Demo(Result):
    ...     rows: pd.DataFrame
    ...     summary: pd.DataFrame
    >>> r = Demo(rows=pd.DataFrame({"h": [0.1, 0.2]}), summary=pd.DataFrame({"n": [2]}))
    >>> r
    Demo(rows: 2 rows × 1 columns, summary: 1 rows × 1 columns)
    >>> Demo.from_tables(r.tables()).to_frame()["h"].tolist()
    [0.1, 0.2]
    >>> require_columns(r.rows, ["h", "error"], "Demo.rows")
    Traceback (most recent call last):
    ...
    analysis.errors.InvalidArgument: Demo.rows lacks column 'error'; it needs ['h', 'error']
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

import pandas as pd

from .errors import InvalidArgument

__all__ = ["Result", "require_columns"]


@dataclasses.dataclass(frozen=True)
class Result:
    """Base of the typed results: a frozen dataclass whose fields are DataFrames.

    Examples:
        >>> import dataclasses, pandas as pd
        >>> @dataclasses.dataclass(frozen=True, repr=False)
        ... class Orders(Result):
        ...     fits: pd.DataFrame
        >>> Orders(fits=pd.DataFrame({"order": [2.0]})).to_frame()["order"].tolist()
        [2.0]
    """

    def tables(self) -> dict[str, pd.DataFrame]:
        """Every table of the result, by field name (the frames themselves, not copies)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_tables(cls, tables: dict[str, pd.DataFrame]):
        """The result from its `tables()` (e.g. read back from the run store).

        Raises:
            InvalidArgument: a table is missing.
        """
        names = [f.name for f in dataclasses.fields(cls)]
        missing = [n for n in names if n not in tables]
        if missing:
            raise InvalidArgument(
                f"tables={sorted(tables)} lacks {missing} for {cls.__name__}; it needs {names}"
            )
        return cls(**{n: tables[n] for n in names})

    def to_frame(self) -> pd.DataFrame:
        """The main table (the first field), a copy."""
        return getattr(self, dataclasses.fields(self)[0].name).copy()

    def __repr__(self) -> str:
        parts = [
            f"{name}: {len(t)} rows × {len(t.columns)} columns"
            if isinstance(t, pd.DataFrame)
            else f"{name}={t!r}"
            for name, t in self.tables().items()
        ]
        return f"{type(self).__name__}({', '.join(parts)})"

    def _repr_html_(self) -> str:
        return "".join(
            f"<h4>{type(self).__name__}.{name}</h4>{t.to_html(max_rows=20)}"
            for name, t in self.tables().items()
            if isinstance(t, pd.DataFrame)
        )


def require_columns(frame, columns: Iterable[str], what: str) -> pd.DataFrame:
    """`frame` if it is a DataFrame with every one of `columns`; else InvalidArgument.

    Args:
        frame: the plot's (or analysis's) input table.
        columns: the columns it needs.
        what: how to name the input in the message (e.g. "step_log(...) output").

    Returns:
        `frame`, unchanged.

    Examples:
        >>> import pandas as pd
        >>> require_columns(pd.DataFrame({"h": [0.1]}), ["h"], "rows").columns.tolist()
        ['h']
        >>> require_columns({"h": [0.1]}, ["h"], "rows")
        Traceback (most recent call last):
        ...
        analysis.errors.InvalidArgument: rows is a dict; it must be a DataFrame with columns ['h']
    """
    columns = list(columns)
    if not isinstance(frame, pd.DataFrame):
        raise InvalidArgument(
            f"{what} is a {type(frame).__name__}; it must be a DataFrame with columns {columns}"
        )
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        word = "column" if len(missing) == 1 else "columns"
        listed = repr(missing[0]) if len(missing) == 1 else repr(missing)
        raise InvalidArgument(f"{what} lacks {word} {listed}; it needs {columns}")
    return frame
