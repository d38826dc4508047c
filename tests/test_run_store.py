"""The run store: provenance round-trip, cache rules, corruption, names and regular files."""

import dataclasses
import json
import os
import pathlib

import numpy as np
import pandas as pd
import pytest

from analysis import run_store, systems


@dataclasses.dataclass(frozen=True)
class _Config:
    steps: tuple = (8, 16)
    t1: float = 1.0


def _tables():
    return {
        "rows": pd.DataFrame(
            {"solver": ["Euler", "Heun"], "h": [0.1, 0.05], "error": [1e-2, np.nan]}
        ),
        "orders": pd.DataFrame({"solver": ["Euler"], "observed_order": [1.0123456789012345]}),
    }


def test_provenance_round_trips_with_tables_and_checksums(tmp_path):
    config = _Config()
    prov = run_store.provenance("demo", config)
    for key in ("study", "config", "config_hash", "versions", "x64", "platform", "device"):
        assert key in prov
    for key in ("git_commit", "git_dirty", "started", "finished", "sources"):
        assert key in prov
    assert set(prov["versions"]) >= {"python", "jax", "jaxlib", "diffrax", "equinox", "numpy"}
    assert prov["config"] == {"steps": [8, 16], "t1": 1.0}
    assert prov["config_hash"] == run_store.config_hash(config) == run_store.config_hash(_Config())
    assert prov["x64"] is True
    assert "analysis/_sweep.py" in prov["sources"]
    assert not any("plotting" in path for path in prov["sources"])  # figures never go stale

    written = run_store.write_tables(tmp_path, _tables(), prov)
    tables, stored = run_store.read_tables(tmp_path)
    assert stored == written == json.loads(json.dumps(written))
    assert stored["tables"] == ["orders", "rows"] and set(stored["files"]) == {
        "orders.parquet",
        "rows.parquet",
    }
    for name, df in _tables().items():
        pd.testing.assert_frame_equal(tables[name], df)  # float64 bits survive the round trip
    assert run_store.stale_reason(stored, prov) is None


def test_cache_rules_name_what_changed():
    base = run_store.provenance("demo", _Config())
    assert run_store.stale_reason(base, base) is None
    assert run_store.stale_reason(None, base) == "no stored results"
    other = run_store.provenance("demo", _Config(steps=(8, 16, 32)))
    assert run_store.stale_reason(base, other) == "config changed (steps)"
    # Times, git state and platform do not make results stale; versions, x64 and sources do.
    later = {**base, "finished": "2099-01-01T00:00:00+00:00", "git_commit": "abc", "git_dirty": 1}
    assert run_store.stale_reason(base, later) is None
    bumped = {**base, "versions": {**base["versions"], "jax": "99.0"}}
    reason = run_store.stale_reason(base, bumped)
    assert (
        reason.startswith("package versions changed")
        and f"{base['versions']['jax']} -> 99.0" in reason
    )
    assert run_store.stale_reason(base, {**base, "x64": False}).startswith("x64 changed")
    edited = {**base, "sources": {**base["sources"], "analysis/_sweep.py": "0" * 16}}
    assert run_store.stale_reason(base, edited) == "library sources changed (analysis/_sweep.py)"
    assert run_store.cache_key(base) == run_store.cache_key(later) != run_store.cache_key(bumped)


def test_source_hash_ignores_docstrings_comments_and_layout_but_not_code(tmp_path):
    original = pathlib.Path(systems.__file__).read_text()
    copy = tmp_path / "systems.py"

    def hash_of(text):
        copy.write_text(text)
        return run_store.source_hashes(copy)["systems.py"]

    base = hash_of(original)
    assert run_store.source_hashes()["analysis/systems.py"] == base
    docs_and_layout = original.replace('"""', '"""Edited. ', 1).replace(  # the module docstring
        "import dataclasses\n", "import dataclasses  # a comment\n\n\n", 1
    )
    assert hash_of(docs_and_layout) == base
    assert hash_of(original.replace("lam: float = 1.0", "lam: float = 2.0", 1)) != base


