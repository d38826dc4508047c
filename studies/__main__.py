"""The study runner: `python -m studies list | run NAME... | all | show NAME | diagnose MODULE:ATTR`
(or `stepdep ...`; diagnose: `studies.diagnose_cli`).

It does all the I/O for every study. `run` looks up the stored results (`analysis.run_store`):
they are reused when config, package versions, x64 flag and library sources are unchanged and
every file matches its checksum; otherwise (or with `--force`) it says why and runs
`run(config)`, storing each finished sweep chunk as it completes, so an interrupted run (Ctrl-C,
kill -9) resumes from its finished chunks. Then it stores the tables with provenance, draws
`plot(results)` as PDF + PNG (deterministic bytes), exports the study's `PAPER_TABLES` as CSV and
LaTeX, and rewrites the gallery `figures/README.md`. A failing study (or a gallery that cannot
be written) is reported by name, the others still run, the summary prints and the exit status is
non-zero.

Output goes under the working directory (`results/`, `figures/`; `make figures` runs from the
repository root), or with `--quick` under its `quick-output/`, or under `--out DIR`. Each study
runs under a lock (`results/.NAME.lock`): a second runner of the same study on the same output
waits for the first, and its tables, provenance and figures are published as one unit.
Temporary files and chunk folders a killed run left behind are removed by the next run.

Example:
    python -m studies run demo --quick --out /tmp/figs
    python -m studies show demo
    python -m studies run convergence --executor dask --scheduler tcp://10.0.0.5:8786
"""

from __future__ import annotations

import argparse
import builtins
import contextlib
import fcntl
import os
import random
import shlex
import stat
import sys
import time
import traceback
import unicodedata
from datetime import UTC, datetime
from pathlib import Path

os.environ.setdefault("JAX_ENABLE_X64", "1")
os.environ.setdefault("MPLBACKEND", "Agg")  # figures are files here; no display is assumed

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from analysis import chunk_store, compile_cache, distributed, run_store  # noqa: E402

from . import STUDIES, describe, diagnose_cli, load  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CHUNKS = "chunks"  # per-study folder of finished sweep chunks while a run is unfinished
QUICK_OUT = Path("quick-output")  # default --out of --quick runs, under the working directory
LOCK = ".{name}.lock"  # per-study lock file in results/ (fcntl.flock)
GALLERY = "(gallery)"  # the lock name of figures/README.md


@contextlib.contextmanager
def study_lock(results_dir: Path, name: str, *, shared: bool = False, log=print):
    """Hold the study's lock (`results/.NAME.lock`, an fcntl.flock) for the block.

    A runner holds it exclusively from the cache lookup until its tables, provenance and figures
    are all written, so a second runner of the same study on the same output waits (saying so)
    instead of deleting the first one's chunks or mixing their outputs; `show` holds it shared,
    so it never reads a half-published study. The lock is released by the kernel when the
    process dies (kill -9 included), so a killed run never blocks the next one.
    """
    folder = results_dir / name
    if not shared:
        results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / LOCK.format(name=name)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
    except OSError as e:
        if shared:  # a read-only results folder can still be shown
            yield
            return
        raise RuntimeError(f"cannot create the lock file {path}: {e}") from e
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise RuntimeError(f"{path} is not a regular file; refusing to use it as a lock")
        mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
            log(
                f"[{name}] another runner (pid {_escape(holder)}) is writing {folder}; waiting "
                "for it to finish (Ctrl-C to stop waiting)"
            )
            sys.stdout.flush()
            started = time.perf_counter()
            fcntl.flock(fd, mode)
            log(f"[{name}] the other runner finished after {time.perf_counter() - started:.1f} s")
        if not shared:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def _escape(text) -> str:
    """`text` with control characters (ANSI escapes, carriage returns, ...) shown as escapes, so
    a stored string cannot drive the terminal. Newlines and tabs are kept."""
    return "".join(
        c
        if c in "\n\t" or unicodedata.category(c)[0] != "C"
        else c.encode("unicode_escape").decode()
        for c in str(text)
    )


