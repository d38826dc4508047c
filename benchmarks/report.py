"""The machine description and the Markdown report (benchmarks/RESULTS.md) from the records."""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import subprocess

PACKAGES = ("jax", "jaxlib", "diffrax", "equinox", "optimistix", "numpy", "scipy", "pandas")
SWEEP = "sweep"


def machine() -> dict:
    """nproc, CPU model, memory, load, package versions, git commit, date."""
    cpu = "unknown"
    mem_gib = None
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next((ln.split(":", 1)[1].strip() for ln in fh if "model name" in ln), cpu)
        with open("/proc/meminfo") as fh:
            kib = next(int(ln.split()[1]) for ln in fh if ln.startswith("MemTotal"))
            mem_gib = round(kib / 2**20, 1)
    except OSError:
        pass
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
        ).stdout.strip()
    except OSError:
        commit = ""
    versions = {}
    for p in PACKAGES:
        try:
            versions[p] = importlib.metadata.version(p)
        except importlib.metadata.PackageNotFoundError:
            versions[p] = "not installed"
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": mem_gib,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": versions,
        "commit": commit,
        "date_utc": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M"),
        "load_before": os.getloadavg(),
    }


def _f(x, digits=3):
    if x is None:
        return "–"
    if isinstance(x, int):
        return f"{x:,}"
    if x == 0:
        return "0"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    return f"{x:.{digits}g}"


def _rate(n, seconds):
    return None if not seconds else n / seconds


def _table(recs: list[dict]) -> list[str]:
    head = (
        "| method | solves | end to end (s) | compile (s) | run (s, median) | solves/s (run) "
        "| RHS evals/s (run) | peak RSS (MiB) | compilations (solve / XLA) |"
    )
    lines = [head, "|" + "---|" * 9]
    for r in recs:
        if "error" in r:
            lines.append(f"| {r['method']} | failed: {r['error']} |" + " |" * 7)
            continue
        run = r["run_s"]
        lines.append(
            f"| {r['method']} | {_f(r['n_solves'])} | {_f(r['end_to_end_s'])} | "
            f"{_f(r['compile_s'])} | {_f(run)} | {_f(_rate(r['n_solves'], run))} | "
            f"{_f(_rate(r['nfev'], run))} | {_f(r['peak_rss_mb'])} | "
            f"{r['compilations']} / {r['xla_compilations']} |"
        )
    return lines


def _notes(recs: list[dict]) -> list[str]:
    out = []
    for r in recs:
        bits = [b for b in (r.get("notes"), r.get("extrapolated")) if b]
        if bits:
            out.append(f"- *{r['method']}*: " + "; ".join(bits) + ".")
    return out


def _ratios(recs: list[dict]) -> tuple[list[str], dict]:
    by = {r["method"]: r for r in recs if "error" not in r}
    sweep = by.get(SWEEP)
    if sweep is None:
        return [], {}
    lines = [
        "| baseline | end to end: baseline / sweep | run: baseline / sweep |",
        "|---|---|---|",
    ]
    ratios = {}
    for name, r in by.items():
        if name == SWEEP:
            continue
        e2e = r["end_to_end_s"] / sweep["end_to_end_s"]
        run = r["run_s"] / sweep["run_s"] if r["run_s"] and sweep["run_s"] else None
        ratios[name] = (e2e, run)
        lines.append(f"| {name} | {_f(e2e)}× | {_f(run) + '×' if run else '–'} |")
    return lines, ratios


def _verdict(ok: bool | None) -> str:
    return {True: "met", False: "**missed**", None: "not measured"}[ok]


