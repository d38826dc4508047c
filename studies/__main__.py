"""The study runner: `python -m studies list | run NAME... | all [--quick] [--out DIR]`.

It does all the I/O for every study: runs `run(config)`, stores the tables with provenance
(analysis.results), draws `plot(results)` and writes each figure as PDF and PNG, then rewrites
the gallery page `figures/README.md`. A failing study is reported by name, the others still run,
and the exit status is non-zero.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path

os.environ.setdefault("JAX_ENABLE_X64", "1")

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

from analysis import results  # noqa: E402

from . import STUDIES, describe, load  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def save_figure(fig, stem: Path) -> list[Path]:
    """Write `fig` as PDF (vector) and PNG (300 dpi), with no timestamps in the metadata."""
    paths = []
    for ext, meta in (
        ("pdf", {"CreationDate": None, "ModDate": None}),
        ("png", {"Software": None}),
    ):
        buf = io.BytesIO()
        fig.savefig(buf, format=ext, metadata=meta)
        path = stem.with_suffix(f".{ext}")
        results.atomic_write_bytes(path, buf.getvalue())
        paths.append(path)
    return paths


def run_study(name: str, *, quick: bool, results_dir: Path, figures_dir: Path) -> float:
    """Run one study end to end; returns its wall time in seconds."""
    import matplotlib.pyplot as plt

    study = load(name)
    config = study.QUICK if quick else study.CONFIG
    started = datetime.now(UTC)
    t = time.perf_counter()
    tables = study.run(config)
    prov = results.provenance(name, config, started=started)
    prov["quick"] = quick
    results.write_tables(results_dir / name, tables, prov)
    for fig_name, fig in study.plot(tables).items():
        save_figure(fig, figures_dir / name / fig_name)
        plt.close(fig)
    return time.perf_counter() - t


def write_gallery(figures_dir: Path) -> None:
    """figures/README.md: one section per study, each figure with its caption and command."""
    lines = [
        "# Figures",
        "",
        "Regenerate everything with `make figures`; one study with `python -m studies run NAME`.",
        "",
    ]
    for name in STUDIES:
        study = load(name)
        lines += [f"## {name}", "", describe(name), ""]
        for fig_name, caption in getattr(study, "CAPTIONS", {}).items():
            png = Path(name) / f"{fig_name}.png"
            if (figures_dir / png).exists():
                lines += [
                    f"### {fig_name}",
                    "",
                    f"![{fig_name}]({png.as_posix()})",
                    "",
                    caption,
                    "",
                    f"Regenerate: `python -m studies run {name}`",
                    "",
                ]
    results.atomic_write_bytes(figures_dir / "README.md", "\n".join(lines).encode())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m studies", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list the studies")
    run = sub.add_parser("run", help="run studies and write their results and figures")
    run.add_argument("names", nargs="+", help="study names, or 'all'")
    run.add_argument("--quick", action="store_true", help="the small QUICK configs")
    run.add_argument("--out", type=Path, default=ROOT, help="folder for results/ and figures/")
    args = parser.parse_args(argv)
    if args.command == "list":
        for name in STUDIES:
            print(f"{name:16s} {describe(name)}")
        return 0
    names = list(STUDIES) if args.names == ["all"] else args.names
    for name in names:
        load(name)  # unknown names fail before anything runs
    failed = []
    for name in names:
        print(f"[{name}] running{' (quick)' if args.quick else ''} ...", flush=True)
        try:
            seconds = run_study(
                name,
                quick=args.quick,
                results_dir=args.out / "results",
                figures_dir=args.out / "figures",
            )
            print(f"[{name}] done in {seconds:.1f} s", flush=True)
        except Exception:
            traceback.print_exc()
            print(f"[{name}] FAILED", flush=True)
            failed.append(name)
    write_gallery(args.out / "figures")
    if failed:
        print(f"failed studies: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
