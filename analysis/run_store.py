"""Run store: a study's tables as parquet with a JSON provenance sidecar, and the cache rule.

A study's results live in one folder: one `<table>.parquet` per DataFrame and `provenance.json`
(study, config and its hash, package versions, x64 flag, platform and device, git commit and
dirtiness, a hash of the code (docstrings aside) of every library file the numbers depend on,
start and end time, and the SHA-256 of every table file). Every file is written to a temporary
name and renamed into place, and `provenance.json` is written last, so a crash never leaves a
half-written result that could later be read as whole.

Cache rule (`stale_reason`): stored results are reused only when the config hash, the package
versions, the x64 flag and the library sources all match, and every table file loads and matches
its checksum; otherwise the reason is said and the study recomputes.

The file primitives (`atomic_write_bytes`, `read_regular_file`, `check_name`) are also what
`analysis.chunk_store` (the resumable sweep's chunk cache) writes and reads with.

Examples:
    >>> from analysis import run_store
    >>> prov = run_store.provenance("demo", {"steps": [8, 16]})
    >>> prov["study"], len(prov["config_hash"])
    ('demo', 16)
    >>> run_store.stale_reason(prov, prov) is None
    True
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import hashlib
import io
import json
import os
import platform
import re
import stat
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import jax
import pandas as pd

__all__ = [
    "provenance",
    "config_hash",
    "source_hashes",
    "write_tables",
    "read_tables",
    "atomic_write_bytes",
    "remove_litter",
    "stale_reason",
    "cache_key",
    "read_provenance",
    "provenance_problem",
    "CorruptResult",
    "check_name",
    "read_regular_file",
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
        analysis.run_store.CorruptResult: results/demo/t.parquet does not match its checksum in ...
    """


_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
MAX_FILE_BYTES = 2**31  # a stored file larger than this is refused, not read into memory


def check_name(name) -> str:
    """`name` if it can be a stored table's or study's file name, else CorruptResult.

    Names read from provenance become paths, so only plain names are allowed: letters, digits,
    `_`, `.`, `-`, not starting with `.` or `-`, at most 100 characters, no `..` (so no folder
    separator, no parent folder, no hidden file).

    Examples:
        >>> check_name("rows")
        'rows'
        >>> check_name("../../elsewhere/x")
        Traceback (most recent call last):
        ...
        analysis.run_store.CorruptResult: stored name '../../elsewhere/x' is not a plain ...
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name) or ".." in name:
        raise CorruptResult(
            f"stored name {name!r} is not a plain file name (letters, digits, _ . -, "
            "no folder separators); refusing to use it as a path"
        )
    return name


def read_regular_file(path: Path, *, limit: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of `path`, which must be a regular file (not a symlink, FIFO, device, folder).

    The file is opened without following a symlink and without blocking (a FIFO does not hang),
    and checked by `fstat` on the open descriptor before anything is read, so a symlink to
    `/dev/zero` or a FIFO put in place of a table is refused with CorruptResult instead of
    hanging or filling memory. A file over `limit` bytes is refused too. FileNotFoundError
    passes through (a missing file is not corrupt, only absent).

    Examples:
        >>> _ = Path("t.parquet").write_bytes(b"data")
        >>> read_regular_file(Path("t.parquet"))
        b'data'
        >>> Path("link.parquet").symlink_to("/dev/zero")
        >>> read_regular_file(Path("link.parquet"))
        Traceback (most recent call last):
        ...
        analysis.run_store.CorruptResult: link.parquet is a symbolic link (to /dev/zero); ...
    """
    path = Path(path)
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise
    except OSError as e:
        if path.is_symlink():
            raise CorruptResult(
                f"{path} is a symbolic link (to {os.readlink(path)}); only regular files inside "
                "the folder are read"
            ) from e
        raise CorruptResult(f"{path} is unreadable ({e}); only regular files are read") from e
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise CorruptResult(
                f"{path} is not a regular file (mode {stat.filemode(st.st_mode)}); refusing "
                "to read it"
            )
        if st.st_size > limit:
            raise CorruptResult(f"{path} is {st.st_size} bytes, more than {limit}; refusing")
        with os.fdopen(fd, "rb", closefd=False) as fh:
            data = fh.read(limit + 1)
        if len(data) > limit:
            raise CorruptResult(f"{path} grew past {limit} bytes while read; refusing")
        return data
    finally:
        os.close(fd)


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


