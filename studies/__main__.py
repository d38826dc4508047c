"""The study runner: `python -m studies list | run NAME... | all | show NAME` (or `stepdep ...`).

It does all the I/O for every study. `run` looks up the stored results (`analysis.results`):
they are reused when config, package versions, x64 flag and library sources are unchanged and
every file matches its checksum; otherwise (or with `--force`) it says why and runs
`run(config)`, storing each finished sweep chunk as it completes, so an interrupted run (Ctrl-C,
kill -9) resumes from its finished chunks. Then it stores the tables with provenance, draws
`plot(results)` as PDF + PNG (deterministic bytes), exports the study's `PAPER_TABLES` as CSV and
LaTeX, and rewrites the gallery `figures/README.md`. A failing study is reported by name, the
others still run, and the exit status is non-zero.

Example:
    python -m studies run demo --quick --out /tmp/figs
    python -m studies show demo
    python -m studies run convergence --executor dask --scheduler tcp://10.0.0.5:8786
"""

from __future__ import annotations

import argparse
import os
import random
import shlex
import shutil
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path

os.environ.setdefault("JAX_ENABLE_X64", "1")

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from analysis import distributed, results  # noqa: E402

from . import STUDIES, describe, load  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CHUNKS = "chunks"  # per-study folder of finished sweep chunks while a run is unfinished


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"


class Progress:
    """Progress of each sweep of a study: a bar on a terminal, plain log lines otherwise.

    Shows chunks and solves done, elapsed time and the remaining time estimated from the solves
    computed so far (chunks loaded from an interrupted run count as done but not toward the rate).
    """

    def __init__(self, study: str, stream=None, *, log_every: float = 10.0):
        self.study = study
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.log_every = log_every
        self.sweeps = 0

    def begin(self, chunks: int, solves: int) -> None:
        self.sweeps += 1
        self.chunks, self.solves = chunks, solves
        self.chunks_done = self.solves_done = self.solves_cached = 0
        self.start = self.last_log = time.perf_counter()

    def advance(self, chunks: int, solves: int, cached: bool) -> None:
        self.chunks_done += chunks
        self.solves_done += solves
        self.solves_cached += solves if cached else 0
        now = time.perf_counter()
        finished = self.chunks_done >= self.chunks
        if self.tty or finished or now - self.last_log >= self.log_every:
            self.last_log = now
            self._show(now - self.start, finished)

    def _show(self, elapsed: float, finished: bool) -> None:
        computed = self.solves_done - self.solves_cached
        left = self.solves - self.solves_done
        eta = f"~{_clock(elapsed / computed * left)} left" if computed and left else "-"
        text = (
            f"[{self.study}] sweep {self.sweeps}: {self.chunks_done}/{self.chunks} chunks, "
            f"{self.solves_done}/{self.solves} solves"
            + (f" ({self.solves_cached} resumed)" if self.solves_cached else "")
            + f", {_clock(elapsed)} elapsed, {eta}"
        )
        if self.tty:
            width = 20
            filled = int(width * self.chunks_done / max(self.chunks, 1))
            bar = "#" * filled + "." * (width - filled)
            print(f"\r{bar} {text}\033[K", end="\n" if finished else "", file=self.stream)
        else:
            print(text, file=self.stream)
        self.stream.flush()


def _seed() -> None:
    """Fix numpy's and Python's global random state (jax keys are explicit in the studies)."""
    random.seed(0)
    np.random.seed(0)


def paper_tables(study) -> dict[str, str | None]:
    """The study's `PAPER_TABLES` (a tuple of table names, or a dict name -> caption)."""
    declared = getattr(study, "PAPER_TABLES", ())
    return dict(declared) if isinstance(declared, dict) else dict.fromkeys(declared)


def table_latex(df: pd.DataFrame, caption: str | None = None) -> str:
    """A booktabs LaTeX table (pandas Styler): floats to 4 significant digits, text escaped."""
    floats = df.select_dtypes("float").columns
    styler = df.style.hide(axis="index").format(escape="latex")
    styler = styler.format("{:.4g}", subset=list(floats), na_rep="--")
    styler = styler.format_index(escape="latex", axis=1)
    return styler.to_latex(hrules=True, caption=caption, position_float="centering")


def _load_fresh(folder: Path, current: dict) -> tuple[dict | None, str | None]:
    """(tables, None) when the stored results stand for `current`, else (None, reason)."""
    try:
        stored = results.read_provenance(folder)
        if stored is not None and bool(stored.get("quick")) != current["quick"]:
            which = "QUICK" if stored.get("quick") else "full"
            return None, f"stored results are from the {which} config"
        reason = results.stale_reason(stored, current)
        if reason is not None:
            return None, reason
        tables, _ = results.read_tables(folder)
        return tables, None
    except results.CorruptResult as e:
        return None, f"stored result is corrupt, recomputing: {e}"


