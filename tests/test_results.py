"""The result store: provenance round-trip, cache rules, corruption, resumable chunked sweeps."""

import dataclasses
import json
import os
import pathlib

import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

import analysis
from analysis import results, systems
from analysis.systems import System


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
    prov = results.provenance("demo", config)
    for key in ("study", "config", "config_hash", "versions", "x64", "platform", "device"):
        assert key in prov
    for key in ("git_commit", "git_dirty", "started", "finished", "sources"):
        assert key in prov
    assert set(prov["versions"]) >= {"python", "jax", "jaxlib", "diffrax", "equinox", "numpy"}
    assert prov["config"] == {"steps": [8, 16], "t1": 1.0}
    assert prov["config_hash"] == results.config_hash(config) == results.config_hash(_Config())
    assert prov["x64"] is True
    assert "analysis/_sweep.py" in prov["sources"]
    assert not any("plotting" in path for path in prov["sources"])  # figures never go stale

    written = results.write_tables(tmp_path, _tables(), prov)
    tables, stored = results.read_tables(tmp_path)
    assert stored == written == json.loads(json.dumps(written))
    assert stored["tables"] == ["orders", "rows"] and set(stored["files"]) == {
        "orders.parquet",
        "rows.parquet",
    }
    for name, df in _tables().items():
        pd.testing.assert_frame_equal(tables[name], df)  # float64 bits survive the round trip
    assert results.stale_reason(stored, prov) is None


def test_cache_rules_name_what_changed():
    base = results.provenance("demo", _Config())
    assert results.stale_reason(base, base) is None
    assert results.stale_reason(None, base) == "no stored results"
    other = results.provenance("demo", _Config(steps=(8, 16, 32)))
    assert results.stale_reason(base, other) == "config changed (steps)"
    # Times, git state and platform do not make results stale; versions, x64 and sources do.
    later = {**base, "finished": "2099-01-01T00:00:00+00:00", "git_commit": "abc", "git_dirty": 1}
    assert results.stale_reason(base, later) is None
    bumped = {**base, "versions": {**base["versions"], "jax": "99.0"}}
    reason = results.stale_reason(base, bumped)
    assert (
        reason.startswith("package versions changed")
        and f"{base['versions']['jax']} -> 99.0" in reason
    )
    assert results.stale_reason(base, {**base, "x64": False}).startswith("x64 changed")
    edited = {**base, "sources": {**base["sources"], "analysis/_sweep.py": "0" * 16}}
    assert results.stale_reason(base, edited) == "library sources changed (analysis/_sweep.py)"
    assert results.cache_key(base) == results.cache_key(later) != results.cache_key(bumped)


def test_source_hash_ignores_docstrings_comments_and_layout_but_not_code(tmp_path):
    original = pathlib.Path(systems.__file__).read_text()
    copy = tmp_path / "systems.py"

    def hash_of(text):
        copy.write_text(text)
        return results.source_hashes(copy)["systems.py"]

    base = hash_of(original)
    assert results.source_hashes()["analysis/systems.py"] == base
    docs_and_layout = original.replace('"""', '"""Edited. ', 1).replace(  # the module docstring
        "import dataclasses\n", "import dataclasses  # a comment\n\n\n", 1
    )
    assert hash_of(docs_and_layout) == base
    assert hash_of(original.replace("lam: float = 1.0", "lam: float = 2.0", 1)) != base


