"""Nothing unsafe is loaded: parquet, JSON and equinox leaves only, and a file of the wrong
structure is refused with a clear error."""

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis import InvalidArgument, models, run_store, systems

ROOT = Path(__file__).resolve().parent.parent
UNSAFE = re.compile(
    r"pickle\.loads?\(|\beval\(|\bexec\(|allow_pickle=True|yaml\.load\(|"
    r"read_pickle|marshal\.loads?"
)

#: Allowed, with the reason: a Dask worker unpickles the chunk task its own client just sent it
#: over the cluster's connection (dask pickles every task anyway); nothing comes from disk.
TRANSPORT = {"analysis/distributed.py": "cloudpickle.loads(payload)"}


def test_no_source_file_unpickles_or_evaluates_what_it_reads():
    offenders = []
    for folder in ("analysis", "studies", "benchmarks", "examples"):
        for path in (ROOT / folder).rglob("*.py"):
            for n, line in enumerate(path.read_text().splitlines(), 1):
                rel = str(path.relative_to(ROOT))
                if UNSAFE.search(line) and TRANSPORT.get(rel, "\0") not in line:
                    offenders.append(f"{rel}:{n}: {line.strip()}")
    assert not offenders, offenders


def test_a_result_folder_of_the_wrong_structure_is_refused(tmp_path):
    run_store.write_tables(
        tmp_path, {"rows": pd.DataFrame({"x": [1.0]})}, run_store.provenance("demo", {"a": 1})
    )
    (tmp_path / "provenance.json").write_text('["not", "a", "record"]')
    with pytest.raises(run_store.CorruptResult, match="not a provenance record"):
        run_store.read_tables(tmp_path)
    (tmp_path / "provenance.json").write_text("{broken json")
    with pytest.raises(run_store.CorruptResult, match="does not load"):
        run_store.read_tables(tmp_path)


def test_a_tampered_parquet_file_fails_its_checksum(tmp_path):
    run_store.write_tables(
        tmp_path,
        {"rows": pd.DataFrame({"x": np.arange(5.0)})},
        run_store.provenance("demo", {"a": 1}),
    )
    path = tmp_path / "rows.parquet"
    path.write_bytes(path.read_bytes()[:-8] + b"\x00" * 8)
    with pytest.raises(run_store.CorruptResult, match="checksum"):
        run_store.read_tables(tmp_path)


def test_parameters_of_another_model_are_refused(tmp_path):
    spiral = systems.get("linear10", dim=2, seed=0)
    small = models.make("h_free", spiral, width=4, seed=0)
    big = models.make("h_free", spiral, width=8, seed=0)
    models.save(tmp_path / "small.eqx", small)
    with pytest.raises(InvalidArgument, match="does not hold parameters of this model"):
        models.load(tmp_path / "small.eqx", big)
    (tmp_path / "junk.eqx").write_bytes(b"\x80\x04not an array file")
    with pytest.raises(InvalidArgument, match="does not hold parameters"):
        models.load(tmp_path / "junk.eqx", small)