def run_study(
    name: str,
    *,
    quick: bool,
    results_dir: Path,
    figures_dir: Path,
    force: bool = False,
    chunk_size: int | None = None,
    log=print,
) -> dict:
    """Run (or reuse) one study, then draw its figures and export its paper tables.

    Returns {"seconds", "cached", "reason", "resumed_chunks"}.
    """
    from analysis import plotting

    study = load(name)
    config = study.QUICK if quick else study.CONFIG
    folder = results_dir / name
    t = time.perf_counter()
    current = {**results.provenance(name, config, sources=[study.__file__]), "quick": quick}
    tables, reason = (None, "--force") if force else _load_fresh(folder, current)
    resumed = 0
    if tables is None:
        log(f"[{name}] computing{' (quick)' if quick else ''}: {reason}")
        key = results.cache_key(current)
        for old in (folder / CHUNKS).glob("*"):  # chunks of other inputs can never be reused
            if old.name != key or force:
                why = "--force" if force else "they were made from other inputs"
                log(f"[{name}] discarding {len(list(old.glob('*.npz')))} stored chunk(s): {why}")
                shutil.rmtree(old, ignore_errors=True)
        store = results.ChunkStore(
            folder / CHUNKS / key, chunk_size=chunk_size, progress=Progress(name), on_event=log
        )
        with results.recording(store):
            _seed()
            tables = study.run(config)
        resumed = store.loaded
        if resumed:
            log(
                f"[{name}] resumed {resumed} finished chunk(s) already stored (by an interrupted "
                "run, or by an identical earlier sweep)"
            )
        # The provenance snapshot taken before the run (sources as they were when it started).
        finished = datetime.now(UTC).isoformat(timespec="seconds")
        prov = {**current, "finished": finished, "chunk_size": chunk_size}
        results.write_tables(folder, tables, prov)
        shutil.rmtree(folder / CHUNKS, ignore_errors=True)
    else:
        log(f"[{name}] stored results are current; reusing them (--force recomputes)")
    out = figures_dir / name
    _seed()
    for fig_name, fig in study.plot(tables).items():
        for fmt in ("pdf", "png"):
            results.atomic_write_bytes(out / f"{fig_name}.{fmt}", plotting.render(fig, fmt))
        plotting.close(fig)
    for table, caption in paper_tables(study).items():
        if table not in tables:
            raise ValueError(
                f"PAPER_TABLES names {table!r}, but run() returned only {sorted(tables)}"
            )
        df = tables[table]
        csv = df.to_csv(index=False, lineterminator="\n")
        results.atomic_write_bytes(out / f"{table}.csv", csv.encode())
        results.atomic_write_bytes(out / f"{table}.tex", table_latex(df, caption).encode())
    return {
        "seconds": time.perf_counter() - t,
        "cached": reason is None,
        "reason": reason,
        "resumed_chunks": resumed,
    }


def _has_outputs(folder: Path) -> bool:
    return folder.is_dir() and any(p.is_file() for p in folder.iterdir())


def write_gallery(figures_dir: Path, results_dir: Path, out: str | None = None) -> None:
    """figures/README.md: one section per study, each figure with its caption and command.

    Only studies with files in `figures_dir` are listed. `out` is the `--out` folder as the
    user gave it, or None for the default (the repository): then the commands omit `--out`.
    """
    flag = "" if out is None else f" --out {out}"
    made_by = (
        "Generated by `make figures` (`python -m studies run all`)"
        if out is None
        else f"Generated by `python -m studies run NAME...{flag}`"
    )
    lines = [
        "# Figures",
        "",
        f"{made_by}; do not edit by hand.",
        "Each figure is a PDF (for papers) and a PNG (300 dpi, shown here).",
        "",
    ]
    for name in STUDIES:
        if not _has_outputs(figures_dir / name):
            continue
        try:
            study = load(name)
        except Exception as e:  # a broken study must not take the gallery down with it
            lines += [f"## {name}", "", f"(the study module does not import: {e})", ""]
            continue
        try:
            quick = bool((results.read_provenance(results_dir / name) or {}).get("quick"))
        except results.CorruptResult:
            quick = False
        command = f"python -m studies run {name}" + (" --quick" if quick else "") + flag
        lines += [f"## {name}", "", describe(name), ""]
        if quick:
            lines += ["*These figures come from the small QUICK config.*", ""]
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
                    f"PDF: [{fig_name}.pdf]({name}/{fig_name}.pdf). Regenerate: `{command}`",
                    "",
                ]
        tables = [t for t in paper_tables(study) if (figures_dir / name / f"{t}.csv").exists()]
        if tables:
            links = ", ".join(
                f"{t} ([CSV]({name}/{t}.csv), [LaTeX]({name}/{t}.tex))" for t in tables
            )
            lines += [f"Tables: {links}.", ""]
    results.atomic_write_bytes(figures_dir / "README.md", "\n".join(lines).encode())


