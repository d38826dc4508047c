"""Executors: a sweep on a real Dask LocalCluster, or sharded over two host devices, gives the
same table as the local run; a worker killed mid-run loses nothing; bad choices are refused."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading

import jax
import numpy as np
import pandas as pd
import pytest
from helpers import checkout_env

import analysis
from analysis import chunk_store, distributed, run_store, systems

_DTS = 1.0 / np.arange(4, 11)  # 7 fixed steps on the span [0, 1]
_TOLS = [1e-3, 1e-5, 1e-7]


def _same_table(a: pd.DataFrame, b: pd.DataFrame):
    """Equal row by row (wall_s aside); floats to round-off."""
    cols = [c for c in a.columns if c != "wall_s"]
    assert list(b.columns) == list(a.columns)
    pd.testing.assert_frame_equal(a[cols], b[cols], check_exact=False, rtol=1e-13, atol=0)


@pytest.fixture(scope="module")
def client():
    """Two worker processes on loopback, one thread each; shut down however the module ends."""
    dd = pytest.importorskip("dask.distributed")
    cluster = dd.LocalCluster(
        n_workers=2,
        processes=True,
        threads_per_worker=1,
        dashboard_address=None,
        host="127.0.0.1",
    )
    client = dd.Client(cluster)
    try:
        yield client
    finally:
        client.close()
        cluster.close()


def test_bad_choices_are_refused_before_anything_compiles():
    before = analysis.compile_count()
    with pytest.raises(analysis.InvalidArgument, match="executor='spark'"):
        analysis.sweep("linear", "Euler", dt0=[0.1], executor="spark")
    with pytest.raises(analysis.InvalidArgument, match="only used with executor='dask'"):
        analysis.sweep("linear", "Euler", dt0=[0.1], executor="local", scheduler="tcp://x:1")
    with pytest.raises(analysis.InvalidArgument, match="scheduler=8786"):
        analysis.sweep("linear", "Euler", dt0=[0.1], executor="dask", scheduler=8786)
    # A field that closes over a lock cannot be pickled, so it cannot go to a worker; the client
    # is never touched (None here) because every group is pickled before anything is submitted.
    lock = threading.Lock()

    def field(t, y, args, h):
        with lock:
            return -y

    unpicklable = systems.System("locked", field, y0=np.array([1.0]))
    with pytest.raises(analysis.InvalidArgument, match="'locked' cannot be sent to Dask"):
        analysis.sweep(unpicklable, "Euler", dt0=[0.1], executor=distributed.Dask(None))
    from studies import __main__ as runner

    argv = ["run", "demo", "--executor", "sharded", "--scheduler", "tcp://127.0.0.1:1"]
    assert runner.main(argv) == 2  # refused before connecting or running anything
    assert analysis.compile_count() == before


@pytest.mark.slow
def test_fixed_step_dask_tables_equal_the_local_ones(client, tmp_path):
    sys_list = ["linear", systems.get("perturbed", base="linear", c=1.0, q=1)]
    fixed = dict(dt0=_DTS, chunk_size=3)  # 3 chunks per group, the last one padded
    local = analysis.sweep(sys_list, "Euler", **fixed)
    store = chunk_store.ChunkStore(tmp_path)
    remote = analysis.sweep(sys_list, "Euler", executor=client, store=store, **fixed)
    _same_table(local, remote)
    assert store.saved == 2 * 3 and remote.attrs["compilations"] >= 2  # compiled on workers
    # Euler on y' = -y is y_N = (1 - h)^N exactly, whichever worker solved the row.
    euler = remote[remote.system == "linear"]
    np.testing.assert_allclose(euler["y_final_0"], (1 - _DTS) ** np.round(1 / _DTS), rtol=1e-12)
    # The chunks the cluster stored are the local run's chunks: a local rerun only loads them.
    again = analysis.sweep(sys_list, "Euler", store=chunk_store.ChunkStore(tmp_path), **fixed)
    assert again.attrs["compilations"] == 0
    _same_table(local, again)


@pytest.mark.slow
def test_adaptive_dask_tables_equal_the_local_ones(client):
    # Same chunks, so the same steps and the same numbers; through a scheduler address and
    # through `using`, the two ways a study reaches an existing cluster.
    adaptive = dict(controller="PI34", rtol=_TOLS, chunk_size=2)
    local = analysis.sweep("van_der_pol", "Tsit5", **adaptive)
    address = client.scheduler.address
    remote = analysis.sweep("van_der_pol", "Tsit5", executor="dask", scheduler=address, **adaptive)
    _same_table(local, remote)
    with distributed.using(client):
        _same_table(local, analysis.sweep("van_der_pol", "Tsit5", **adaptive))
    assert (local.status == "ok").all() and local.num_rejected.sum() > 0  # really adaptive


@pytest.mark.slow
def test_runner_executor_option_gives_the_local_tables(client, tmp_path):
    from studies import __main__ as runner

    argv = ["run", "demo", "--quick", "--force"]
    address = client.scheduler.address
    out = {"dask": tmp_path / "dask", "local": tmp_path / "local"}
    assert (
        runner.main(
            [*argv, "--out", str(out["dask"]), "--executor", "dask", "--scheduler", address]
        )
        == 0
    )
    assert runner.main([*argv, "--out", str(out["local"])]) == 0  # back to local for the process
    remote, _ = run_store.read_tables(out["dask"] / "results/demo")
    local, _ = run_store.read_tables(out["local"] / "results/demo")
    assert sorted(remote) == sorted(local)
    for name in local:
        _same_table(local[name], remote[name])


@pytest.mark.slow
def test_dask_without_a_scheduler_starts_and_stops_its_own_cluster():
    local = analysis.sweep("linear", "Heun", dt0=_DTS, chunk_size=4)
    _same_table(local, analysis.sweep("linear", "Heun", dt0=_DTS, chunk_size=4, executor="dask"))


class _KillOnFirstChunk:
    """Sweep progress that SIGKILLs a worker holding a chunk as soon as the first chunk is in."""

    def __init__(self, client):
        self.client, self.done, self.killed = client, 0, None

    def begin(self, chunks, solves):
        self.chunks = chunks

    def advance(self, chunks, solves, cached):
        self.done += chunks
        if self.killed is None:
            busy = [w for w, keys in self.client.processing().items() if keys]
            self.killed = {"done": self.done, "busy": len(busy), "pid": None}
            if busy:
                self.killed["pid"] = self.client.run(os.getpid, workers=busy[:1])[busy[0]]
                os.kill(self.killed["pid"], signal.SIGKILL)


@pytest.mark.slow
def test_a_worker_killed_mid_run_loses_nothing(client, tmp_path):
    # 7 chunks of one solve each, 3·10⁵ Tsit5 steps apiece (a few tenths of a second), so the
    # other chunks are still running or queued when the first one is in.
    kw = dict(dt0=2 * np.pi / np.arange(300_000, 300_007), chunk_size=1)
    local = analysis.sweep("harmonic", "Tsit5", **kw)
    progress = _KillOnFirstChunk(client)
    store = chunk_store.ChunkStore(tmp_path, progress=progress)
    remote = analysis.sweep("harmonic", "Tsit5", executor=client, store=store, **kw)
    assert progress.killed["done"] == 1 < progress.chunks == 7
    assert progress.killed["busy"] >= 1  # the killed worker held a chunk
    with pytest.raises(ProcessLookupError):
        os.kill(progress.killed["pid"], 0)  # that worker process is gone
    assert store.saved == 7 and progress.done == 7
    _same_table(local, remote)


_SHARDED = textwrap.dedent(
    """
    import json, jax
    jax.config.update("jax_enable_x64", True)
    import numpy as np, analysis

    # Record the sharding of each chunk's y_final as it comes out of the compiled batch.
    shardings, _ready = [], jax.block_until_ready
    def _recording(x):
        if isinstance(x, dict) and "y_final" in x:
            shardings.append(x["y_final"].sharding)
        return _ready(x)
    jax.block_until_ready = _recording

    out = {"devices": len(jax.devices())}
    cases = {
        "fixed": ("linear10", ["Heun"], dict(dt0=1.0 / np.arange(4, 11), chunk_size=3)),
        "adaptive": ("van_der_pol", ["Tsit5"], dict(controller="PI34", rtol=[1e-3, 1e-6])),
    }
    for case, (system, solvers, kw) in cases.items():
        local = analysis.sweep(system, solvers, **kw)
        sharded = analysis.sweep(system, solvers, executor="sharded", **kw)
        ys = [c for c in local.columns if c.startswith("y_final")]
        out[case] = {
            "same_text": local.drop(columns=["wall_s", "error", *ys]).equals(
                sharded.drop(columns=["wall_s", "error", *ys])),
            "y_diff": float(np.max(np.abs(local[ys].to_numpy() - sharded[ys].to_numpy()))),
            "y_scale": float(np.max(np.abs(local[ys].to_numpy()))),
            "status": sorted(set(sharded.status)),
        }
    # A field with eqx.error_if runs unsplit (a raise on one device would leave the other
    # waiting in the loop's all-reduce until XLA aborts): its failures are rows, as locally.
    import warnings, equinox as eqx
    guarded = analysis.systems.System(
        "guarded", lambda t, y, a, h: -30.0 * eqx.error_if(y, abs(y) > 10, "left"), y0=1.0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        kw = dict(dt0=[0.1, 1 / 12, 0.01, 0.005], chunk_size=3)
        sharded = analysis.sweep(guarded, "Euler", executor="sharded", **kw)
        local = analysis.sweep(guarded, "Euler", **kw)
    out["guarded"] = {
        "status": list(sharded.status),
        "same": sharded.drop(columns="wall_s").equals(local.drop(columns="wall_s")),
        "warnings": sum("field_error" in str(w.message) for w in caught),
    }
    split = [s for s in shardings if isinstance(s, jax.sharding.NamedSharding)]
    out["mesh_devices"] = sorted({s.mesh.size for s in split})
    out["output_devices"] = sorted({len(s.device_set) for s in split})
    out["output_specs"] = sorted({s.spec[0] for s in split})
    print("RESULT", json.dumps(out))
    """
)


@pytest.mark.slow
def test_sharded_over_two_host_devices_equals_local():
    env = checkout_env(
        XLA_FLAGS="--xla_force_host_platform_device_count=2",
        JAX_ENABLE_X64="1",
        JAX_PLATFORMS="cpu",
    )
    proc = subprocess.run(
        [sys.executable, "-c", _SHARDED], env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
    out = json.loads(line[len("RESULT ") :])
    assert out["devices"] == 2 and out["mesh_devices"] == [2] and out["output_devices"] == [2]
    assert out["output_specs"] == ["batch"]  # the batch axis is split
    for case in ("fixed", "adaptive"):
        assert out[case]["same_text"] and out[case]["status"] == ["ok"]
        assert out[case]["y_diff"] <= 1e-13 * out[case]["y_scale"]
    assert out["guarded"] == {
        "status": ["field_error", "field_error", "ok", "ok"],
        "same": True,
        "warnings": 4,
    }


def test_a_chunk_that_kills_every_worker_is_named():
    # The field ends the worker process (os._exit) when it meets h = 0.25. One worker, no
    # retries: Dask's KilledWorker names a task key; the sweep names the chunk's system, solver
    # and settings. (One chunk: a chunk queued on the dying worker is given up as well.)
    dd = pytest.importorskip("dask.distributed")
    import dask

    def field(t, y, args, h):
        def die(step):
            if np.any(np.asarray(step) == 0.25):
                os._exit(3)

        jax.debug.callback(die, h)
        return -y + 0.0 * h  # reads h, so h reaches the field (StepAware)

    deadly = systems.System("deadly", field, y0=np.float64(1.0))
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        with (
            dd.LocalCluster(
                n_workers=1, processes=True, threads_per_worker=1, dashboard_address=None
            ) as cluster,
            dd.Client(cluster) as client,
        ):
            with pytest.raises(distributed.ChunkKilledWorkers) as raised:
                analysis.sweep(deadly, "Euler", dt0=[0.5, 0.25, 0.1], chunk_size=3, executor=client)
    message = str(raised.value)
    assert "system 'deadly' with Euler" in message and "allowed_failures=0" in message
    assert "its 3 setting(s): h=0.5; h=0.25; h=0.1" in message
    assert isinstance(raised.value.__cause__, dd.KilledWorker)
