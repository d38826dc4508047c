"""The chunk store: resumable chunked sweeps, damaged chunks, chunk keys."""

import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

import analysis
from analysis import chunk_store, systems
from analysis.systems import System


class _Interrupting(chunk_store.ChunkStore):
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
    store = chunk_store.ChunkStore(tmp_path)
    with chunk_store.recording(store):  # the runner's way: no argument, an active store
        resumed = _sweep()
    assert (store.loaded, store.saved) == (3, 7)
    pd.testing.assert_frame_equal(resumed.drop(columns="wall_s"), whole.drop(columns="wall_s"))
    # Euler on y' = -y: y_N = (1 - h)^N exactly, whatever chunk a row came from.
    euler = resumed[resumed.solver == "Euler"]
    np.testing.assert_allclose(euler["y_final_0"], (1 - _DTS) ** np.round(1 / _DTS), rtol=1e-12)


def test_fully_stored_sweep_compiles_nothing_and_damaged_chunk_is_resolved(tmp_path):
    events = []
    first = _sweep(store=chunk_store.ChunkStore(tmp_path))
    chunk = sorted(tmp_path.glob("*.npz"))[0]
    chunk.write_bytes(chunk.read_bytes()[:50])  # a damaged chunk file
    store = chunk_store.ChunkStore(tmp_path, on_event=events.append)
    again = _sweep(store=store)
    assert (store.loaded, store.saved) == (9, 1) and "does not load" in events[0]
    pd.testing.assert_frame_equal(again.drop(columns="wall_s"), first.drop(columns="wall_s"))
    store = chunk_store.ChunkStore(tmp_path)
    third = _sweep(store=store)
    assert store.loaded == 10 and third.attrs["compilations"] == 0


def test_store_chunk_size_applies_only_when_the_caller_gives_none(tmp_path):
    store = chunk_store.ChunkStore(tmp_path, chunk_size=7)
    analysis.sweep("linear", "Euler", dt0=_DTS, store=store)
    assert store.saved == 3  # 20 solves in chunks of 7
    store = chunk_store.ChunkStore(tmp_path / "b", chunk_size=7)
    analysis.sweep("linear", "Euler", dt0=_DTS, chunk_size=10, store=store)
    assert store.saved == 2


def test_fields_differing_only_in_closed_over_weights_never_share_chunks(tmp_path):
    def model(w):  # two "trained models" under one name, weights closed over (not in args)
        w = jnp.asarray(w)
        return System(name="model", vector_field=lambda t, y, args, h: -w * y, y0=jnp.ones(2))

    dts = [0.5, 0.25]
    first = analysis.sweep(
        model([1.0, 2.0]), "Euler", dt0=dts, store=chunk_store.ChunkStore(tmp_path)
    )
    store = chunk_store.ChunkStore(tmp_path)
    second = analysis.sweep(model([4.0, 2.0]), "Euler", dt0=dts, store=store)
    assert store.loaded == 0 and store.saved == 1
    # Euler: y_N = (1 - h w)^N per component, for each model's own weights.
    np.testing.assert_allclose(first["y_final_0"], [0.5**2, 0.75**4], rtol=1e-12)
    np.testing.assert_allclose(second["y_final_0"], [(-1.0) ** 2, 0.0], atol=1e-15)