def provenance_problem(prov) -> str | None:
    """What is missing or malformed in a stored provenance record; None if it is whole.

    Whole means: a dict whose `config_hash` is a string, `versions` and `sources` are dicts of
    strings, `x64` is a bool, `tables` is a non-empty list of distinct plain names (`check_name`)
    and `files` holds a SHA-256 (64 hex digits) for every `<table>.parquet` and nothing else.

    Examples:
        >>> prov = {**provenance("demo", {}), "tables": ["t"], "files": {"t.parquet": "0" * 64}}
        >>> provenance_problem(prov) is None
        True
        >>> provenance_problem({**prov, "versions": "jax 0.4"})
        'versions is a str, not a dict'
        >>> provenance_problem({**prov, "files": {}})
        'no checksum for t.parquet'
    """
    if not isinstance(prov, dict):
        return f"the record is a {type(prov).__name__}, not a dict"
    if not isinstance(prov.get("config_hash"), str):
        return "config_hash is missing or not a string"
    for key in ("versions", "sources"):
        value = prov.get(key)
        if not isinstance(value, dict):
            return f"{key} is {'missing' if value is None else 'a ' + type(value).__name__}" + (
                "" if value is None else ", not a dict"
            )
    if not isinstance(prov.get("x64"), bool):
        return "x64 is missing or not a bool"
    tables, files = prov.get("tables"), prov.get("files")
    if not isinstance(tables, list) or not tables:
        return "tables is missing, empty or not a list"
    if len(set(map(str, tables))) != len(tables):
        return "tables names a table twice"
    for name in tables:
        try:
            check_name(name)
        except CorruptResult as e:
            return str(e)
    if not isinstance(files, dict):
        return "files (the checksum list) is missing or not a dict"
    expected = {f"{name}.parquet" for name in tables}
    for file in sorted(expected):
        digest = files.get(file)
        if digest is None:
            return f"no checksum for {file}"
        if not isinstance(digest, str) or not _SHA256.fullmatch(digest):
            return f"the checksum of {file} is not a SHA-256"
    extra = sorted(map(str, set(files) - expected))
    if extra:
        return f"checksums for files that are not tables: {', '.join(extra)}"
    return None


def stale_reason(stored: dict | None, current: dict) -> str | None:
    """Why stored results (by their provenance) cannot stand for `current`; None if they can.

    A stored record with missing or malformed fields (see `provenance_problem`) is stale, with
    the reason, rather than an error.

    Examples:
        >>> a = provenance("demo", {"steps": [8]}); b = provenance("demo", {"steps": [8, 16]})
        >>> stale_reason(a, b)
        'config changed (steps)'
        >>> stale_reason({**a, "versions": "jax"}, a)
        'stored provenance is malformed (versions is a str, not a dict)'
    """
    if stored is None:
        return "no stored results"
    if not isinstance(stored, dict):
        return f"stored provenance is malformed (a {type(stored).__name__}, not a dict)"
    for key in ("versions", "sources"):
        if not isinstance(stored.get(key), dict):
            what = "missing" if stored.get(key) is None else f"a {type(stored[key]).__name__}"
            return f"stored provenance is malformed ({key} is {what}, not a dict)"
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
    if path.is_dir() and not path.is_symlink():
        raise IsADirectoryError(
            f"{path} is a folder, so no file can be written there; move it away and run again"
        )
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


def remove_litter(folder: Path) -> list[str]:
    """Delete the temporary files `atomic_write_bytes` leaves in `folder` when killed (kill -9)
    between creating and renaming them: `.<name>.<random>.tmp`.

    Only entries directly in `folder` are looked at; a matching regular file or symlink is
    unlinked (a symlink itself, never its target), anything else is left alone. Returns the
    names removed.

    Examples:
        >>> _ = Path("out").mkdir(exist_ok=True)
        >>> _ = Path("out/.rows.parquet.ab12cd.tmp").write_bytes(b"half")
        >>> remove_litter(Path("out"))
        ['.rows.parquet.ab12cd.tmp']
    """
    folder = Path(folder)
    if folder.is_symlink() or not folder.is_dir():
        return []
    removed = []
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if not (entry.name.startswith(".") and entry.name.endswith(".tmp")):
            continue
        if entry.is_symlink() or entry.is_file(follow_symlinks=False):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry.path)
            removed.append(entry.name)
    return removed


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
    if not tables:
        raise ValueError("write_tables needs at least one table")
    files = {}
    for name, df in tables.items():
        try:
            check_name(name)
        except CorruptResult as e:
            raise ValueError(f"table name {name!r} cannot be a file name: {e}") from None
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
    """The stored provenance, None if there is none; CorruptResult if it does not parse, is not
    a regular file, or is not a whole record (`provenance_problem`: a field missing or
    malformed, a table without its checksum).

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
    try:
        data = read_regular_file(path, limit=64 * 2**20)
    except FileNotFoundError:
        return None
    try:
        prov = json.loads(data.decode())
    except ValueError as e:
        raise CorruptResult(f"{path} does not load: {e}") from e
    problem = provenance_problem(prov)
    if problem is not None:
        raise CorruptResult(f"{path} is not a provenance record: {problem}")
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
        path = folder / f"{check_name(name)}.parquet"
        try:
            data = read_regular_file(path)
        except FileNotFoundError as e:
            raise CorruptResult(f"{path} is missing: {e}") from e
        expected = prov["files"][path.name]  # read_provenance checked every table has one
        if _sha256(data) != expected:
            raise CorruptResult(f"{path} does not match its checksum in provenance.json")
        try:
            tables[name] = pd.read_parquet(io.BytesIO(data))
        except Exception as e:  # pyarrow raises several types for a damaged file
            raise CorruptResult(f"{path} does not load: {e}") from e
    return tables, prov
