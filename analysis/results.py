"""Result store: tables as parquet with a JSON provenance sidecar, written atomically.

A study's results live in one folder: one `<table>.parquet` per DataFrame and `provenance.json`
(study, config and its hash, package versions, x64 flag, platform and device, git commit and
dirtiness, start and end time). Every file is written to a temporary name and renamed into
place, so a crash never leaves a half-written file that could later be read as whole.

Example:
    >>> from analysis import results
    >>> prov = results.provenance("demo", {"steps": [8, 16]})
    >>> sorted(prov)[:3]
    ['config', 'config_hash', 'device']
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import jax
import pandas as pd

__all__ = ["provenance", "config_hash", "write_tables", "read_tables", "atomic_write_bytes"]

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


def _jsonable(config) -> object:
    if dataclasses.is_dataclass(config):
        config = dataclasses.asdict(config)
    return json.loads(json.dumps(config, default=repr, sort_keys=True))


def config_hash(config) -> str:
    """SHA-256 (first 16 hex digits) of the config's canonical JSON."""
    text = json.dumps(_jsonable(config), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).resolve().parent,
        )
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def provenance(study: str, config, *, started: datetime | None = None) -> dict:
    """Everything needed to say where a result came from."""
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
        "platform": platform.platform(),
        "device": str(jax.devices()[0]),
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": None if status is None else bool(status),
        "started": (started or datetime.now(UTC)).isoformat(timespec="seconds"),
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` via a temporary file in the same folder and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_tables(folder: Path, tables: dict[str, pd.DataFrame], prov: dict) -> None:
    """Store each table as parquet and the provenance as JSON, atomically."""
    folder = Path(folder)
    for name, df in tables.items():
        df = df.copy()
        df.attrs = {}
        atomic_write_bytes(folder / f"{name}.parquet", df.to_parquet(index=False))
    text = json.dumps({**prov, "tables": sorted(tables)}, indent=2, sort_keys=True)
    atomic_write_bytes(folder / "provenance.json", text.encode())


def read_tables(folder: Path) -> tuple[dict[str, pd.DataFrame], dict]:
    """Load the tables and provenance written by `write_tables`."""
    folder = Path(folder)
    prov = json.loads((folder / "provenance.json").read_text())
    tables = {name: pd.read_parquet(folder / f"{name}.parquet") for name in prov["tables"]}
    return tables, prov