def render(records: list[dict], machine: dict, command: str, quick: bool = False) -> str:
    """The whole report as Markdown."""
    groups: dict[str, list[dict]] = {}
    for r in records:
        groups.setdefault(r["workload"], []).append(r)
    L = ["# Benchmarks: the sweep engine against what users would write instead", ""]
    if quick:
        L += ["**QUICK run: tiny sizes, a harness check; these numbers mean nothing.**", ""]
    load_b, load_a = machine["load_before"], machine.get("load_after", ("?",) * 3)
    L += [
        f"Reproduce with `{command}` (writes this file and `RESULTS.json` with the raw records). "
        f"Run {machine['date_utc']} UTC at commit `{machine['commit']}`, "
        f"{_f(machine.get('total_wall_s'))} s in all.",
        "",
        f"- Machine: {machine['nproc']} CPU cores ({machine['cpu']}), "
        f"{machine['memory_gib']} GiB memory, {machine['platform']}, Python {machine['python']}; "
        "no GPU (jax on CPU).",
        "- Packages: " + ", ".join(f"{k} {v}" for k, v in machine["packages"].items()) + ".",
        f"- Load average (1/5/15 min) before: {', '.join(f'{x:.1f}' for x in load_b)}; after: "
        f"{', '.join(f'{x:.1f}' for x in load_a)}. "
        + (
            "**The machine was shared with other jobs during the run** (load above the core "
            "count), so absolute times are inflated and noisy; ratios come from the same run."
            if max(load_b[0], load_a[0]) > machine["nproc"] * 0.75
            else "The machine was otherwise idle."
        ),
        "- Method: every (workload, method) runs in a fresh process. *End to end* is the "
        "first full pass (tracing, compilation, reference solutions, solving, assembling "
        "results); *compile* is the tracing + lowering + XLA compile time inside it, from jax's "
        "own monitoring events; *run* is the median of later passes that compile nothing. "
        "Peak RSS is the process's VmHWM. *Solve* compilations count solve programs; *XLA* "
        "counts every XLA compilation (small eager kernels included). RHS evals/s divides the "
        "evaluations a pass needs (from step counts, or scipy's own count) by the run time.",
        "",
    ]
    L += _targets(groups)
    titles = {
        "fixed": "Workload 1: fixed-step convergence sweep",
        "adaptive": "Workload 2: tolerance sweep",
        "orbit": "Workload 3: orbit diagram",
        "stepaware": "Workload 4: StepAware overhead",
        "memory": "Memory: chunked sweeps",
    }
    for key, title in titles.items():
        recs = groups.get(key)
        if not recs:
            continue
        L += [f"## {title}", ""]
        if key == "stepaware":
            L += _stepaware(recs[0])
        elif key == "memory":
            L += _memory(recs)
        else:
            L += _table(recs) + [""]
            ratio_lines, _ = _ratios(recs)
            L += ratio_lines + ([""] if ratio_lines else [])
            L += _notes(recs) + [""]
        L += EXPLAIN.get(key, [])
    return "\n".join(L) + "\n"


