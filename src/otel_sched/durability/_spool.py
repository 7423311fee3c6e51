"""On-disk spool: batches that could not be exported wait here, on SQLite (WAL), to be replayed.

Pure, synchronous, single-owner object with an injected clock.  The pipeline puts a batch here
instead of dropping it (every endpoint failing, or the queue about to shed it) and takes batches
back when exports work again: :meth:`Spool.take` marks them in flight, :meth:`Spool.ack` deletes
them after a successful replay, :meth:`Spool.nack` returns them to pending (``attempts + 1``).

Delivery is at-least-once.  What survives what:

* ``put`` commits one transaction per batch (WAL, ``synchronous=NORMAL``).  A committed row
  survives ``kill -9`` of the process and is replayed by the next process that opens the
  directory.  A power loss may lose the last commits since the previous WAL checkpoint
  (``synchronous=NORMAL`` does not fsync each commit) but never corrupts the database.
* A row taken but not acked (crash between ``take`` and ``ack``, or ``close`` without ``ack``)
  goes back to pending when the directory is next opened, with ``attempts + 1`` so that a batch
  that keeps killing the process can be given up on: it is replayed again, so duplicates are
  possible, bounded by what was in flight.
* Every row carries a CRC-32 of its metadata and payload, checked by ``take``: a row that does
  not match (torn write, bit rot) is deleted and counted (``spool_corrupt``), never raised.  A
  database *file* SQLite cannot read ("file is not a database", "database disk image is
  malformed"), at open or later, is moved aside to ``spool.db.corrupt-<unix time>`` (0600, kept
  for inspection and not counted in ``max_bytes``; its WAL beside it as ``...-wal``), an error is
  logged and a fresh database is started (``db_reset``), so a bad file never makes a crash loop.

Bounds: ``max_bytes`` counts payload bytes of every stored row, in flight or not.  On disk add
SQLite's overhead: about 100 bytes of row, index and page slack per batch, the WAL (trimmed to
8 MiB after checkpoints) and freed pages: the file keeps its high-water mark (at most about
``max_bytes`` plus that overhead), its free pages are reused by later puts, and whenever ``ack``
or ``take`` finds the spool empty, 1 MiB of them is handed back to the file system.  Rows older
than ``max_age_s`` (by ``first_seen``) are deleted instead of replayed (``spool_expired``).

Files: ``<dir>/spool.db`` (plus ``-wal``, ``-shm``) and ``<dir>/spool.lock``; a ``signal_scope``
other than ``"default"`` uses ``spool-<scope>.db`` / ``spool-<scope>.lock``, so that, say, the
traces and logs processors of one process can share one configured directory.

Ownership: one live process per directory, enforced with ``flock`` on ``<dir>/spool.lock``
(which also records the owner's pid, named in :class:`SpoolLocked`).  Within the process the
object is single-owner: it may be created on one thread and used on another (the connection is
opened with ``check_same_thread=False`` for that hand-over), but its methods must never run
concurrently.  :meth:`Spool.pending` and :meth:`Spool.counts` read in-memory counters only.

Prefork servers (gunicorn, uWSGI, Celery prefork): an ``flock`` belongs to the open file
description, which a forked child shares with its parent, so a spool opened before ``fork`` is
"locked" by both processes and SQLite connections must never cross a fork.  The spool therefore
records the pid that opened it and refuses every use from another pid (``SpoolUnavailable``); in
a forked child the inherited lock descriptor is closed at fork (without unlocking the parent)
and the inherited connection is never touched.  Each worker opens its own
directory: ``worker_directory(base)`` (``<base>/<pid>``), or a directory setting containing
``{pid}`` (e.g. ``OTEL_PYTHON_SCHED_SPOOL_DIR=/var/spool/app/{pid}``), expanded by ``Spool``.
Pids change when workers are restarted, so a worker should call :meth:`Spool.adopt_orphans` on
``<base>`` after opening: it moves the rows of sibling directories no live process holds (dead
workers') into its own spool.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import struct
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from types import TracebackType

from ._spool_file import SpoolFile, SpoolUnavailable, _Connection, is_corruption

__all__ = ["Spool", "SpooledBatch"]

_logger = logging.getLogger(__name__)

_ADOPT_CHUNK = 8 * 1024 * 1024
_SHRINK_PAGES = 256
_META = struct.Struct("<qqdqq")

# payload is the last column so that reading metadata never touches its overflow pages.

_ROW = "SELECT signal, tenant, priority, cost, first_seen, attempts, items, size, checksum, payload"


@dataclass(frozen=True, slots=True)
class SpooledBatch:
    id: int
    signal: str  # "traces" | "logs"
    tenant: str  # the batch's tenant ("" when mixed)
    priority: int  # 0..2, highest first on replay
    cost: int  # payload bytes the scheduler charged
    first_seen: float  # wall-clock seconds of the oldest item
    attempts: int
    items: int  # number of items in the payload
    payload: bytes


def _safe_text(s: str) -> str:
    # A lone surrogate (possible in attribute values) cannot be stored as SQLite TEXT.
    if s.isascii():
        return s
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return s.encode("utf-8", "backslashreplace").decode("ascii")
    return s


def _checksum(
    signal: str, tenant: str, priority: int, cost: int, first_seen: float, items: int, payload: bytes
) -> int:
    # attempts is left out: nack updates it in place and a wrong count harms nothing.
    meta = _META.pack(priority, cost, first_seen, items, len(payload))
    meta += signal.encode() + b"\0" + tenant.encode()
    return zlib.crc32(payload, zlib.crc32(meta))


class Spool(SpoolFile):
    """A bounded store of batches awaiting replay, in one directory owned by one process."""

    def __enter__(self) -> Spool:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- transactions -------------------------------------------------------------------------

    def _snapshot(self) -> tuple[int, int, dict[str, int]]:
        return self._rows, self._bytes, dict(self._counts)

    def _rollback(self, conn: _Connection, saved: tuple[int, int, dict[str, int]]) -> None:
        with contextlib.suppress(sqlite3.Error):
            if conn.in_transaction:
                conn.execute("ROLLBACK")
        self._rows, self._bytes, self._counts = saved[0], saved[1], saved[2]

    def _expire(self, conn: _Connection, now: float) -> None:
        cutoff = now - self._max_age_s
        rows, items, size = conn.execute(
            "SELECT COUNT(*), COALESCE(SUM(items), 0), COALESCE(SUM(size), 0) FROM batches "
            "WHERE first_seen < ? AND in_flight = 0",
            (cutoff,),
        ).fetchone()
        if rows:
            conn.execute("DELETE FROM batches WHERE first_seen < ? AND in_flight = 0", (cutoff,))
            self._rows -= int(rows)
            self._bytes -= int(size)
            self._counts["spool_expired"] += int(items)

    # -- the API -------------------------------------------------------------------------------

    def put(
        self,
        signal: str,
        tenant: str,
        priority: int,
        cost: int,
        first_seen: float,
        items: int,
        payload: bytes,
        attempts: int = 0,
    ) -> int | None:
        """Stores one batch and returns its id, or None when it cannot fit (the caller owns it then).

        To make room, evicts pending rows of the new batch's priority or lower, lowest priority
        first and oldest first (``spool_full``, by items); never a higher-priority row.
        """
        return self._put(signal, tenant, priority, cost, first_seen, items, payload, attempts, retry=True)

    def _put(
        self,
        signal: str,
        tenant: str,
        priority: int,
        cost: int,
        first_seen: float,
        items: int,
        payload: bytes,
        attempts: int,
        *,
        retry: bool,
    ) -> int | None:
        conn = self._owned()
        size = len(payload)
        if size > self._max_bytes:
            return None
        signal, tenant = _safe_text(signal), _safe_text(tenant)
        checksum = _checksum(signal, tenant, priority, cost, first_seen, items, payload)
        saved = self._snapshot()
        try:
            conn.execute("BEGIN IMMEDIATE")
            if self._bytes + size > self._max_bytes:
                self._expire(conn, self._clock())
            need = self._bytes + size - self._max_bytes
            if need > 0:
                victims: list[tuple[int]] = []
                freed = lost_items = 0
                cur = conn.execute(
                    "SELECT id, size, items FROM batches WHERE in_flight = 0 AND priority <= ? "
                    "ORDER BY priority, first_seen, id",
                    (priority,),
                )
                for vid, vsize, vitems in cur:
                    victims.append((vid,))
                    freed += vsize
                    lost_items += vitems
                    if freed >= need:
                        break
                cur.close()
                if freed < need:
                    conn.execute("COMMIT")  # keeps any expiry
                    return None
                conn.executemany("DELETE FROM batches WHERE id = ?", victims)
                self._rows -= len(victims)
                self._bytes -= freed
                self._counts["spool_full"] += lost_items
            cur = conn.execute(
                "INSERT INTO batches (signal, tenant, priority, cost, first_seen, attempts, items, size, "
                "checksum, payload) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (signal, tenant, priority, cost, first_seen, attempts, items, size, checksum, payload),
            )
            conn.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            self._rollback(conn, saved)
            if not (retry and is_corruption(exc)):
                raise SpoolUnavailable(f"spool {self.directory!r}: cannot store a batch: {exc}") from exc
            self._reset(exc)
            return self._put(
                signal, tenant, priority, cost, first_seen, items, payload, attempts, retry=False
            )
        row_id = int(cur.lastrowid or 0)
        self._max_id = max(self._max_id, row_id)
        self._rows += 1
        self._bytes += size
        self._counts["stored"] += 1
        return row_id

    def take(self, limit_bytes: int, now: float | None = None) -> list[SpooledBatch]:
        """The next batches to replay, marked in flight: highest priority first, oldest first
        within a priority, up to ``limit_bytes`` of payload (at least one batch if any is pending).
        """
        conn = self._owned()
        now = self._clock() if now is None else now
        saved = self._snapshot()
        out: list[SpooledBatch] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            self._expire(conn, now)
            while not out and self._rows > len(self._in_flight):
                chosen: list[int] = []
                total = 0
                cur = conn.execute(
                    "SELECT id, size FROM batches WHERE in_flight = 0 ORDER BY priority DESC, first_seen, id"
                )
                for bid, bsize in cur:
                    if chosen and total + bsize > limit_bytes:
                        break
                    chosen.append(bid)
                    total += bsize
                    if total >= limit_bytes:
                        break
                cur.close()
                if not chosen:
                    break
                bad: list[tuple[int]] = []
                for bid in chosen:
                    batch = self._read(conn, bid)
                    if batch is None:
                        bad.append((bid,))
                    else:
                        out.append(batch)
                if bad:
                    conn.executemany("DELETE FROM batches WHERE id = ?", bad)
                    self._counts["spool_corrupt"] += len(bad)
                    self._reload_totals()  # a corrupt row's size column cannot be trusted
            conn.executemany("UPDATE batches SET in_flight = 1 WHERE id = ?", [(b.id,) for b in out])
            conn.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            self._rollback(conn, saved)
            if not is_corruption(exc):
                raise SpoolUnavailable(f"spool {self.directory!r}: cannot read batches: {exc}") from exc
            self._reset(exc)
            return []
        if not out:
            self._shrink()
        for b in out:
            size = len(b.payload)
            self._in_flight[b.id] = size
            self._in_flight_bytes += size
        return out

    @staticmethod
    def _read(conn: _Connection, bid: int) -> SpooledBatch | None:
        row = conn.execute(f"{_ROW} FROM batches WHERE id = ?", (bid,)).fetchone()
        try:
            signal, tenant, priority, cost, first_seen, attempts, items, size, checksum, payload = row
            payload = bytes(payload)
            if len(payload) != size or checksum != _checksum(
                signal, tenant, priority, cost, first_seen, items, payload
            ):
                return None
            return SpooledBatch(bid, signal, tenant, priority, cost, first_seen, attempts, items, payload)
        except (TypeError, ValueError, AttributeError, struct.error):
            return None  # a column of the wrong type: damaged beyond the checksum's reach

    def _finish(self, ids: Iterable[int], sql: str, what: str) -> list[int]:
        conn = self._owned()
        done = [i for i in dict.fromkeys(ids) if i in self._in_flight]
        if not done:
            return done
        saved = self._snapshot()
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(sql, [(i,) for i in done])
            conn.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            self._rollback(conn, saved)
            if not is_corruption(exc):
                raise SpoolUnavailable(f"spool {self.directory!r}: cannot {what}: {exc}") from exc
            self._reset(exc)
            return []
        for i in done:
            self._in_flight_bytes -= self._in_flight.pop(i)
        return done

    def ack(self, ids: Iterable[int]) -> None:
        """Replayed successfully: deletes the batches.  Ids not in flight are ignored."""
        sizes = {i: self._in_flight.get(i, 0) for i in ids}
        done = self._finish(sizes, "DELETE FROM batches WHERE id = ?", "delete replayed batches")
        if not done:
            return
        self._rows -= len(done)
        self._bytes -= sum(sizes[i] for i in done)
        self._counts["replayed"] += len(done)
        self._shrink()

    def _shrink(self) -> None:
        # An empty spool hands its freed pages back to the file system, a bounded step at a time
        # (a whole 256 MiB file at once would stall the caller for about a second).
        if self._rows == 0 and self._conn is not None:
            with contextlib.suppress(sqlite3.Error):
                # executescript steps the pragma to completion; execute would free a single page.
                self._conn.executescript(f"PRAGMA incremental_vacuum({_SHRINK_PAGES});")

    def nack(self, ids: Iterable[int]) -> None:
        """Replay failed: the batches are pending again with ``attempts + 1``."""
        self._finish(
            ids, "UPDATE batches SET in_flight = 0, attempts = attempts + 1 WHERE id = ?", "return batches"
        )

    def pending(self) -> tuple[int, int]:
        """(rows, payload bytes) waiting to be taken (not in flight)."""
        return self._rows - len(self._in_flight), self._bytes - self._in_flight_bytes

    def counts(self) -> dict[str, int]:
        """Items evicted (``spool_full``) and expired (``spool_expired``), corrupt rows dropped
        (``spool_corrupt``), batches ``stored`` and ``replayed``, database files reset (``db_reset``).
        """
        return dict(self._counts)

    def adopt_orphans(self, base: str | os.PathLike[str]) -> int:
        """Moves into this spool the rows of ``base``'s subdirectories that no live process holds.

        For per-worker directories (``<base>/<pid>``): a restarted worker has a new pid, so the
        rows of the worker it replaced would otherwise never be replayed.  Directories whose lock
        is held (live workers) or that hold no spool of this scope are skipped; an adopted
        directory's files are removed.  Batches that do not fit are counted ``spool_full``.
        Returns the number of batches adopted.
        """
        self._owned()
        root = os.path.abspath(os.fspath(base))
        try:
            entries = [e.path for e in os.scandir(root) if e.is_dir(follow_symlinks=False)]
        except OSError:
            return 0
        adopted = 0
        mine = os.path.realpath(self.directory)
        for path in sorted(entries):
            db_file = os.path.join(path, self._db_name)
            if os.path.realpath(path) == mine or not os.path.isfile(db_file):
                continue
            try:
                other = Spool(
                    path,
                    signal_scope=self.signal_scope,
                    max_bytes=self._max_bytes,
                    max_age_s=self._max_age_s,
                    clock=self._clock,
                )
            except SpoolUnavailable:
                continue  # a live owner, or unusable: leave it alone
            try:
                while batches := other.take(_ADOPT_CHUNK):
                    for b in batches:
                        meta = (b.signal, b.tenant, b.priority, b.cost, b.first_seen, b.items)
                        stored = self.put(*meta, b.payload, b.attempts)
                        if stored is None:
                            self._counts["spool_full"] += b.items
                        else:
                            adopted += 1
                    other.ack(b.id for b in batches)
                for key in ("spool_expired", "spool_corrupt"):
                    self._counts[key] += other.counts()[key]
            finally:
                other.close()
            for name in (other._db_name, other._db_name + "-wal", other._db_name + "-shm"):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(path, name))
            with contextlib.suppress(OSError):
                os.unlink(other._lock_path)
            with contextlib.suppress(OSError):
                os.rmdir(path)
        return adopted
