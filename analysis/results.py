"""Result store: tables as parquet with a JSON provenance sidecar, a cache rule, resumable sweeps.

A study's results live in one folder: one `<table>.parquet` per DataFrame and `provenance.json`
(study, config and its hash, package versions, x64 flag, platform and device, git commit and
dirtiness, a hash of the code (docstrings aside) of every library file the numbers depend on,
start and end time, and the SHA-256 of every table file). Every file is written to a temporary
name and renamed into place, and `provenance.json` is written last, so a crash never leaves a
half-written result that could later be read as whole.

Cache rule (`stale_reason`): stored results are reused only when the config hash, the package
versions, the x64 flag and the library sources all match, and every table file loads and matches
its checksum; otherwise the reason is said and the study recomputes.

Resume (`ChunkStore`): while a store is active (`with recording(store):`), `analysis.sweep`
saves each finished vmapped chunk and, on a rerun, loads it instead of solving again, so a killed
run resumes from its finished chunks and ends with the same table.

Examples:
    >>> from analysis import results
    >>> prov = results.provenance("demo", {"steps": [8, 16]})
    >>> prov["study"], len(prov["config_hash"])
    ('demo', 16)
    >>> results.stale_reason(prov, prov) is None
    True
"""

from __future__ import annotations

import ast
import contextlib
import contextvars
import dataclasses
import hashlib
import io
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import jax
import numpy as np
import pandas as pd

__all__ = [
    "provenance",
    "config_hash",
    "source_hashes",
    "write_tables",
    "read_tables",
    "atomic_write_bytes",
    "stale_reason",
    "cache_key",
    "read_provenance",
    "CorruptResult",
    "ChunkStore",
    "recording",
    "active_store",
]

_PACKAGES = (
    "jax",
    "jaxlib",
    "diffrax",
    "equinox",
    "numpy",
    "scipy",
    "pandas",
    "matplotlib",
    "pyarrow",
)
_PACKAGE_ROOT = Path(__file__).resolve().parent
_UMASK = os.umask(0o022)
os.umask(_UMASK)


class CorruptResult(Exception):
    """A stored result file is missing, fails to load, or does not match its checksum.

    Raised by `read_tables` and `read_provenance`; the message names the file. The study
    runner treats it as "recompute".

    Examples:
        >>> import pandas as pd
        >>> folder = Path("results/demo")
        >>> _ = write_tables(folder, {"t": pd.DataFrame({"x": [1.0]})}, provenance("demo", {}))
        >>> _ = (folder / "t.parquet").write_bytes(b"damaged")
        >>> read_tables(folder)
        Traceback (most recent call last):
        ...
        analysis.results.CorruptResult: results/demo/t.parquet does not match its checksum in ...
    """


def _jsonable(config) -> object:
    if dataclasses.is_dataclass(config):
        config = dataclasses.asdict(config)
    return json.loads(json.dumps(config, default=repr, sort_keys=True))


