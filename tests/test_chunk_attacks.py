"""Attacks on the sweep's chunk store, each performed for real (issue 17, the chunk part).

Containment: a `chunks` folder that is a symlink into a sandbox holding unrelated folders is
used, but nothing there is ever deleted or changed. Identity: two Kvaerno5 that differ only in
their root finder's tolerances never share chunks. Damage: swapped, truncated, wrong-length,
key-less, bit-flipped and old-format chunk files and a folder in a chunk's place are each
discarded with a message and solved again, and the table equals an independent uncached sweep.
"""

import io
import os
import pathlib

import diffrax
import numpy as np
import pandas as pd
import pytest

import analysis
from analysis import chunk_store, systems

_DTS = 1.0 / np.arange(4, 24)  # 20 fixed steps on y' = -y: 5 chunks of 4 per solver


def _sweep(**kw):
    return analysis.sweep(systems.get("linear"), ["Euler", "Heun"], dt0=_DTS, chunk_size=4, **kw)


@pytest.fixture(scope="module")
def uncached():
    """The table of an uninterrupted sweep with no store at all (the independent truth)."""
    assert chunk_store.active_store() is None
    return _sweep()


def _same_table(df, truth):
    pd.testing.assert_frame_equal(df.drop(columns="wall_s"), truth.drop(columns="wall_s"))


