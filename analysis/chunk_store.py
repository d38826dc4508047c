"""Chunk store: finished sweep chunks on disk, so a killed sweep resumes where it stopped.

While a store is active (`with recording(store):`), `analysis.sweep` saves each finished vmapped
chunk (one `.npz` with its key, inputs and a SHA-256 of its entries) and, on a rerun, loads it
instead of solving again, so a killed run resumes from its finished chunks and ends with the same
table. Files are written and read with the `analysis.run_store` primitives (atomic rename,
regular files only).

Examples:
    >>> import numpy as np
    >>> from pathlib import Path
    >>> from analysis import chunk_store
    >>> store = chunk_store.ChunkStore(Path("chunks"))
    >>> key = store.key("demo", np.arange(2.0))
    >>> store.save(key, {"y": np.ones(2)})
    >>> store.load(key)["y"]
    array([1., 1.])
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import io
import os
import re
import stat
import sys
from pathlib import Path

import numpy as np

from .run_store import CorruptResult, atomic_write_bytes, read_regular_file

__all__ = ["ChunkStore", "remove_chunk_stores", "recording", "active_store"]


_CHUNK_FILE = re.compile(r"[0-9a-f]{32}\.npz")
_CHUNK_TEMP = re.compile(r"\.[0-9a-f]{32}\.npz\..*\.tmp")  # atomic_write_bytes's temporary name
_RESERVED = "__"  # prefix of a chunk file's own entries (key, inputs, checksum)
MAX_CHUNK_BYTES = 2**31  # a chunk file larger than this is discarded, not read into memory


def _chunk_checksum(entries: dict[str, np.ndarray]) -> str:
    """SHA-256 over every entry of a chunk file (name, dtype, shape, bytes), in name order."""
    h = hashlib.sha256()
    for name in sorted(entries):
        a = np.ascontiguousarray(entries[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def remove_chunk_stores(
    root: Path, *, keep: str | None = None, on_event=None, only: str | None = None
) -> list[str]:
    """Delete the chunk stores in `root` (a study's `chunks` folder) except the one named `keep`.

    Made for the study runner: before a run, `remove_chunk_stores(folder / "chunks",
    keep=key)` drops stores made from other inputs; after the tables are written (or when stored
    results are found current, which also clears what a kill between the two left behind),
    `remove_chunk_stores(folder / "chunks")` drops them all and then `root` itself if empty.

    Only what a `ChunkStore` writes is deleted, and never through a symbolic link:

    - If `root` is a symlink (chunks on a scratch disk, or a results folder received from
      elsewhere), nothing is deleted; the stores there can still be used by a `ChunkStore`.
    - A store is a real folder directly in `root` holding only chunk files (`<32 hex>.npz`) and
      their temporary files, each a regular file; those files are unlinked by name (relative
      to the open folder, which was opened without following links), then the folder.
    - Anything else in `root` (a symlink, a plain file, a folder with other content) is left
      untouched.

    Everything left is reported through `on_event` (default: print to stderr).

    Args:
        root: the folder holding one chunk store per input key (e.g. `results/NAME/chunks`).
        keep: the name of a store to keep (the current run's), or None.
        only: the name of the one store to delete (`ChunkStore.clear`), or None for all.
        on_event: called with a message for each thing that is left in place.

    Returns:
        The names of the stores deleted.

    Examples:
        >>> store = ChunkStore(Path("chunks/a1"))
        >>> store.save(store.key("demo", np.arange(2.0)), {"y": np.ones(2)})
        >>> _ = Path("chunks/notes").mkdir(); _ = Path("chunks/notes/x.txt").write_text("mine")
        >>> remove_chunk_stores(Path("chunks"), on_event=print)
        chunks/notes is not a chunk store (it holds x.txt); left in place
        ['a1']
        >>> sorted(p.name for p in Path("chunks").iterdir())
        ['notes']
    """
    root = Path(root)
    say = on_event or (lambda message: print(message, file=sys.stderr))
    removed: list[str] = []
    if not os.path.lexists(root):
        return removed
    if os.path.islink(root):
        say(
            f"{root} is a symbolic link (to {os.readlink(root)}); chunk stores are never deleted "
            "through a link, so those there are left in place (remove stale ones yourself)"
        )
        return removed
    dir_flags = os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_NOFOLLOW", 0)
    try:
        root_fd = os.open(root, dir_flags)
    except OSError as e:
        say(f"{root} is not a folder that can be opened ({e.strerror}); nothing deleted in it")
        return removed
    try:
        for name in sorted(os.listdir(root_fd)):
            if name == keep or (only is not None and name != only):
                continue
            where = root / name
            st = os.stat(name, dir_fd=root_fd, follow_symlinks=False)
            if not stat.S_ISDIR(st.st_mode):
                what = "a symbolic link" if stat.S_ISLNK(st.st_mode) else "not a folder"
                say(f"{where} is {what}, not a chunk store; left in place")
                continue
            try:
                store_fd = os.open(name, dir_flags, dir_fd=root_fd)
            except OSError as e:  # replaced by a link since the stat: not followed
                say(f"{where} cannot be opened as a folder ({e.strerror}); left in place")
                continue
            try:
                entries = sorted(os.listdir(store_fd))
                foreign = [
                    e
                    for e in entries
                    if not (_CHUNK_FILE.fullmatch(e) or _CHUNK_TEMP.fullmatch(e))
                    or not stat.S_ISREG(os.stat(e, dir_fd=store_fd, follow_symlinks=False).st_mode)
                ]
                if foreign:
                    shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
                    say(f"{where} is not a chunk store (it holds {shown}); left in place")
                    continue
                for entry in entries:
                    os.unlink(entry, dir_fd=store_fd)
            finally:
                os.close(store_fd)
            os.rmdir(name, dir_fd=root_fd)
            removed.append(name)
        if keep is None and only is None and not os.listdir(root_fd):
            os.rmdir(root)
    finally:
        os.close(root_fd)
    return removed


class ChunkStore:
    """Finished sweep chunks on disk (one `.npz` per chunk), so an interrupted sweep resumes.

    `analysis.sweep` calls, for each vmapped chunk, `key(...)` with everything that determines the
    chunk's outputs (system identity, solver, controller, step bound, chunk inputs), then
    `load(key, inputs=..., check=...)`; on a miss it solves and calls `save`. Each chunk file
    records its key, the grid values it was solved for (the `inputs` given to `load`) and a
    SHA-256 of all its entries. A chunk file that is not a regular file, does not load, lacks
    the checksum or fails it, records another key or other inputs, or fails the caller's `check`
    (wrong length, a missing output) is discarded: reported through `on_event` (default: print
    to stderr), counted in `discarded`, solved again and overwritten by `save`. Nothing is ever
    deleted through a symbolic link: a damaged file is replaced by `save` (a rename), and a
    folder in a chunk's place is removed only when empty, else left (that chunk is then solved
    on every run, with a message). `begin`/`advance` forward sweep progress to `progress` (any
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
        self.discarded = 0
        self._inputs: dict[str, tuple[np.ndarray, ...]] = {}  # key -> inputs, load to save

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

    def load(self, key: str, *, inputs=None, check=None) -> dict[str, np.ndarray] | None:
        """The stored outputs of a chunk, or None when absent or discarded (see the class).

        Args:
            key: the chunk's key (from `key`).
            inputs: the chunk's input arrays; the stored chunk must record exactly these, and a
                later `save(key, ...)` records them.
            check: optional `check(outputs) -> problem text or None`, e.g. lengths and names.
        """
        if inputs is not None:
            self._inputs[key] = tuple(np.ascontiguousarray(np.asarray(a)) for a in inputs)
        path = self._path(key)
        if not os.path.lexists(path):
            return None
        problem, out = self._read(path, key)
        if problem is None and check is not None:
            problem = check(out)
        if problem is not None:
            self.discard(key, problem)
            return None
        self.loaded += 1
        return out

    def _read(self, path: Path, key: str) -> tuple[str | None, dict | None]:
        try:  # a regular file only: a folder, symlink, FIFO or device is refused, not read
            data = read_regular_file(path, limit=MAX_CHUNK_BYTES)
        except (CorruptResult, FileNotFoundError) as e:
            return str(e), None
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as npz:
                entries = {k: npz[k] for k in npz.files}
        except Exception as e:  # a damaged zip raises BadZipFile, ValueError, EOFError, ...
            return f"does not load ({type(e).__name__}: {e})", None
        stored = entries.pop(f"{_RESERVED}checksum", None)
        if stored is None:
            return "has no checksum (written by an older version)", None
        if str(stored) != _chunk_checksum(entries):
            return "does not match its checksum (damaged)", None
        if str(entries.get(f"{_RESERVED}key", "")) != key:
            return f"holds chunk {entries.get(f'{_RESERVED}key')!s:.32}, not this one", None
        expected = self._inputs.get(key)
        names = sorted(k for k in entries if k.startswith(f"{_RESERVED}input"))
        if expected is not None:
            got = [entries[n] for n in names]
            same = len(got) == len(expected) and all(
                a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
                for a, b in zip(got, expected, strict=False)
            )
            if not same:
                return "was solved for other grid values than this chunk's", None
        return None, {k: v for k, v in entries.items() if not k.startswith(_RESERVED)}

    def discard(self, key: str, why: str) -> None:
        """Report that the stored chunk `key` cannot be used (`why`); it is solved again."""
        self.discarded += 1
        self.on_event(f"chunk {self._path(key).name} {why}; discarding it and solving it again")

    def save(self, key: str, out: dict[str, np.ndarray]) -> None:
        """Store a finished chunk atomically, with its key, inputs and checksum."""
        path = self._path(key)
        if os.path.isdir(path) and not os.path.islink(path):
            try:
                path.rmdir()  # an empty folder in the chunk's place: nothing is lost
            except OSError:
                self.on_event(
                    f"{path} is a folder with contents in this chunk's place; it is left "
                    "untouched and the chunk is not stored (it is solved again on every run "
                    "until the folder is moved)"
                )
                return
        entries = {k: np.asarray(v) for k, v in out.items()}
        entries[f"{_RESERVED}key"] = np.asarray(key)
        for i, a in enumerate(self._inputs.pop(key, ())):
            entries[f"{_RESERVED}input{i:03d}"] = a
        entries[f"{_RESERVED}checksum"] = np.asarray(_chunk_checksum(entries))
        buf = io.BytesIO()
        np.savez(buf, **entries)
        atomic_write_bytes(path, buf.getvalue())
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
        """Delete this store's folder and its chunk files, never through a symbolic link.

        The folder goes with `remove_chunk_stores` rules: only when it is a real folder holding
        only chunk files; otherwise what is left is reported through `on_event`.
        """
        if os.path.islink(self.folder):
            self.on_event(f"{self.folder} is a symbolic link; its chunks are left in place")
            return
        remove_chunk_stores(self.folder.parent, on_event=self.on_event, only=self.folder.name)


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