def config_hash(config) -> str:
    """SHA-256 (first 16 hex digits) of the config's canonical JSON.

    Args:
        config: a JSON-able dict or a dataclass (values JSON cannot hold are taken by `repr`).

    Returns:
        16 hex digits; dict key order does not matter.

    Examples:
        >>> config_hash({"steps": [8, 16], "solver": "Euler"})
        '0fc16752f75e7857'
        >>> config_hash({"solver": "Euler", "steps": [8, 16]})  # same config, same hash
        '0fc16752f75e7857'
    """
    text = json.dumps(_jsonable(config), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def source_hashes(*extra: Path) -> dict[str, str]:
    """A hash (16 hex digits of SHA-256) of the code of each library source the numbers depend
    on, and of `extra`.

    The library is every `analysis/**/*.py` except `analysis/plotting/` (figures are always
    redrawn from stored tables, so a plotting change never needs a recompute). A Python file is
    hashed by its syntax tree without docstrings (`ast.dump`), so editing a docstring or a
    comment, or reformatting, keeps stored results current; any change to the code does not.
    Other files are hashed byte for byte. Keys are paths relative to the folder holding the
    `analysis` package (a file outside it: its name).

    Args:
        *extra: more files to hash, e.g. the study module.

    Returns:
        {path: 16 hex digits}.

    Examples:
        >>> hashes = source_hashes()
        >>> "analysis/neural.py" in hashes, "analysis/plotting/neural.py" in hashes
        (True, False)
        >>> def hash_of(text):
        ...     _ = Path("my_study.py").write_text(text)
        ...     return source_hashes(Path("my_study.py"))["my_study.py"]
        >>> hash_of("'A study.'\\nSTEPS = 8\\n") == hash_of("'Edited.'\\nSTEPS = 8  # note\\n")
        True
        >>> hash_of("STEPS = 8\\n") == hash_of("STEPS = 16\\n")
        False
    """
    root = _PACKAGE_ROOT.parent
    files = [
        p
        for p in sorted(_PACKAGE_ROOT.rglob("*.py"))
        if "plotting" not in p.relative_to(_PACKAGE_ROOT).parts
    ]
    out = {}
    for p in [*files, *map(Path, extra)]:
        p = p.resolve()
        key = p.relative_to(root).as_posix() if p.is_relative_to(root) else p.name
        out[key] = _sha256(_code_bytes(p))[:16]
    return out


def _code_bytes(path: Path) -> bytes:
    """What of a file can change the numbers: a Python file's syntax tree without docstrings
    (comments and layout are not in the tree), any other file's bytes."""
    data = path.read_bytes()
    if path.suffix != ".py":
        return data
    tree = ast.parse(data)
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                if isinstance(body[0].value.value, str):
                    node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree, include_attributes=False).encode()


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args],
            capture_output=True,
            text=True,
            check=True,
            cwd=_PACKAGE_ROOT,
        )
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def provenance(study: str, config, *, started: datetime | None = None, sources=()) -> dict:
    """Everything needed to say where a result came from.

    `sources` are extra files whose content the results depend on (the study module); they are
    hashed together with the library (see `source_hashes`).

    Args:
        study: the study's name.
        config: its config (a JSON-able dict or a dataclass).
        started: when the computation started (default: now).
        sources: extra files to hash.

    Returns:
        A JSON-able dict: study, config, config_hash, versions, x64, sources, platform, device,
        git_commit, git_dirty, started, finished.

    Examples:
        >>> prov = provenance("demo", {"steps": [8, 16]})
        >>> prov["study"], prov["config"], prov["config_hash"], prov["x64"]
        ('demo', {'steps': [8, 16]}, '4a8ae48e9e941b94', True)
        >>> sorted(prov["versions"])
        ['diffrax', 'equinox', 'jax', 'jaxlib', 'matplotlib', 'numpy', 'pandas', 'pyarrow',
         'python', 'scipy']
    """
    versions = {"python": sys.version.split()[0]}
    for pkg in _PACKAGES:
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    status = _git("status", "--porcelain")
    return {
        "study": study,
        "config": _jsonable(config),
        "config_hash": config_hash(config),
        "versions": versions,
        "x64": bool(jax.config.read("jax_enable_x64")),
        "sources": source_hashes(*sources),
        "platform": platform.platform(),
        "device": str(jax.devices()[0]),
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": None if status is None else bool(status),
        "started": (started or datetime.now(UTC)).isoformat(timespec="seconds"),
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def cache_key(prov: dict) -> str:
    """16 hex digits identifying what the numbers depend on: config, versions, x64, sources.

    Times, platform and git state do not enter, so a rerun of the same config on the same
    library has the same key.

    Examples:
        >>> a = provenance("demo", {"steps": [8]})
        >>> cache_key(a) == cache_key({**a, "finished": "tomorrow"})
        True
        >>> cache_key(a) == cache_key(provenance("demo", {"steps": [16]}))
        False
    """
    keep = {k: prov.get(k) for k in ("config_hash", "versions", "x64", "sources")}
    return _sha256(json.dumps(keep, sort_keys=True).encode())[:16]


def _changed(old: dict, new: dict) -> list[str]:
    return sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))


