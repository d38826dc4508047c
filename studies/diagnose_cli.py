"""`stepdep diagnose MODULE:ATTR [--out DIR] [--quick] [--h H] [--solver NAME]`.

MODULE is an importable module name (``mypkg.models``) or a path to a Python file
(``./my_model.py``); ATTR names a `analysis.systems.System` in it, or a field f(t, y, args, h)
that carries ``y0`` and ``t1`` attributes (or give ``--y0`` and ``--t1``). The command runs
`analysis.diagnose` and writes ``report.html`` (self-contained: open it in any browser) and
every table as parquet, with provenance, under ``--out`` (default
``diagnose-output/<system name>``), then prints the verdict.

Example:
    stepdep diagnose examples/byom.py:model --quick
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import shlex
import sys
from pathlib import Path

DEFAULT_OUT = Path("diagnose-output")


def add_parser(sub) -> None:
    """The `diagnose` subcommand's arguments."""
    p = sub.add_parser(
        "diagnose",
        help="diagnose what the step size does to your model: one HTML report and its tables",
    )
    p.add_argument("target", metavar="MODULE:ATTR", help="e.g. my_models:hypersolver or ./m.py:sys")
    p.add_argument("--out", type=Path, default=None, help=f"folder (default {DEFAULT_OUT}/NAME)")
    p.add_argument("--quick", action="store_true", help="fewer presets, tolerances and steps")
    p.add_argument("--h", type=float, default=None, help="the model's operating step h0")
    p.add_argument("--solver", default="Tsit5", help="the model's solver (with an error estimate)")
    p.add_argument("--y0", default=None, help="a bare field's y0, comma separated, e.g. 1,0")
    p.add_argument("--t1", type=float, default=None, help="a bare field's end time")
    p.add_argument(
        "--compile-cache",
        metavar="DIR",
        default=None,
        help="folder of jax's persistent compilation cache, or 'off' (default: as `run`)",
    )


def load_target(target: str):
    """The object MODULE:ATTR names; ValueError saying what is wrong otherwise."""
    module_name, sep, attr = target.rpartition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"{target!r} is not MODULE:ATTR (e.g. my_models:model or ./m.py:model)")
    if module_name.endswith(".py") or "/" in module_name:
        path = Path(module_name)
        if not path.is_file():
            raise ValueError(f"{module_name!r} is not a file")
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules.setdefault(path.stem, module)
        spec.loader.exec_module(module)
    else:
        sys.path.insert(0, str(Path.cwd()))
        try:
            module = importlib.import_module(module_name)
        except ImportError as e:
            raise ValueError(f"cannot import {module_name!r}: {e}") from e
    if not hasattr(module, attr):
        names = [n for n in dir(module) if not n.startswith("_")]
        raise ValueError(f"{module_name!r} has no attribute {attr!r}; it has {names}")
    return getattr(module, attr)


def _numbers(flag: str, text: str) -> list[float]:
    """`text` as comma-separated numbers; ValueError naming `flag` otherwise."""
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise ValueError(f"{flag}={text!r} is not a comma-separated list of numbers") from None


def run(args, argv: list[str] | None = None) -> int:
    """Run the diagnosis and write it; the exit status (2: bad input)."""
    from analysis import compile_cache, diagnosis
    from analysis.errors import InvalidArgument

    try:
        compile_cache.enable(args.compile_cache)  # before the first compilation
        model = load_target(args.target)
        y0 = None if args.y0 is None else _numbers("--y0", args.y0)
        if y0 is not None and len(y0) == 1:
            y0 = y0[0]
        result = diagnosis.diagnose(
            model, solver=args.solver, h=args.h, quick=args.quick, y0=y0, t1=args.t1
        )
    except (ValueError, InvalidArgument) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    name = result.system_name
    out = args.out or DEFAULT_OUT / (re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "model")
    # argv (or the command line) starts with "diagnose" itself
    command = "stepdep " + shlex.join(sys.argv[1:] if argv is None else argv)
    report = result.save(out, command=command)
    for r in result.verdict.itertuples():
        print(f"- {r.question}\n  {r.answer}\n  ({r.evidence})")
    failed = result.sections[result.sections["status"] != "ok"]
    for r in failed.itertuples():
        print(f"[{r.section}] failed: {r.message}", file=sys.stderr)
    print(f"report: {report}\ntables: {out}/*.parquet")
    return 1 if len(failed) else 0
