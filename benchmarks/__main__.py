"""Run the benchmarks, one fresh process per measurement, and write benchmarks/RESULTS.md.

    python -m benchmarks                 # everything (what `make bench` runs)
    python -m benchmarks --quick         # tiny sizes: checks the harness, numbers meaningless
    python -m benchmarks --only fixed orbit --out /tmp/RESULTS.md
    python -m benchmarks --only toolkit --merge   # re-measure one workload, keep the rest

Each (workload, method) runs in its own process (`--child WORKLOAD METHOD`), so its compile
caches start empty and its peak resident memory is its own. The raw records go to the JSON file
next to the report.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CHILD_TIMEOUT_S = 600
#: Measurements repeated on a GPU, when this machine has one (rows marked " [GPU]").
GPU_MEASUREMENTS = (
    ("fixed", "sweep"),
    ("fixed", "lax.scan RK"),
    ("adaptive", "sweep"),
    ("adaptive", "jit loop"),
    ("orbit", "stability.orbit_diagram"),
    ("orbit", "vmapped scan (arrays)"),
)
GPU = " [GPU]"


def _child(workload: str, method: str, quick: bool) -> None:
    from . import workloads

    scale = workloads.QUICK if quick else workloads.FULL
    record = workloads.MEASUREMENTS[(workload, method)](scale)
    print("RECORD " + json.dumps(record.finish()), flush=True)


def _gpu_available() -> bool:
    import jax

    try:
        return bool(jax.devices("gpu"))
    except RuntimeError:  # no GPU backend in this jax installation
        return False


def _run_child(workload: str, method: str, quick: bool, platform: str = "cpu") -> dict:
    from . import toolkit

    cmd = [sys.executable, "-m", "benchmarks", "--child", workload, method]
    cmd += ["--quick"] if quick else []
    timeout = 2 * toolkit.TOOLKIT_TIMEOUT_S if workload == "toolkit" else CHILD_TIMEOUT_S
    # Compile times are measured cold: no persistent compilation cache in the children (the
    # "cache" workload measures the cache itself, in folders of its own).
    env = {**os.environ, "JAX_ENABLE_X64": "1", "PYTHONPATH": str(HERE.parent)}
    env["STEPDEP_COMPILE_CACHE"] = "off"
    env["JAX_PLATFORMS"] = platform
    start = time.perf_counter()
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, env=env, timeout=timeout, cwd=HERE.parent
        )
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RECORD ")]
        if proc.returncode == 0 and lines:
            return json.loads(lines[-1][len("RECORD ") :])
        error = proc.stderr.strip().splitlines()[-1:] or [f"exit {proc.returncode}"]
    except subprocess.TimeoutExpired:
        error = [f"timed out after {timeout} s"]
    return {
        "workload": workload,
        "method": method,
        "error": error[0],
        "wall_s": time.perf_counter() - start,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes (harness check)")
    parser.add_argument("--only", nargs="*", help="workloads to run (fixed adaptive orbit ...)")
    parser.add_argument("--out", default=str(HERE / "RESULTS.md"), help="report path")
    parser.add_argument("--render", metavar="JSON", help="only rewrite the report from raw records")
    parser.add_argument(
        "--merge",
        action="store_true",
        help="with --only: keep the other workloads' records from the existing JSON",
    )
    parser.add_argument("--child", nargs=2, metavar=("WORKLOAD", "METHOD"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(*args.child, args.quick)
        return 0

    from . import report, toolkit, workloads

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    raw = out.with_suffix(".json")
    if args.render:
        data = json.loads(Path(args.render).read_text())
        out.write_text(
            report.render(data["records"], data["machine"], data["command"], data["quick"])
        )
        return 0
    command = (
        "make bench"
        if not (args.quick or args.only)
        else "python -m benchmarks "
        + " ".join(
            (["--quick"] if args.quick else []) + (["--only", *args.only] if args.only else [])
        )
    )
    data = {"machine": report.machine(), "command": command, "quick": args.quick, "records": []}
    if args.merge and raw.exists():  # keep the records of workloads not run this time
        earlier = json.loads(raw.read_text())
        kept = [r for r in earlier["records"] if args.only and r["workload"] not in args.only]
        data["records"] = kept
        old = earlier["machine"]
        data["machine"]["merged"] = f"{old['date_utc']} UTC at commit `{old['commit']}`"
    runs = [(w, m, "cpu") for w, m in workloads.MEASUREMENTS]
    if _gpu_available():
        runs += [(w, m, "gpu") for w, m in GPU_MEASUREMENTS]
    start = time.perf_counter()
    try:
        for workload, method, platform in runs:
            if (args.only and workload not in args.only) or (args.quick and workload == "toolkit"):
                continue
            label = method + (GPU if platform == "gpu" else "")
            print(f"[bench] {workload} / {label} ...", end=" ", flush=True)
            rec = _run_child(workload, method, args.quick, platform) | {"method": label}
            data["records"].append(rec)
            raw.write_text(json.dumps(data, indent=1))  # kept if a later measurement fails
            print(rec.get("error") or f"{rec['end_to_end_s']:.2f} s end to end", flush=True)
    finally:
        toolkit.remove_shared_folders(os.getpid())
    data["machine"]["total_wall_s"] = time.perf_counter() - start
    data["machine"]["load_after"] = os.getloadavg()
    raw.write_text(json.dumps(data, indent=1))
    out.write_text(report.render(data["records"], data["machine"], command, args.quick))
    print(f"[bench] wrote {out} in {data['machine']['total_wall_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