def show(name: str, *, results_dir: Path, figures_dir: Path) -> int:
    """Print where a study's results and figures are, their provenance and a summary table."""
    study = load(name)
    folder = results_dir / name
    print(f"{name}: {describe(name)}")
    try:
        prov = results.read_provenance(folder)
        tables = results.read_tables(folder)[0] if prov else {}
    except results.CorruptResult as e:
        print(f"results: {folder} is corrupt ({e}); `run {name}` recomputes it")
        return 1
    if prov is None:
        print(f"results: none stored in {folder}; run `python -m studies run {name}`")
        return 1
    quick = bool(prov.get("quick"))
    config = study.QUICK if quick else study.CONFIG
    current = results.provenance(name, config, sources=[study.__file__])
    reason = results.stale_reason(prov, current)
    print(f"results: {folder}/ ({', '.join(f'{t}.parquet' for t in prov['tables'])})")
    figs = sorted(p.name for p in (figures_dir / name).glob("*") if p.is_file())
    print(f"figures: {figures_dir / name}/ ({', '.join(figs) or 'none'})")
    print(f"status:  {'current' if reason is None else 'stale: ' + reason}")
    versions = prov.get("versions") or {}
    print(
        f"config:  {'QUICK' if quick else 'CONFIG'} {prov.get('config_hash')} {prov.get('config')}"
    )
    print(
        f"made:    {prov.get('started')} -> {prov.get('finished')} on {prov.get('device')}, "
        f"x64={prov.get('x64')}, git {str(prov.get('git_commit'))[:10]}"
        f"{' (dirty)' if prov.get('git_dirty') else ''}"
    )
    print("versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    for table, df in tables.items():
        print(f"\n{table}: {len(df)} rows x {len(df.columns)} columns")
        summary = paper_tables(study) or {min(tables, key=lambda t: len(tables[t])): None}
        if table in summary:
            with pd.option_context("display.width", 120, "display.max_columns", 12):
                print(df.head(20).to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    return 0


def _shown(out: Path, default: bool) -> Path:
    """`--out` as the user gave it; the default (the repository) relative to the working
    directory when it is inside it (so `figures/demo/` from the repository root)."""
    if not default:
        return out
    try:
        return ROOT.relative_to(Path.cwd().resolve())
    except ValueError:
        return ROOT


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m studies", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list the studies with one-line descriptions")
    run = sub.add_parser("run", help="run studies and write their results, figures and gallery")
    run.add_argument("names", nargs="+", help="study names, or 'all'")
    run.add_argument("--quick", action="store_true", help="the small QUICK configs")
    run.add_argument("--force", action="store_true", help="recompute even if results are current")
    run.add_argument("--out", type=Path, default=ROOT, help="folder for results/ and figures/")
    run.add_argument(
        "--chunk-size", type=int, default=None, help="solves per stored sweep chunk (default 128)"
    )
    run.add_argument(
        "--executor",
        choices=distributed.EXECUTORS,
        default="local",
        help="where sweep chunks run: here, sharded over this machine's devices, or on Dask",
    )
    run.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        default=None,
        help="with --executor dask: a running Dask scheduler (default: start a LocalCluster)",
    )
    sh = sub.add_parser("show", help="where a study's results are, their provenance, a summary")
    sh.add_argument("name")
    sh.add_argument("--out", type=Path, default=ROOT, help="folder holding results/ and figures/")
    args = parser.parse_args(argv)
    if args.command == "list":
        for name in STUDIES:
            print(f"{name:16s} {describe(name)}")
        return 0
    results_dir, figures_dir = args.out / "results", args.out / "figures"
    names = list(STUDIES) if getattr(args, "names", None) == ["all"] else getattr(args, "names", [])
    try:
        for name in names or [args.name]:
            load(name)  # unknown names fail before anything runs
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.command == "show":
        return show(args.name, results_dir=results_dir, figures_dir=figures_dir)
    if args.chunk_size is not None and args.chunk_size < 1:
        print(f"error: --chunk-size={args.chunk_size} must be ≥ 1", file=sys.stderr)
        return 2
    try:  # every sweep of the studies below runs there (a Dask client stays open till exit)
        distributed.activate(args.executor, scheduler=args.scheduler)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    default_out = args.out.resolve() == ROOT
    shown = _shown(args.out, default_out)
    failed = []
    total = time.perf_counter()
    for name in names:
        try:
            outcome = run_study(
                name,
                quick=args.quick,
                force=args.force,
                chunk_size=args.chunk_size,
                results_dir=results_dir,
                figures_dir=figures_dir,
            )
            print(f"[{name}] done in {outcome['seconds']:.1f} s", flush=True)
            files = sum(p.is_file() for p in (figures_dir / name).glob("*"))
            print(
                f"[{name}] figures: {shown / 'figures' / name}/ ({files} file"
                f"{'' if files == 1 else 's'}), results: {shown / 'results' / name}/",
                flush=True,
            )
        except KeyboardInterrupt:
            print(
                f"\n[{name}] interrupted; its finished sweep chunks are kept under "
                f"{results_dir / name / CHUNKS}, and the same command resumes from them",
                file=sys.stderr,
            )
            return 130
        except Exception:
            traceback.print_exc()
            print(f"[{name}] FAILED", flush=True)
            failed.append(name)
    write_gallery(figures_dir, results_dir, None if default_out else shlex.quote(str(args.out)))
    print(f"all done in {time.perf_counter() - total:.1f} s", flush=True)
    if failed:
        print(f"failed studies: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