@pytest.mark.parametrize("damage", ["flip_byte", "truncate", "delete", "bad_json"])
def test_damaged_results_raise_corrupt_result_naming_the_file(tmp_path, damage):
    run_store.write_tables(tmp_path, _tables(), run_store.provenance("demo", _Config()))
    target = tmp_path / ("provenance.json" if damage == "bad_json" else "rows.parquet")
    data = target.read_bytes()
    if damage == "flip_byte":
        target.write_bytes(data[:100] + bytes([data[100] ^ 0xFF]) + data[101:])
    elif damage in ("truncate", "bad_json"):
        target.write_bytes(data[: len(data) // 2])
    else:
        target.unlink()
    with pytest.raises(run_store.CorruptResult, match=target.name):
        run_store.read_tables(tmp_path)


def test_atomic_write_leaves_the_old_file_whole_when_interrupted(tmp_path, monkeypatch):
    path = tmp_path / "t.bin"
    run_store.atomic_write_bytes(path, b"old")

    def crash(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(run_store.os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        run_store.atomic_write_bytes(path, b"new contents")
    assert path.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["t.bin"]


@pytest.mark.parametrize("name", ["../x", "a/b", ".hidden", "", "-x", "a..b", 3, None, "x" * 101])
def test_stored_names_must_be_plain_file_names(name):
    with pytest.raises(run_store.CorruptResult, match="not a plain file name"):
        run_store.check_name(name)
    assert run_store.check_name("rows_2.v1") == "rows_2.v1"


def test_only_regular_files_are_read(tmp_path):
    fifo, link, folder = tmp_path / "fifo", tmp_path / "link", tmp_path / "folder"
    os.mkfifo(fifo)  # reading it would block forever
    link.symlink_to("/dev/zero")  # reading it would never end
    folder.mkdir()
    for path, why in [(fifo, "not a regular file"), (link, "symbolic link"), (folder, "regular")]:
        with pytest.raises(run_store.CorruptResult, match=why):
            run_store.read_regular_file(path)
    (tmp_path / "big").write_bytes(b"x" * 11)
    with pytest.raises(run_store.CorruptResult, match="more than 10"):
        run_store.read_regular_file(tmp_path / "big", limit=10)
    with pytest.raises(FileNotFoundError):
        run_store.read_regular_file(tmp_path / "missing")


def test_every_stored_table_needs_a_checksum(tmp_path):
    prov = run_store.write_tables(tmp_path, _tables(), run_store.provenance("demo", _Config()))
    assert run_store.provenance_problem(prov) is None
    files = dict(prov["files"])
    del files["rows.parquet"]
    assert run_store.provenance_problem({**prov, "files": files}) == "no checksum for rows.parquet"
    assert "not a SHA-256" in run_store.provenance_problem(
        {**prov, "files": {**prov["files"], "rows.parquet": "abc"}}
    )
    assert "empty" in run_store.provenance_problem({**prov, "tables": []})
    (tmp_path / "provenance.json").write_text(json.dumps({**prov, "files": files}))
    with pytest.raises(run_store.CorruptResult, match="no checksum for rows.parquet"):
        run_store.read_tables(tmp_path)
    with pytest.raises(ValueError, match="cannot be a file name"):
        run_store.write_tables(tmp_path, {"../rows": _tables()["rows"]}, prov)


def test_remove_litter_removes_temporary_files_only_and_never_follows_links(tmp_path):
    keep = tmp_path / "keep.tmp"  # not hidden: not ours
    keep.write_text("x")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "data").write_text("x")
    (tmp_path / ".rows.parquet.ab12.tmp").write_bytes(b"half")
    (tmp_path / ".err.png.cd34.tmp").symlink_to(outside / "data")
    (tmp_path / ".folder.tmp").mkdir()
    removed = run_store.remove_litter(tmp_path)
    assert removed == [".err.png.cd34.tmp", ".rows.parquet.ab12.tmp"]
    assert keep.exists() and (outside / "data").read_text() == "x"
    assert (tmp_path / ".folder.tmp").is_dir()
