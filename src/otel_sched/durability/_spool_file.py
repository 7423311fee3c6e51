"""The spool's file: its directory, lock and SQLite database, owned by one process.

:class:`SpoolFile` opens ``<dir>/spool.db`` (WAL) under an ``flock`` on ``<dir>/spool.lock``,
moves an unreadable database aside and starts a fresh one, refuses use from another pid after
``fork`` and closes the inherited lock descriptor in a forked child.  It keeps the totals the
spool is bounded by (rows, bytes) and its counters; :class:`~otel_sched.durability._spool.Spool`
(its subclass) is what the pipeline uses: put, take, ack, nack.  See that module for what
survives what.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import sqlite3
import stat
import sys
import time
import weakref
from collections.abc import Callable

try:
    import fcntl
except ImportError:  # Windows: the package imports, the spool reports itself unavailable
    fcntl = None  # type: ignore[assignment]

__all__ = ["SpoolFile", "SpoolLocked", "SpoolUnavailable", "is_corruption", "worker_directory"]

_logger = logging.getLogger(__name__)

_SCHEMA_VERSION = 1
_WAL_LIMIT = 8 * 1024 * 1024
_SCOPE_RE = re.compile(r"[A-Za-z0-9_.-]+")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS batches (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    signal TEXT NOT NULL,
    tenant TEXT NOT NULL,
    priority INTEGER NOT NULL,
    cost INTEGER NOT NULL,
    first_seen REAL NOT NULL,
    attempts INTEGER NOT NULL,
    items INTEGER NOT NULL,
    size INTEGER NOT NULL,
    checksum INTEGER NOT NULL,
    in_flight INTEGER NOT NULL DEFAULT 0,
    payload BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS batches_replay ON batches (in_flight, priority DESC, first_seen, id, size);
CREATE INDEX IF NOT EXISTS batches_evict ON batches (in_flight, priority, first_seen, id, size, items);
CREATE INDEX IF NOT EXISTS batches_age ON batches (first_seen);
"""


class SpoolUnavailable(Exception):
    """The spool directory or database cannot be used; the pipeline goes on in memory."""


class SpoolLocked(SpoolUnavailable):
    """Another live process (or another open ``Spool`` in this one) owns the directory."""


def worker_directory(base: str | os.PathLike[str]) -> str:
    """``<base>/<pid>``: one spool directory per worker process of a prefork server."""
    return os.path.join(os.fspath(base), str(os.getpid()))


class _Connection(sqlite3.Connection):
    """Plain connection; a Python subclass so that tests can patch ``execute`` on the instance."""


def is_corruption(exc: sqlite3.DatabaseError) -> bool:
    name = getattr(exc, "sqlite_errorname", "")
    if name:
        return str(name).startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB"))
    if isinstance(exc, sqlite3.OperationalError):
        return False
    msg = str(exc).lower()
    return "malformed" in msg or "not a database" in msg