def _clear_chunks(folder: Path, keep: str | None, log, why: str) -> None:
    """Delete the chunk stores under `folder` (results/NAME/chunks) except `keep`, and `folder`
    itself when nothing else is left in it (`chunk_store.remove_chunk_stores`: only what a
    ChunkStore writes, never through a symlink; anything else is left and reported)."""
    name = folder.parent.name
    removed = chunk_store.remove_chunk_stores(
        folder, keep=keep, on_event=lambda message: log(f"[{name}] {message}")
    )
    if removed and why:
        log(f"[{name}] discarded {len(removed)} stored chunk folder(s): {why}")


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
        stored = run_store.read_provenance(folder)
        if stored is not None and bool(stored.get("quick")) != current["quick"]:
            which = "QUICK" if stored.get("quick") else "full"
            return None, f"stored results are from the {which} config"
        reason = run_store.stale_reason(stored, current)
        if reason is not None:
            return None, reason
        tables, _ = run_store.read_tables(folder)
        return tables, None
    except run_store.CorruptResult as e:
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

    The whole of it runs under the study's lock (`study_lock`): its tables, provenance and
    figures are published as one unit. Temporary files a killed run left behind and chunk
    folders left by a run killed after its provenance was written are removed first.

    Returns {"seconds", "cached", "reason", "resumed_chunks"}.
    """
    study = load(name)
    folder = results_dir / name
    t = time.perf_counter()
    with study_lock(results_dir, name, log=log):
        for place in (folder, figures_dir / name):
            litter = run_store.remove_litter(place)
            if litter:
                log(f"[{name}] removed {len(litter)} temporary file(s) left in {place}")
        outcome = _run_locked(study, name, quick, folder, figures_dir, force, chunk_size, log)
    return {"seconds": time.perf_counter() - t, **outcome}


def _run_locked(study, name, quick, folder, figures_dir, force, chunk_size, log) -> dict:
    from analysis import plotting

    config = study.QUICK if quick else study.CONFIG
    current = {**run_store.provenance(name, config, sources=[study.__file__]), "quick": quick}
    tables, reason = (None, "--force") if force else _load_fresh(folder, current)
    resumed = 0
    if tables is None:
        log(f"[{name}] computing{' (quick)' if quick else ''}: {_escape(reason)}")
        key = run_store.cache_key(current)
        # chunks of other inputs can never be reused (no other runner is writing them: we hold
        # the study's lock)
        why = "--force" if force else "they were made from other inputs"
        _clear_chunks(folder / CHUNKS, None if force else key, log, why)
        store = chunk_store.ChunkStore(
            folder / CHUNKS / key, chunk_size=chunk_size, progress=Progress(name), on_event=log
        )
        with chunk_store.recording(store):
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
        run_store.write_tables(folder, tables, prov)
        _clear_chunks(folder / CHUNKS, None, log, "")
    else:
        log(f"[{name}] stored results are current; reusing them (--force recomputes)")
        if (folder / CHUNKS).exists() or (folder / CHUNKS).is_symlink():
            why = "left by a run killed after its results were stored"
            _clear_chunks(folder / CHUNKS, None, log, why)
    out = figures_dir / name
    _seed()
    for fig_name, fig in study.plot(tables).items():
        for fmt in ("pdf", "png"):
            run_store.atomic_write_bytes(out / f"{fig_name}.{fmt}", plotting.render(fig, fmt))
        plotting.close(fig)
    for page, html in (study.pages(tables) if hasattr(study, "pages") else {}).items():
        run_store.atomic_write_bytes(out / f"{page}.html", html.encode())
    for table, caption in paper_tables(study).items():
        if table not in tables:
            raise ValueError(
                f"PAPER_TABLES names {table!r}, but run() returned only {sorted(tables)}"
            )
        df = tables[table]
        csv = df.to_csv(index=False, lineterminator="\n")
        run_store.atomic_write_bytes(out / f"{table}.csv", csv.encode())
        run_store.atomic_write_bytes(out / f"{table}.tex", table_latex(df, caption).encode())
    return {"cached": reason is None, "reason": reason, "resumed_chunks": resumed}


def _has_outputs(folder: Path) -> bool:
    return folder.is_dir() and any(p.is_file() for p in folder.iterdir())


def write_gallery(
    figures_dir: Path, results_dir: Path, out: str | None = None, quick: bool = False
) -> None:
    """figures/README.md: one section per study, each figure with its caption and command.

    Only studies with files in `figures_dir` are listed. `out` is the `--out` folder as the
    user gave it, or None for the default (`.`, or `quick-output/` for a `quick` run): then the
    commands omit `--out`.
    """
    flag = "" if out is None else f" --out {out}"
    if out is None and quick:
        made_by = "Generated by `make quick-figures` (`python -m studies run all --quick`)"
    elif out is None:
        made_by = "Generated by `make figures` (`python -m studies run all`)"
    else:
        made_by = f"Generated by `python -m studies run NAME...{flag}`"
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
            quick = bool((run_store.read_provenance(results_dir / name) or {}).get("quick"))
        except run_store.CorruptResult:
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
        pages = sorted(p.name for p in (figures_dir / name).glob("*.html"))
        if pages:
            links = ", ".join(f"[{p[:-5]}]({name}/{p})" for p in pages)
            lines += [f"Pages (self-contained HTML, open in a browser): {links}.", ""]
        tables = [t for t in paper_tables(study) if (figures_dir / name / f"{t}.csv").exists()]
        if tables:
            links = ", ".join(
                f"{t} ([CSV]({name}/{t}.csv), [LaTeX]({name}/{t}.tex))" for t in tables
            )
            lines += [f"Tables: {links}.", ""]
    run_store.atomic_write_bytes(figures_dir / "README.md", "\n".join(lines).encode())


def show(name: str, *, results_dir: Path, figures_dir: Path) -> int:
    """Print where a study's results and figures are, their provenance and a summary table.

    Everything printed is escaped (`_escape`): a stored string cannot send ANSI escape codes to
    the terminal. Holds the study's lock shared, so a study being written is not shown half-way.
    """
    folder = results_dir / name
    if folder.is_dir() and not folder.is_symlink():
        with study_lock(
            results_dir, name, shared=True, log=lambda m: print(_escape(m), file=sys.stderr)
        ):
            return _show(name, folder, figures_dir)
    return _show(name, folder, figures_dir)


def _show(name: str, folder: Path, figures_dir: Path) -> int:
    study = load(name)

    def print(*parts, **kwargs):  # noqa: A001 - every line of show goes through _escape
        builtins.print(*(_escape(part) for part in parts), **kwargs)

    print(f"{name}: {describe(name)}")
    try:
        prov = run_store.read_provenance(folder)
        tables = run_store.read_tables(folder)[0] if prov else {}
    except run_store.CorruptResult as e:
        print(f"results: {folder} is corrupt ({e}); `run {name}` recomputes it")
        return 1
    if prov is None:
        print(f"results: none stored in {folder}; run `python -m studies run {name}`")
        quick = QUICK_OUT / "results" / name / "provenance.json"
        if folder.parent == Path("results") and quick.exists():
            print(f"(quick results are in {quick.parent}: `python -m studies show {name} --quick`)")
        return 1
    quick = bool(prov.get("quick"))
    config = study.QUICK if quick else study.CONFIG
    current = run_store.provenance(name, config, sources=[study.__file__])
    reason = run_store.stale_reason(prov, current)
    print(f"results: {folder}/ ({', '.join(f'{t}.parquet' for t in prov['tables'])})")
    figs = sorted(
        p.name
        for p in (figures_dir / name).glob("*")
        if p.is_file() and not p.is_symlink() and not p.name.startswith(".")
    )
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


def default_out(quick: bool) -> Path:
    """Where `run` writes without `--out`: the working directory (so `make figures`, run from the
    repository root, writes the committed `figures/` and `results/` there), or with `--quick`
    its `quick-output/` folder, so a quick run never overwrites full-config figures."""
    return QUICK_OUT if quick else Path()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m studies", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list the studies with one-line descriptions")
    run = sub.add_parser("run", help="run studies and write their results, figures and gallery")
    run.add_argument("names", nargs="+", help="study names, or 'all'")
    run.add_argument("--quick", action="store_true", help="the small QUICK configs")
    run.add_argument("--force", action="store_true", help="recompute even if results are current")
    run.add_argument(
        "--out",
        type=Path,
        default=None,
        help="folder for results/ and figures/ (default: the working directory; with --quick "
        f"{QUICK_OUT}/ under it)",
    )
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
    run.add_argument(
        "--compile-cache",
        metavar="DIR",
        default=None,
        help="folder of jax's persistent compilation cache, or 'off' (default: "
        f"${compile_cache.ENV}, else ~/.cache/stepdep/jax)",
    )
    sh = sub.add_parser("show", help="where a study's results are, their provenance, a summary")
    sh.add_argument("name")
    sh.add_argument(
        "--out", type=Path, default=None, help="folder holding results/ and figures/ (default: .)"
    )
    sh.add_argument("--quick", action="store_true", help=f"default --out {QUICK_OUT}/ (quick runs)")
    diagnose_cli.add_parser(sub)
    args = parser.parse_args(argv)
    if args.command == "diagnose":
        return diagnose_cli.run(args, argv)
    if args.command == "list":
        for name in STUDIES:
            print(f"{name:16s} {describe(name)}")
        return 0
    is_default = args.out is None
    out = default_out(args.quick) if is_default else args.out
    results_dir, figures_dir = out / "results", out / "figures"
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
    try:  # before the first compilation: jax reads the cache setting once
        compile_cache.enable(args.compile_cache)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:  # every sweep of the studies below runs there (a Dask client stays open till exit)
        distributed.activate(args.executor, scheduler=args.scheduler)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    shown = out
    failed = []
    total = time.perf_counter()
    for name in names:
        try:
            compiling = compile_cache.seconds_compiling()
            outcome = run_study(
                name,
                quick=args.quick,
                force=args.force,
                chunk_size=args.chunk_size,
                results_dir=results_dir,
                figures_dir=figures_dir,
            )
            compiling = compile_cache.seconds_compiling() - compiling
            print(
                f"[{name}] done in {outcome['seconds']:.1f} s "
                f"({compiling:.1f} s of it tracing and compiling)",
                flush=True,
            )
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
    try:  # the summary below prints and the status is non-zero even when the gallery fails
        with study_lock(results_dir, GALLERY):  # one gallery writer at a time
            if run_store.remove_litter(figures_dir):
                print(f"removed temporary file(s) a killed run left in {figures_dir}")
            write_gallery(
                figures_dir, results_dir, None if is_default else shlex.quote(str(out)), args.quick
            )
    except Exception as e:
        print(
            f"error: the gallery {figures_dir / 'README.md'} was not written: {e}", file=sys.stderr
        )
        failed.append("(gallery)")
    print(f"all done in {time.perf_counter() - total:.1f} s", flush=True)
    if failed:
        print(f"failed studies: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