def stale_reason(stored: dict | None, current: dict) -> str | None:
    """Why stored results (by their provenance) cannot stand for `current`; None if they can.

    Examples:
        >>> a = provenance("demo", {"steps": [8]}); b = provenance("demo", {"steps": [8, 16]})
        >>> stale_reason(a, b)
        'config changed (steps)'
    """
    if stored is None:
        return "no stored results"
    if stored.get("config_hash") != current.get("config_hash"):
        old, new = stored.get("config") or {}, current.get("config") or {}
        keys = _changed(old, new) if isinstance(old, dict) and isinstance(new, dict) else []
        return f"config changed ({', '.join(keys) or 'hash'})"
    old_v, new_v = stored.get("versions") or {}, current.get("versions") or {}
    if old_v != new_v:
        diffs = [f"{k} {old_v.get(k)} -> {new_v.get(k)}" for k in _changed(old_v, new_v)]
        return f"package versions changed ({', '.join(diffs)})"
    if stored.get("x64") != current.get("x64"):
        return f"x64 changed ({stored.get('x64')} -> {current.get('x64')})"
    old_s, new_s = stored.get("sources") or {}, current.get("sources") or {}
    if old_s != new_s:
        return f"library sources changed ({', '.join(_changed(old_s, new_s))})"
    return None


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` via a temporary file in the same folder and a rename.

    Readers see either the old file or the whole new one, never a partial write. Missing
    parent folders are created.

    Examples:
        >>> atomic_write_bytes(Path("out/note.txt"), b"hello")
        >>> Path("out/note.txt").read_bytes(), [p.name for p in Path("out").iterdir()]
        (b'hello', ['note.txt'])
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; give the usual permissions
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_tables(folder: Path, tables: dict[str, pd.DataFrame], prov: dict) -> dict:
    """Store each table as parquet, then the provenance (with each file's SHA-256) as JSON.

    Args:
        folder: the result folder (created if missing).
        tables: {name: DataFrame}, each written to `<name>.parquet` (index dropped).
        prov: the provenance from `provenance`.

    Returns:
        The provenance as written: `prov` plus "tables" (the names) and "files" (SHA-256 each).

    Examples:
        >>> import pandas as pd
        >>> orders = pd.DataFrame({"solver": ["Euler", "Heun"], "order": [1.0, 2.0]})
        >>> prov = write_tables(Path("results/demo"), {"orders": orders}, provenance("demo", {}))
        >>> prov["tables"], sorted(p.name for p in Path("results/demo").iterdir())
        (['orders'], ['orders.parquet', 'provenance.json'])
    """
    folder = Path(folder)
    files = {}
    for name, df in tables.items():
        df = df.copy()
        df.attrs = {}
        data = df.to_parquet(index=False)
        atomic_write_bytes(folder / f"{name}.parquet", data)
        files[f"{name}.parquet"] = _sha256(data)
    prov = {**prov, "tables": sorted(tables), "files": files}
    atomic_write_bytes(
        folder / "provenance.json", json.dumps(prov, indent=2, sort_keys=True).encode()
    )
    return prov


def read_provenance(folder: Path) -> dict | None:
    """The stored provenance, None if there is none; CorruptResult if it does not parse.

    Only `provenance.json` is read; the tables are not checked (see `read_tables`).

    Examples:
        >>> import pandas as pd
        >>> read_provenance(Path("results/demo")) is None
        True
        >>> table = pd.DataFrame({"x": [1.0]})
        >>> _ = write_tables(Path("results/demo"), {"t": table}, provenance("demo", {}))
        >>> prov = read_provenance(Path("results/demo"))
        >>> prov["study"], prov["tables"]
        ('demo', ['t'])
    """
    path = Path(folder) / "provenance.json"
    if not path.exists():
        return None
    try:
        prov = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise CorruptResult(f"{path} does not load: {e}") from e
    if not isinstance(prov, dict) or not isinstance(prov.get("tables"), list):
        raise CorruptResult(f"{path} is not a provenance record")
    return prov


def read_tables(folder: Path) -> tuple[dict[str, pd.DataFrame], dict]:
    """Load the tables and provenance written by `write_tables`, checking every checksum.

    Raises CorruptResult naming the file when one is missing, fails to load or its SHA-256
    differs from the one recorded when it was written.

    Returns:
        ({name: DataFrame}, provenance).

    Examples:
        >>> import pandas as pd
        >>> orders = pd.DataFrame({"solver": ["Euler", "Heun"], "order": [1.0, 2.0]})
        >>> _ = write_tables(Path("results/demo"), {"orders": orders}, provenance("demo", {}))
        >>> tables, prov = read_tables(Path("results/demo"))
        >>> tables["orders"].equals(orders), prov["study"]
        (True, 'demo')
    """
    folder = Path(folder)
    prov = read_provenance(folder)
    if prov is None:
        raise CorruptResult(f"{folder / 'provenance.json'} is missing")
    tables = {}
    for name in prov["tables"]:
        path = folder / f"{name}.parquet"
        try:
            data = path.read_bytes()
        except OSError as e:
            raise CorruptResult(f"{path} is missing or unreadable: {e}") from e
        expected = (prov.get("files") or {}).get(path.name)
        if expected is not None and _sha256(data) != expected:
            raise CorruptResult(f"{path} does not match its checksum in provenance.json")
        try:
            tables[name] = pd.read_parquet(io.BytesIO(data))
        except Exception as e:  # pyarrow raises several types for a damaged file
            raise CorruptResult(f"{path} does not load: {e}") from e
    return tables, prov


class ChunkStore:
    """Finished sweep chunks on disk (one `.npz` per chunk), so an interrupted sweep resumes.

    `analysis.sweep` calls, for each vmapped chunk, `key(...)` with everything that determines the
    chunk's outputs (system identity, solver, controller, step bound, chunk inputs), then `load`;
    on a miss it solves and calls `save`. A chunk file that fails to load is reported through
    `on_event` and solved again. `begin`/`advance` forward sweep progress to `progress` (any
    object with `begin(chunks, solves)` and `advance(chunks, solves, cached)` methods).

    `chunk_size` (optional) is the chunk size sweeps use when their caller gives none.

    Examples:
        >>> import analysis
        >>> store = ChunkStore(Path("chunks"))
        >>> with recording(store):
        ...     df = analysis.sweep("linear", "Euler", dt0=[0.1, 0.05])
        >>> with recording(store):  # the rerun loads the stored chunk instead of solving
        ...     again = analysis.sweep("linear", "Euler", dt0=[0.1, 0.05])
        >>> store.saved, store.loaded, again["error"].equals(df["error"])
        (1, 1, True)
    """

    def __init__(
        self, folder: Path, *, chunk_size: int | None = None, progress=None, on_event=None
    ):
        self.folder = Path(folder)
        self.chunk_size = chunk_size
        self.progress = progress
        self.on_event = on_event or (lambda message: print(message, file=sys.stderr))
        self.loaded = 0
        self.saved = 0

    @staticmethod
    def key(identity: str, *arrays) -> str:
        """SHA-256 of a text identity and the bytes of the chunk's input arrays."""
        h = hashlib.sha256(identity.encode())
        for a in arrays:
            a = np.ascontiguousarray(np.asarray(a))
            h.update(f"{a.dtype.str}{a.shape}".encode())
            h.update(a.tobytes())
        return h.hexdigest()[:32]

    def _path(self, key: str) -> Path:
        return self.folder / f"{key}.npz"

    def load(self, key: str) -> dict[str, np.ndarray] | None:
        """The stored outputs of a chunk, or None when absent or damaged (then it is deleted)."""
        path = self._path(key)
        if not path.exists():
            return None
        try:
            with np.load(io.BytesIO(path.read_bytes()), allow_pickle=False) as npz:
                out = {k: npz[k] for k in npz.files}
        except Exception as e:  # a damaged zip raises BadZipFile, ValueError, EOFError, ...
            self.on_event(f"chunk {path.name} does not load ({e}); solving it again")
            path.unlink(missing_ok=True)
            return None
        self.loaded += 1
        return out

    def save(self, key: str, out: dict[str, np.ndarray]) -> None:
        """Store a finished chunk atomically."""
        buf = io.BytesIO()
        np.savez(buf, **{k: np.asarray(v) for k, v in out.items()})
        atomic_write_bytes(self._path(key), buf.getvalue())
        self.saved += 1

    def begin(self, chunks: int, solves: int) -> None:
        """A sweep of `chunks` chunks and `solves` solves starts (tells `progress`)."""
        if self.progress is not None:
            self.progress.begin(chunks, solves)

    def advance(self, chunks: int, solves: int, *, cached: bool) -> None:
        """`chunks` more chunks are done, solved or (`cached`) loaded (tells `progress`)."""
        if self.progress is not None:
            self.progress.advance(chunks, solves, cached)

    def clear(self) -> None:
        """Delete every stored chunk."""
        shutil.rmtree(self.folder, ignore_errors=True)


_ACTIVE: contextvars.ContextVar[ChunkStore | None] = contextvars.ContextVar(
    "chunk_store", default=None
)


@contextlib.contextmanager
def recording(store: ChunkStore):
    """Make `store` the chunk store of every `analysis.sweep` call inside the block.

    Yields the store; the previous one (usually none) is active again after the block.

    Examples:
        >>> with recording(ChunkStore(Path("chunks"))) as store:
        ...     print(active_store() is store)
        True
        >>> active_store() is None
        True
    """
    token = _ACTIVE.set(store)
    try:
        yield store
    finally:
        _ACTIVE.reset(token)


def active_store() -> ChunkStore | None:
    """The chunk store set by `recording`, if any.

    Examples:
        >>> active_store() is None
        True
        >>> with recording(ChunkStore(Path("chunks"))) as store:
        ...     active_store().folder.name
        'chunks'
    """
    return _ACTIVE.get()