def _targets(groups) -> list[str]:
    L = ["## Targets", "", "| target | measured | verdict |", "|---|---|---|"]
    fixed = {r["method"]: r for r in groups.get("fixed", []) if "error" not in r}
    if SWEEP in fixed:
        s = fixed[SWEEP]
        for name, want in (("naive loop", 20), ("solve_ivp loop", 50)):
            if name in fixed:
                b = fixed[name]
                e2e = b["end_to_end_s"] / s["end_to_end_s"]
                run = b["run_s"] / s["run_s"] if b["run_s"] else None
                text = f"end to end {_f(e2e)}×" + (f"; run {_f(run)}×" if run else "")
                ok = e2e >= want if name == "naive loop" else (run or e2e) >= want
                L.append(
                    f"| W1: sweep ≥ {want}× faster than the {name} | {text} | {_verdict(ok)} |"
                )
        if "lax.scan RK" in fixed:
            sc = fixed["lax.scan RK"]
            run = s["run_s"] / sc["run_s"]
            kern = s["extra"].get("kernel_s", s["run_s"]) / sc["run_s"]
            L.append(
                f"| W1: sweep run time within 3× of lax.scan | {_f(run)}× (compiled chunks "
                f"alone {_f(kern)}×) | {_verdict(run <= 3)} |"
            )
    adaptive = {r["method"]: r for r in groups.get("adaptive", []) if "error" not in r}
    if SWEEP in adaptive:
        s = adaptive[SWEEP]
        groups = s["extra"]["groups"]
        L.append(
            f"| W2: one compilation per (system, solver, controller kind) | "
            f"{s['compilations']} for {groups} groups × {s['n_solves'] // groups} tolerances"
            f" | {_verdict(s['compilations'] == groups)} |"
        )
    for r in groups.get("orbit", []):
        if "error" not in r:
            L.append(
                f"| W3: orbit diagram under 5 s end to end | {_f(r['end_to_end_s'])} s "
                f"(run {_f(r['run_s'])} s) | {_verdict(r['end_to_end_s'] < 5)} |"
            )
    for r in groups.get("stepaware", []):
        if "error" not in r:
            over = {k: v["overhead_hfree"] for k, v in r["extra"]["solvers"].items()}
            worst = max(over, key=over.get)
            L.append(
                f"| W4: StepAware overhead < 10% on an h-free field | worst {worst} "
                f"{over[worst]:+.1%} | {_verdict(over[worst] < 0.10)} |"
            )
    mem = {r["method"]: r for r in groups.get("memory", []) if "error" not in r}
    if len(mem) == 3:
        d = {k: v["peak_rss_mb"] - v["extra"]["rss_before_mb"] for k, v in mem.items()}
        small, large = d["grid G, chunk C"], d["grid 10G, chunk C"]
        L.append(
            f"| Memory: 10× grid, same chunk, not 10× memory | +{_f(small)} → +{_f(large)} MiB "
            f"({_f(large / small)}×; unchunked +{_f(d['grid 10G, unchunked'])} MiB) | "
            f"{_verdict(large < 10 * small)} |"
        )
    return L + [""]


def _stepaware(r: dict) -> list[str]:
    if "error" in r:
        return [f"failed: {r['error']}", ""]
    L = [
        "| solver | bare (ms) | StepAware, h-free (ms) | overhead | frozen h-dep (ms) | "
        "StepAware h-dep (ms) | extra cost | extra evaluations | max |Δy| h-free / h-dep |",
        "|" + "---|" * 9,
    ]
    for name, v in r["extra"]["solvers"].items():
        t = v["time_s"]
        L.append(
            f"| {name} | {_f(t['bare'] * 1e3)} | {_f(t['stepaware_hfree'] * 1e3)} | "
            f"{v['overhead_hfree']:+.1%} | {_f(t['frozen_hdep'] * 1e3)} | "
            f"{_f(t['stepaware_hdep'] * 1e3)} | {v['overhead_hdep']:+.1%} | "
            f"{v['nfev_ratio_hdep'] - 1:+.1%} | {v['max_diff_hfree']:.1e} / "
            f"{v['max_diff_hdep']:.1e} |"
        )
    return L + [
        "",
        f"- {r['notes']}; {r['compilations']} programs, compile {_f(r['compile_s'])} s.",
        "",
    ]


def _memory(recs: list[dict]) -> list[str]:
    L = [
        "| sweep | solves | peak RSS (MiB) | before the sweep (MiB) | increase (MiB) | "
        "solve compilations |",
        "|---|---|---|---|---|---|",
    ]
    for r in recs:
        if "error" in r:
            L.append(f"| {r['method']} | failed: {r['error']} | | | | |")
            continue
        before = r["extra"]["rss_before_mb"]
        L.append(
            f"| {r['method']} ({r['notes']}) | {_f(r['n_solves'])} | {_f(r['peak_rss_mb'])} | "
            f"{_f(before)} | {_f(r['peak_rss_mb'] - before)} | {r['compilations']} |"
        )
    return L + [""]


EXPLAIN: dict[str, list[str]] = {}