@pytest.mark.parametrize("damage", ["flip_byte", "truncate", "delete", "bad_json"])
def test_damaged_results_raise_corrupt_result_naming_the_file(tmp_path, damage):
    results.write_tables(tmp_path, _tables(), results.provenance("demo", _Config()))
    target = tmp_path / ("provenance.json" if damage == "bad_json" else "rows.parquet")
    data = target.read_bytes()
    if damage == "flip_byte":
        target.write_bytes(data[:100] + bytes([data[100] ^ 0xFF]) + data[101:])
    elif damage in ("truncate", "bad_json"):
        target.write_bytes(data[: len(data) // 2])
    else:
        target.unlink()
    with pytest.raises(results.CorruptResult, match=target.name):
        results.read_tables(tmp_path)


def test_atomic_write_leaves_the_old_file_whole_when_interrupted(tmp_path, monkeypatch):
    path = tmp_path / "t.bin"
    results.atomic_write_bytes(path, b"old")

    def crash(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(results.os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        results.atomic_write_bytes(path, b"new contents")
    assert path.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["t.bin"]


class _Interrupting(results.ChunkStore):
    """A store whose run is killed (KeyboardInterrupt) right after its `limit`-th saved chunk."""

    def __init__(self, folder, limit, **kw):
        super().__init__(folder, **kw)
        self.limit = limit

    def save(self, key, out):
        super().save(key, out)
        if self.saved == self.limit:
            raise KeyboardInterrupt


_DTS = 1.0 / np.arange(4, 24)  # 20 fixed steps on y' = -y; 5 chunks of 4 per solver


def _sweep(**kw):
    return analysis.sweep(systems.get("linear"), ["Euler", "Heun"], dt0=_DTS, chunk_size=4, **kw)


def test_interrupted_chunked_sweep_resumes_to_the_identical_table(tmp_path):
    whole = _sweep()
    with pytest.raises(KeyboardInterrupt):
        _sweep(store=_Interrupting(tmp_path, limit=3))
    assert len(list(tmp_path.glob("*.npz"))) == 3
    store = results.ChunkStore(tmp_path)
    with results.recording(store):  # the runner's way: no argument, an active store
        resumed = _sweep()
    assert (store.loaded, store.saved) == (3, 7)
    pd.testing.assert_frame_equal(resumed.drop(columns="wall_s"), whole.drop(columns="wall_s"))
    # Euler on y' = -y: y_N = (1 - h)^N exactly, whatever chunk a row came from.
    euler = resumed[resumed.solver == "Euler"]
    np.testing.assert_allclose(euler["y_final_0"], (1 - _DTS) ** np.round(1 / _DTS), rtol=1e-12)


def test_fully_stored_sweep_compiles_nothing_and_damaged_chunk_is_resolved(tmp_path):
    events = []
    first = _sweep(store=results.ChunkStore(tmp_path))
    chunk = sorted(tmp_path.glob("*.npz"))[0]
    chunk.write_bytes(chunk.read_bytes()[:50])  # a damaged chunk file
    store = results.ChunkStore(tmp_path, on_event=events.append)
    again = _sweep(store=store)
    assert (store.loaded, store.saved) == (9, 1) and "does not load" in events[0]
    pd.testing.assert_frame_equal(again.drop(columns="wall_s"), first.drop(columns="wall_s"))
    store = results.ChunkStore(tmp_path)
    third = _sweep(store=store)
    assert store.loaded == 10 and third.attrs["compilations"] == 0


def test_store_chunk_size_applies_only_when_the_caller_gives_none(tmp_path):
    store = results.ChunkStore(tmp_path, chunk_size=7)
    analysis.sweep("linear", "Euler", dt0=_DTS, store=store)
    assert store.saved == 3  # 20 solves in chunks of 7
    store = results.ChunkStore(tmp_path / "b", chunk_size=7)
    analysis.sweep("linear", "Euler", dt0=_DTS, chunk_size=10, store=store)
    assert store.saved == 2


def test_fields_differing_only_in_closed_over_weights_never_share_chunks(tmp_path):
    def model(w):  # two "trained models" under one name, weights closed over (not in args)
        w = jnp.asarray(w)
        return System(name="model", vector_field=lambda t, y, args, h: -w * y, y0=jnp.ones(2))

    dts = [0.5, 0.25]
    first = analysis.sweep(model([1.0, 2.0]), "Euler", dt0=dts, store=results.ChunkStore(tmp_path))
    store = results.ChunkStore(tmp_path)
    second = analysis.sweep(model([4.0, 2.0]), "Euler", dt0=dts, store=store)
    assert store.loaded == 0 and store.saved == 1
    # Euler: y_N = (1 - h w)^N per component, for each model's own weights.
    np.testing.assert_allclose(first["y_final_0"], [0.5**2, 0.75**4], rtol=1e-12)
    np.testing.assert_allclose(second["y_final_0"], [(-1.0) ** 2, 0.0], atol=1e-15)


@pytest.mark.parametrize("name", ["../x", "a/b", ".hidden", "", "-x", "a..b", 3, None, "x" * 101])
def test_stored_names_must_be_plain_file_names(name):
    with pytest.raises(results.CorruptResult, match="not a plain file name"):
        results.check_name(name)
    assert results.check_name("rows_2.v1") == "rows_2.v1"


def test_only_regular_files_are_read(tmp_path):
    fifo, link, folder = tmp_path / "fifo", tmp_path / "link", tmp_path / "folder"
    os.mkfifo(fifo)  # reading it would block forever
    link.symlink_to("/dev/zero")  # reading it would never end
    folder.mkdir()
    for path, why in [(fifo, "not a regular file"), (link, "symbolic link"), (folder, "regular")]:
        with pytest.raises(results.CorruptResult, match=why):
            results.read_regular_file(path)
    (tmp_path / "big").write_bytes(b"x" * 11)
    with pytest.raises(results.CorruptResult, match="more than 10"):
        results.read_regular_file(tmp_path / "big", limit=10)
    with pytest.raises(FileNotFoundError):
        results.read_regular_file(tmp_path / "missing")


def test_every_stored_table_needs_a_checksum(tmp_path):
    prov = results.write_tables(tmp_path, _tables(), results.provenance("demo", _Config()))
    assert results.provenance_problem(prov) is None
    files = dict(prov["files"])
    del files["rows.parquet"]
    assert results.provenance_problem({**prov, "files": files}) == "no checksum for rows.parquet"
    assert "not a SHA-256" in results.provenance_problem(
        {**prov, "files": {**prov["files"], "rows.parquet": "abc"}}
    )
    assert "empty" in results.provenance_problem({**prov, "tables": []})
    (tmp_path / "provenance.json").write_text(json.dumps({**prov, "files": files}))
    with pytest.raises(results.CorruptResult, match="no checksum for rows.parquet"):
        results.read_tables(tmp_path)
    with pytest.raises(ValueError, match="cannot be a file name"):
        results.write_tables(tmp_path, {"../rows": _tables()["rows"]}, prov)


def test_remove_litter_removes_temporary_files_only_and_never_follows_links(tmp_path):
    keep = tmp_path / "keep.tmp"  # not hidden: not ours
    keep.write_text("x")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "data").write_text("x")
    (tmp_path / ".rows.parquet.ab12.tmp").write_bytes(b"half")
    (tmp_path / ".err.png.cd34.tmp").symlink_to(outside / "data")
    (tmp_path / ".folder.tmp").mkdir()
    removed = results.remove_litter(tmp_path)
    assert removed == [".err.png.cd34.tmp", ".rows.parquet.ab12.tmp"]
    assert keep.exists() and (outside / "data").read_text() == "x"
    assert (tmp_path / ".folder.tmp").is_dir()
