"""A paper figure from stored results: load the tables a study stored, redraw, save.

The runner stores every study's tables as parquet with provenance (results/NAME/). A figure for a
paper is a function of those tables, so it can be redrawn — restyled, resized, combined — without
recomputing anything. Run: python examples/paper_figure.py [--quick] [--out DIR]

By default it works in `quick-output/` under the working directory (ignored by git), so it never
touches the committed figures; `--out .` from the repository root reuses what `make figures`
stored there (and adds its figure next to them).
"""

import argparse
import subprocess
import sys
from pathlib import Path

import analysis.run_store as run_store
from analysis import plotting
from studies import demo

ROOT = Path(__file__).resolve().parent.parent

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--quick", action="store_true", help="store the study's QUICK results first")
parser.add_argument(
    "--out",
    type=Path,
    default=Path("quick-output"),
    help="folder holding results/ and figures/ (default: quick-output/ here)",
)
args = parser.parse_args()
args.out = args.out.resolve()  # the runner below runs from the repository root

folder = args.out / "results" / "demo"
if args.quick or run_store.read_provenance(folder) is None:  # compute once, through the runner
    command = [sys.executable, "-m", "studies", "run", "demo", "--out", str(args.out)]
    subprocess.run(command + (["--quick"] if args.quick else []), check=True, cwd=ROOT)

tables, prov = run_store.read_tables(folder)
print(f"loaded {sorted(tables)} (config {prov['config_hash']}, commit {prov['git_commit']})")
figure = demo.plot(tables)["orders"]
with plotting.paper_style():
    figure.set_size_inches(plotting.COLUMN_WIDTH * 2, 2.2)  # e.g. a wider, shorter panel pair
path = args.out / "figures" / "demo" / "orders_for_paper.pdf"
path.parent.mkdir(parents=True, exist_ok=True)
figure.savefig(path, metadata={"CreationDate": None})
print(f"wrote {path}")