def _snapshot(root: pathlib.Path) -> dict:
    """Every entry under `root` (links not followed): kind and content."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in dirnames + filenames:
            p = pathlib.Path(dirpath, name)
            rel = p.relative_to(root).as_posix()
            if p.is_symlink():
                out[rel] = ("link", os.readlink(p))
            elif p.is_dir():
                out[rel] = ("dir", None)
            else:
                out[rel] = ("file", p.read_bytes())
    return out


def _sandbox(tmp_path):
    """A scratch disk's folder holding things that are not this study's."""
    scratch = tmp_path / "scratch"
    (scratch / "photos").mkdir(parents=True)
    (scratch / "photos" / "a.jpg").write_bytes(b"\xff\xd8 holiday")
    (scratch / "other_study").mkdir()
    (scratch / "other_study" / ("0" * 32 + ".npz")).write_bytes(b"someone else's chunk")
    (scratch / "0123456789abcdef").mkdir()  # shaped like a chunk store, and empty
    (scratch / "notes.txt").write_text("keep me")
    return scratch


def test_symlinked_chunks_folder_is_used_but_nothing_is_deleted_through_it(tmp_path, uncached):
    scratch = _sandbox(tmp_path)
    chunks = tmp_path / "results" / "demo" / "chunks"
    chunks.parent.mkdir(parents=True)
    chunks.symlink_to(scratch, target_is_directory=True)
    before = _snapshot(scratch)
    events = []
    store = chunk_store.ChunkStore(chunks / "cafe0000cafe0000", on_event=events.append)
    _same_table(_sweep(store=store), uncached)  # the link may be used: chunks go to scratch
    assert store.saved == 10 and len(list((scratch / "cafe0000cafe0000").glob("*.npz"))) == 10
    during = _snapshot(scratch)
    # The runner's cleanups, before a run (other keys) and after it (all), and clear().
    assert (
        chunk_store.remove_chunk_stores(chunks, keep="cafe0000cafe0000", on_event=events.append)
        == []
    )
    assert chunk_store.remove_chunk_stores(chunks, on_event=events.append) == []
    store.clear()
    assert _snapshot(scratch) == during and chunks.is_symlink()
    assert {k: v for k, v in during.items() if not k.startswith("cafe")} == before
    assert all("symbolic link" in e for e in events) and len(events) == 3


def test_cleanup_of_a_real_chunks_folder_deletes_only_recognised_stores(tmp_path):
    scratch = _sandbox(tmp_path)
    before = _snapshot(scratch)
    chunks = tmp_path / "chunks"
    for key in ("aaaa000000000000", "bbbb000000000000"):
        store = chunk_store.ChunkStore(chunks / key)
        store.save(store.key("demo", np.arange(3.0)), {"y": np.ones(3)})
    (chunks / "linked").symlink_to(scratch / "photos", target_is_directory=True)
    (chunks / "mine").mkdir()
    (chunks / "mine" / "data.csv").write_text("1,2")
    (chunks / "readme.txt").write_text("x")
    events = []
    kept = chunk_store.remove_chunk_stores(chunks, keep="bbbb000000000000", on_event=events.append)
    assert kept == ["aaaa000000000000"]
    assert sorted(p.name for p in chunks.iterdir()) == [
        "bbbb000000000000",
        "linked",
        "mine",
        "readme.txt",
    ]
    assert (chunks / "mine" / "data.csv").read_text() == "1,2"
    assert len(events) == 3 and any("linked is a symbolic link" in e for e in events)
    assert chunk_store.remove_chunk_stores(chunks, on_event=events.append) == ["bbbb000000000000"]
    assert chunks.is_dir() and _snapshot(scratch) == before  # foreign things keep it alive


def test_kvaerno5_with_other_root_finder_tolerances_never_shares_chunks(tmp_path):
    system = systems.get("logistic")
    dts = [0.5, 0.25]
    loose = diffrax.Kvaerno5(root_finder=diffrax.VeryChord(rtol=1e-1, atol=1e-1))
    tight = diffrax.Kvaerno5(root_finder=diffrax.VeryChord(rtol=1e-12, atol=1e-12))
    fresh_loose = analysis.sweep(system, loose, dt0=dts)  # uncached, independent
    fresh_tight = analysis.sweep(system, tight, dt0=dts)
    assert not np.allclose(fresh_loose["y_final_0"], fresh_tight["y_final_0"], rtol=0, atol=1e-12)
    keys = []

    class Recording(chunk_store.ChunkStore):
        def save(self, key, out):
            keys.append(key)
            super().save(key, out)

    first = analysis.sweep(system, loose, dt0=dts, store=Recording(tmp_path))
    store = Recording(tmp_path)
    second = analysis.sweep(system, tight, dt0=dts, store=store)
    assert store.loaded == 0 and len(keys) == 2 and keys[0] != keys[1]
    _same_table(first, fresh_loose)
    _same_table(second, fresh_tight)


# --- damaged chunk files: each discarded with a message, solved again, same table -----------


def _entries(path):
    with np.load(io.BytesIO(path.read_bytes()), allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


def _write(path, entries, *, rechecksum):
    """Write chunk entries back; with `rechecksum` a forged file whose checksum is consistent."""
    entries = dict(entries)
    if rechecksum:
        entries.pop("__checksum", None)
        entries["__checksum"] = np.asarray(chunk_store._chunk_checksum(entries))
    buf = io.BytesIO()
    np.savez(buf, **entries)
    path.write_bytes(buf.getvalue())


def _swap(files):
    a, b = files[0], files[1]
    data_a, data_b = a.read_bytes(), b.read_bytes()
    a.write_bytes(data_b)
    b.write_bytes(data_a)
    return 2, "not this one"


def _other_inputs(files):  # its own key and a consistent checksum, but other grid values
    e = _entries(files[0])
    e["__input000"] = e["__input000"] * 2
    _write(files[0], e, rechecksum=True)
    return 1, "other grid values"


def _truncate_bytes(files):
    files[0].write_bytes(files[0].read_bytes()[:200])
    return 1, "does not load"


def _wrong_length(files):  # internally consistent (checksum recomputed), one row short
    e = _entries(files[0])
    short = {k: (v[:-1] if not k.startswith("__") and v.ndim else v) for k, v in e.items()}
    _write(files[0], short, rechecksum=True)
    return 1, "of shape"


def _missing_key(files):  # internally consistent, num_steps removed
    e = _entries(files[0])
    del e["num_steps"]
    _write(files[0], e, rechecksum=True)
    return 1, "missing ['num_steps']"


def _missing_key_raw(files):  # an entry removed, checksum left as it was
    e = _entries(files[0])
    del e["num_rejected"]
    _write(files[0], e, rechecksum=False)
    return 1, "does not match its checksum"


def _bit_flip_raw(files):  # one bit of y_final's bytes in the file: the zip's CRC catches it
    data = bytearray(files[0].read_bytes())
    y = _entries(files[0])["y_final"]
    at = bytes(data).find(y.tobytes())
    data[at] ^= 0x01
    files[0].write_bytes(bytes(data))
    return 1, "does not load"


def _bit_flip_consistent_zip(files):  # a bit flip the zip layer cannot see: our checksum does
    e = _entries(files[0])
    y = e["y_final"].copy()
    y.view(np.uint8)[0] ^= 0x01
    e["y_final"] = y
    _write(files[0], e, rechecksum=False)
    return 1, "does not match its checksum"


def _old_format(files):  # a chunk from before checksums: outputs only
    e = _entries(files[0])
    _write(files[0], {k: v for k, v in e.items() if not k.startswith("__")}, rechecksum=False)
    return 1, "has no checksum"


def _empty_folder(files):
    files[0].unlink()
    files[0].mkdir()
    return 1, "not a regular file"


def _symlink_to_elsewhere(files):
    target = files[0].parent.parent / "elsewhere.npz"
    target.write_bytes(files[1].read_bytes())
    files[0].unlink()
    files[0].symlink_to(target)
    return 1, "symbolic link"


ATTACKS = [
    _swap,
    _other_inputs,
    _truncate_bytes,
    _wrong_length,
    _missing_key,
    _missing_key_raw,
    _bit_flip_raw,
    _bit_flip_consistent_zip,
    _old_format,
    _empty_folder,
    _symlink_to_elsewhere,
]


@pytest.mark.parametrize("attack", ATTACKS, ids=lambda f: f.__name__.strip("_"))
def test_damaged_chunk_is_discarded_with_a_message_and_solved_again(tmp_path, uncached, attack):
    folder = tmp_path / "store"
    _same_table(_sweep(store=chunk_store.ChunkStore(folder)), uncached)
    files = sorted(folder.glob("*.npz"))
    assert len(files) == 10
    n_bad, message = attack(files)
    events = []
    store = chunk_store.ChunkStore(folder, on_event=events.append)
    _same_table(_sweep(store=store), uncached)
    assert (store.discarded, store.loaded, store.saved) == (n_bad, 10 - n_bad, n_bad)
    assert len(events) == n_bad and all(message in e and "solving it again" in e for e in events)
    store = chunk_store.ChunkStore(folder, on_event=events.append)  # repaired: all load now
    _same_table(_sweep(store=store), uncached)
    assert (store.loaded, store.saved, store.discarded, len(events)) == (10, 0, 0, n_bad)
    assert all(p.is_file() and not p.is_symlink() for p in folder.glob("*.npz"))
    if attack is _symlink_to_elsewhere:  # the link was replaced, its target left alone
        assert (tmp_path / "elsewhere.npz").read_bytes() == files[1].read_bytes()


def test_folder_with_contents_in_a_chunks_place_is_left_and_never_crashes(tmp_path, uncached):
    folder = tmp_path / "store"
    _sweep(store=chunk_store.ChunkStore(folder))
    victim = sorted(folder.glob("*.npz"))[3]
    victim.unlink()
    victim.mkdir()
    (victim / "precious.txt").write_text("not the store's")
    for _ in range(2):  # every later run: discarded, solved, not stored, same table
        events = []
        store = chunk_store.ChunkStore(folder, on_event=events.append)
        _same_table(_sweep(store=store), uncached)
        assert (store.discarded, store.loaded, store.saved) == (1, 9, 0)
        assert "not a regular file" in events[0] and "left untouched" in events[1]
    assert (victim / "precious.txt").read_text() == "not the store's"