class SpoolFile:
    """One spool database in one directory, locked by this process; the base of ``Spool``."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        signal_scope: str = "default",
        max_bytes: int = 256 * 1024 * 1024,
        max_age_s: float = 24 * 3600,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not _SCOPE_RE.fullmatch(signal_scope):
            raise ValueError(f"signal_scope must match [A-Za-z0-9_.-]+, got {signal_scope!r}")
        if max_bytes <= 0:
            raise ValueError(f"max_bytes must be positive, got {max_bytes}")
        path = os.fspath(directory).replace("{pid}", str(os.getpid()))
        self.directory = os.path.abspath(path)
        # The default scope keeps the plain names; other scopes (e.g. traces and logs of one
        # process sharing a directory) get their own database and lock.
        stem = "spool" if signal_scope == "default" else f"spool-{signal_scope}"
        self.signal_scope = signal_scope
        self._db_name = f"{stem}.db"
        self._db_path = os.path.join(self.directory, self._db_name)
        self._lock_path = os.path.join(self.directory, f"{stem}.lock")
        self._max_bytes = max_bytes
        self._max_age_s = max_age_s
        self._clock = clock
        self._pid = os.getpid()
        self._closed = False
        self._lock_fd = -1
        self._conn: _Connection | None = None
        self._rows = 0
        self._bytes = 0
        self._max_id = 0
        self._in_flight: dict[int, int] = {}  # id -> payload size
        self._in_flight_bytes = 0
        self._counts = {
            "spool_full": 0,
            "spool_expired": 0,
            "spool_corrupt": 0,
            "stored": 0,
            "replayed": 0,
            "db_reset": 0,
        }
        try:
            self._prepare_directory()
            self._acquire_lock()
            self._open_db()
        except BaseException:
            self._release(unlock=True)
            raise
        _LIVE.add(self)

    # -- opening ---------------------------------------------------------------------------

    def _unavailable(self, exc: BaseException) -> SpoolUnavailable:
        return SpoolUnavailable(f"spool directory {self.directory!r} cannot be used: {exc}")

    def _prepare_directory(self) -> None:
        try:
            try:
                st = os.stat(self.directory)
            except FileNotFoundError:
                os.makedirs(self.directory, mode=0o700, exist_ok=True)
                os.chmod(self.directory, 0o700)  # mkdir's mode is filtered by the umask
            else:
                if not stat.S_ISDIR(st.st_mode):
                    raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), self.directory)
            if not os.access(self.directory, os.W_OK | os.X_OK):
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), self.directory)
        except OSError as exc:
            raise self._unavailable(exc) from exc

    def _acquire_lock(self) -> None:
        if fcntl is None:
            raise SpoolUnavailable(
                f"spool directory {self.directory!r} cannot be used: the spool needs POSIX file locking "
                f"(fcntl), which this platform ({sys.platform}) does not have"
            )
        try:
            fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        except OSError as exc:
            raise self._unavailable(exc) from exc
        self._lock_fd = fd
        try:
            os.fchmod(fd, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            holder = ""
            with contextlib.suppress(OSError, ValueError):
                holder = f" (held by pid {int(os.pread(fd, 32, 0).decode().strip())})"
            raise SpoolLocked(
                f"spool directory {self.directory!r} is in use by another process{holder}; "
                "each process needs its own directory (see worker_directory / {pid})"
            ) from exc
        except OSError as exc:
            raise self._unavailable(exc) from exc
        with contextlib.suppress(OSError):  # the pid is informational only
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{self._pid}\n".encode(), 0)

    def _open_db(self) -> None:
        try:
            self._connect()
        except sqlite3.DatabaseError as exc:
            self._close_conn()
            if not is_corruption(exc):
                raise self._unavailable(exc) from exc
            self._move_aside(exc)
            try:
                self._connect()
            except sqlite3.DatabaseError as exc2:
                self._close_conn()
                raise self._unavailable(exc2) from exc2
        except OSError as exc:
            self._close_conn()
            raise self._unavailable(exc) from exc

    def _connect(self) -> None:
        fd = os.open(self._db_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        try:
            os.fchmod(fd, 0o600)  # SQLite gives the -wal and -shm files the database's mode
        finally:
            os.close(fd)
        conn = sqlite3.connect(
            self._db_path, isolation_level=None, check_same_thread=False, factory=_Connection
        )
        self._conn = conn
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version not in (0, _SCHEMA_VERSION):
            raise SpoolUnavailable(
                f"spool database {self._db_path!r} has schema version {version}, "
                f"this otel-sched knows {_SCHEMA_VERSION}"
            )
        conn.execute("PRAGMA auto_vacuum=INCREMENTAL")  # effective only before the first table
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise SpoolUnavailable(f"spool database {self._db_path!r}: WAL mode unavailable (got {mode})")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute(f"PRAGMA journal_size_limit={_WAL_LIMIT}")
        conn.executescript(_SCHEMA)
        conn.execute(f"PRAGMA user_version={_SCHEMA_VERSION}")
        # Left in flight by a previous owner that died before ack: replay again (at-least-once).
        conn.execute("UPDATE batches SET in_flight = 0, attempts = attempts + 1 WHERE in_flight != 0")
        self._reload_totals()
        max_id = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM sqlite_sequence").fetchone()[0]
        self._max_id = max(self._max_id, int(max_id))
        for suffix in ("-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.chmod(self._db_path + suffix, 0o600)

    def _reload_totals(self) -> None:
        assert self._conn is not None
        rows, size = self._conn.execute("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM batches").fetchone()
        self._rows, self._bytes = int(rows), int(size)

    def _move_aside(self, exc: sqlite3.DatabaseError) -> None:
        stamp = int(self._clock())
        target = f"{self._db_path}.corrupt-{stamp}"
        n = 0
        while os.path.lexists(target):
            n += 1
            target = f"{self._db_path}.corrupt-{stamp}.{n}"
        try:
            os.replace(self._db_path, target)
            os.chmod(target, 0o600)
            if os.path.lexists(self._db_path + "-wal"):
                os.replace(self._db_path + "-wal", target + "-wal")
                os.chmod(target + "-wal", 0o600)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._db_path + "-shm")
        except OSError as move_exc:
            raise self._unavailable(move_exc) from exc
        self._counts["db_reset"] += 1
        _logger.error(
            "otel-sched spool database %s is unreadable (%s); moved it aside to %s and started a fresh one",
            self._db_path,
            exc,
            target,
        )

    def _reset(self, exc: sqlite3.DatabaseError) -> None:
        """Replaces a database found corrupt while in use; its pending rows are counted lost."""
        self._counts["spool_corrupt"] += self._rows - len(self._in_flight)
        self._close_conn()
        self._in_flight.clear()
        self._in_flight_bytes = 0
        self._rows = self._bytes = 0
        self._move_aside(exc)
        try:
            self._connect()
            assert self._conn is not None
            # Ids keep growing so that an ack of a batch taken before the reset never hits a new row.
            self._conn.execute(
                "INSERT INTO sqlite_sequence (name, seq) VALUES ('batches', ?)", (self._max_id,)
            )
        except sqlite3.DatabaseError as exc2:
            self._close_conn()
            raise self._unavailable(exc2) from exc2

    # -- ownership ----------------------------------------------------------------------------

    def _owned(self) -> _Connection:
        if os.getpid() != self._pid:
            raise SpoolUnavailable(
                f"spool {self.directory!r} was opened by pid {self._pid} and cannot be used in pid "
                f"{os.getpid()} after fork; open a per-process directory (worker_directory or {{pid}})"
            )
        if self._closed or self._conn is None:
            raise SpoolUnavailable(f"spool {self.directory!r} is closed")
        return self._conn

    def _forget_after_fork(self) -> None:
        # In a forked child: drop the inherited lock descriptor (without LOCK_UN, which would
        # unlock the parent too) so that it cannot keep the directory locked after the parent
        # dies, and never touch the inherited connection.
        self._close_conn()
        fd, self._lock_fd = self._lock_fd, -1
        if fd >= 0:
            with contextlib.suppress(OSError):
                os.close(fd)

    def _close_conn(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and os.getpid() == self._pid:
            with contextlib.suppress(sqlite3.Error):
                conn.close()
        elif conn is not None:
            # A forked child must not close the parent's connection: SQLite could checkpoint or
            # delete the parent's WAL.  Keep it referenced so its finalizer never runs.
            _ABANDONED.append(conn)

    def _release(self, *, unlock: bool) -> None:
        self._close_conn()
        fd, self._lock_fd = self._lock_fd, -1
        if fd >= 0:
            # LOCK_UN would release the lock for every process sharing the file description.
            if unlock and os.getpid() == self._pid:
                with contextlib.suppress(OSError):
                    fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def close(self) -> None:
        """Closes the database and releases the lock; idempotent.  In-flight rows stay for replay."""
        if self._closed:
            return
        self._closed = True
        self._release(unlock=True)
        _LIVE.discard(self)


# Connections inherited across fork: kept referenced so that the child never finalizes them.
_ABANDONED: list[sqlite3.Connection] = []
_LIVE: weakref.WeakSet[SpoolFile] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for spool in list(_LIVE):
        spool._forget_after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)
