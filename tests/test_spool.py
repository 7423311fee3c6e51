"""On-disk spool: ordering, bounds, expiry, integrity, locking, permissions, fork and failure modes."""

from __future__ import annotations

import logging
import os
import re
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from otel_sched.durability._spool import Spool, SpooledBatch
from otel_sched.durability._spool_file import SpoolLocked, SpoolUnavailable, worker_directory

NOW = 1_700_000_000.0


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def spool(tmp_path: Path, clock: Clock) -> Iterator[Spool]:
    s = Spool(tmp_path / "spool", clock=clock)
    yield s
    s.close()


def put(s: Spool, priority: int = 1, first_seen: float = NOW, size: int = 100, items: int = 1) -> int:
    row = s.put("traces", "acme", priority, size, first_seen, items, bytes([priority]) * size)
    assert row is not None
    return row


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_round_trip_keeps_every_field(spool: Spool) -> None:
    payload = os.urandom(5000)
    row = spool.put("logs", "tenant-é", 2, 4321, NOW - 1.25, 17, payload, attempts=3)
    assert row is not None
    assert spool.pending() == (1, 5000)
    (batch,) = spool.take(10**6)
    assert batch == SpooledBatch(row, "logs", "tenant-é", 2, 4321, NOW - 1.25, 3, 17, payload)
    assert spool.pending() == (0, 0)
    assert spool.counts()["stored"] == 1


def test_replay_order_is_priority_then_oldest(spool: Spool) -> None:
    a = put(spool, priority=1, first_seen=NOW - 5)
    b = put(spool, priority=2, first_seen=NOW - 1)
    c = put(spool, priority=0, first_seen=NOW - 9)
    d = put(spool, priority=2, first_seen=NOW - 3)
    e = put(spool, priority=1, first_seen=NOW - 7)
    assert [x.id for x in spool.take(10**6)] == [d, b, e, a, c]


def test_take_respects_limit_bytes_but_returns_at_least_one(spool: Spool) -> None:
    ids = [put(spool, first_seen=NOW - 10 + i, size=100) for i in range(5)]
    assert [x.id for x in spool.take(250)] == ids[:2]
    assert [x.id for x in spool.take(1)] == ids[2:3]  # larger than the limit, but never nothing
    assert [x.id for x in spool.take(200)] == ids[3:5]
    assert spool.take(10**6) == []  # in-flight rows are not returned again


def test_ack_deletes_and_nack_returns_to_pending_with_one_more_attempt(spool: Spool) -> None:
    a, b = put(spool, first_seen=NOW - 2), put(spool, first_seen=NOW - 1)
    taken = spool.take(10**6)
    assert spool.pending() == (0, 0)
    spool.ack([a])
    spool.nack([b])
    spool.ack([a, 12345])  # already acked / unknown ids are ignored
    assert spool.pending() == (1, 100)
    (again,) = spool.take(10**6)
    assert again.id == b and again.attempts == taken[1].attempts + 1
    spool.ack([b])
    assert spool.pending() == (0, 0)
    assert spool.counts()["replayed"] == 2


def test_full_spool_evicts_lowest_priority_oldest_first_never_higher(tmp_path: Path, clock: Clock) -> None:
    with Spool(tmp_path, max_bytes=1000, clock=clock) as s:
        put(s, priority=0, first_seen=NOW - 1, size=200, items=3)
        put(s, priority=0, first_seen=NOW - 2, size=200, items=5)
        normal = put(s, priority=1, first_seen=NOW - 3, size=200, items=7)
        high = put(s, priority=2, first_seen=NOW - 4, size=300, items=11)
        assert s.pending() == (4, 900)
        # 400 more bytes: both LOW rows go (their items counted), nothing of higher priority
        fresh = put(s, priority=1, first_seen=NOW, size=400)
        assert s.counts()["spool_full"] == 5 + 3
        assert {b.id for b in s.take(10**6)} == {normal, high, fresh}
        s.nack([normal, high, fresh])  # in-flight rows are never evicted; pending ones may be

        # A LOW batch cannot evict NORMAL or HIGH rows: refused, nothing evicted.
        assert s.put("traces", "acme", 0, 500, NOW, 1, b"x" * 500) is None
        assert s.pending() == (3, 900)
        assert s.counts()["spool_full"] == 8

        # A NORMAL batch evicts the oldest row of its own priority, never the HIGH one.
        newest = put(s, priority=1, first_seen=NOW, size=200, items=2)
        assert s.counts()["spool_full"] == 8 + 7
        assert {b.id for b in s.take(10**6)} == {high, fresh, newest}


def test_eviction_stops_as_soon_as_there_is_room(tmp_path: Path, clock: Clock) -> None:
    with Spool(tmp_path, max_bytes=300, clock=clock) as s:
        newer = put(s, priority=0, first_seen=NOW - 1, size=100, items=1)
        put(s, priority=0, first_seen=NOW - 2, size=100, items=2)
        new = put(s, priority=0, first_seen=NOW, size=200)
        assert s.counts()["spool_full"] == 2  # only the oldest had to go
        assert [b.id for b in s.take(10**6)] == [newer, new]


def test_a_batch_larger_than_the_whole_spool_is_refused(tmp_path: Path) -> None:
    with Spool(tmp_path / "small", max_bytes=100) as s:
        assert s.put("traces", "", 2, 101, NOW, 1, b"x" * 101) is None
        assert s.pending() == (0, 0)
        assert s.counts()["stored"] == 0


def test_rows_past_max_age_expire_by_the_injected_clock(tmp_path: Path, clock: Clock) -> None:
    with Spool(tmp_path, max_age_s=60, clock=clock) as s:
        old = put(s, first_seen=NOW - 30, items=4)
        young = put(s, first_seen=NOW - 10, items=9)
        clock.now = NOW + 40  # old is 70 s old, young 50 s
        assert [b.id for b in s.take(10**6)] == [young]
        assert s.counts()["spool_expired"] == 4
        assert old not in [b.id for b in s.take(10**6)]
        s.nack([young])
        assert s.take(10**6, now=NOW + 100) == []  # explicit now wins over the clock
        assert s.counts()["spool_expired"] == 13
        assert s.pending() == (0, 0)


def test_full_spool_expires_old_rows_before_evicting(tmp_path: Path, clock: Clock) -> None:
    with Spool(tmp_path, max_bytes=200, max_age_s=60, clock=clock) as s:
        put(s, priority=2, first_seen=NOW - 100, size=100, items=3)  # expired, though HIGH
        fresh_low = put(s, priority=0, first_seen=NOW, size=100)
        put(s, priority=0, first_seen=NOW, size=100)
        assert s.counts()["spool_expired"] == 3 and s.counts()["spool_full"] == 0
        assert fresh_low in [b.id for b in s.take(10**6)]


def test_a_corrupt_row_is_skipped_deleted_and_counted(tmp_path: Path, clock: Clock) -> None:
    with Spool(tmp_path, clock=clock) as s:
        first = put(s, priority=2)
        second = put(s, priority=1)
        third = put(s, priority=0)
    db = sqlite3.connect(tmp_path / "spool.db")
    with db:
        db.execute("UPDATE batches SET payload = ? WHERE id = ?", (b"\xff" * 100, first))
        db.execute("UPDATE batches SET tenant = 'evil' WHERE id = ?", (third,))
    db.close()
    with Spool(tmp_path, clock=clock) as s:
        assert [b.id for b in s.take(1)] == [second]  # the corrupt head is skipped, not returned
        assert s.take(10**6) == []
        assert s.counts()["spool_corrupt"] == 2
        assert s.pending() == (0, 0)


def test_a_corrupt_database_file_is_moved_aside_and_replaced(
    tmp_path: Path, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "spool.db").write_bytes(b"this is not a database" * 500)
    with (
        caplog.at_level(logging.ERROR, logger="otel_sched.durability._spool"),
        Spool(tmp_path, clock=clock) as s,
    ):
        assert s.counts()["db_reset"] == 1
        row = put(s)
        assert [b.id for b in s.take(10**6)] == [row]
    aside = tmp_path / f"spool.db.corrupt-{int(NOW)}"
    assert aside.read_bytes().startswith(b"this is not a database")
    assert mode(aside) == 0o600
    assert [r.levelno for r in caplog.records] == [logging.ERROR]
    assert str(aside) in caplog.records[0].getMessage()


def test_a_truncated_database_file_never_raises_from_take(tmp_path: Path, clock: Clock) -> None:
    with Spool(tmp_path, clock=clock) as s:
        for i in range(40):
            put(s, first_seen=NOW - i, size=20_000)
    db = tmp_path / "spool.db"
    db.write_bytes(db.read_bytes()[: db.stat().st_size // 3])
    with Spool(tmp_path, clock=clock) as s:
        for _ in range(50):  # whatever survived is replayed; the damage is counted, not raised
            batches = s.take(10**6)
            if not batches:
                break
            s.ack(b.id for b in batches)
        assert s.counts()["db_reset"] + s.counts()["spool_corrupt"] >= 1
        row = put(s)
        assert [b.id for b in s.take(10**6)] == [row]


def test_corruption_found_while_running_resets_the_database_and_ids_keep_growing(
    spool: Spool, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = put(spool)
    b = put(spool)
    (batch,) = spool.take(100)
    assert batch.id == a
    real = spool._conn
    assert real is not None
    calls = {"n": 0}

    def malformed_once(sql: str, *args: Any) -> sqlite3.Cursor:
        calls["n"] += 1
        if calls["n"] == 1:
            raise sqlite3.DatabaseError("database disk image is malformed")
        return sqlite3.Connection.execute(real, sql, *args)

    monkeypatch.setattr(real, "execute", malformed_once)
    new = put(spool)  # resets, then stores in the fresh database
    assert new > b
    assert spool.counts()["db_reset"] == 1
    assert spool.counts()["spool_corrupt"] == 1  # the pending row lost with the old file
    spool.ack([a])  # taken before the reset: must not touch the new row
    assert [b.id for b in spool.take(10**6)] == [new]


def test_a_second_spool_on_the_same_directory_in_this_process_is_locked(spool: Spool) -> None:
    with pytest.raises(SpoolLocked, match=rf"{re.escape(spool.directory)}.*pid {os.getpid()}"):
        Spool(spool.directory)
    put(spool)  # the first one is unaffected
    spool.close()
    with Spool(spool.directory) as again:  # released on close
        assert again.pending() == (1, 100)


def test_another_process_cannot_open_a_directory_in_use(spool: Spool) -> None:
    code = (
        "import sys\n"
        "from otel_sched.durability._spool import Spool\n"
        "from otel_sched.durability._spool_file import SpoolLocked\n"
        "try:\n"
        "    Spool(sys.argv[1])\n"
        "except SpoolLocked as exc:\n"
        "    print(exc)\n"
        "    sys.exit(3)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, spool.directory], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 3, proc.stderr
    assert f"pid {os.getpid()}" in proc.stdout


def test_rows_in_flight_at_a_crash_are_replayed_by_the_next_owner(tmp_path: Path, clock: Clock) -> None:
    s = Spool(tmp_path, clock=clock)
    a, b = put(s, first_seen=NOW - 2), put(s, first_seen=NOW - 1)
    taken = s.take(100)
    assert [x.id for x in taken] == [a]
    s.close()  # no ack: as if the process died mid-replay
    with Spool(tmp_path, clock=clock) as s2:
        assert s2.pending() == (2, 200)
        replayed = s2.take(10**6)
        assert [(x.id, x.attempts) for x in replayed] == [(a, 1), (b, 0)]


def test_a_row_committed_before_kill_9_is_replayed_by_the_next_process(tmp_path: Path) -> None:
    code = (
        "import os, signal, sys\n"
        "from otel_sched.durability._spool import Spool\n"
        "s = Spool(sys.argv[1], clock=lambda: 1.5e9)\n"
        "s.put('traces', 'acme', 2, 3, 1.5e9, 1, b'in flight')\n"
        "s.put('traces', 'acme', 1, 3, 1.5e9, 1, b'pending')\n"
        "s.take(1)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, timeout=60)
    assert proc.returncode == -9, proc.stderr
    with Spool(tmp_path, clock=lambda: 1.5e9) as s:  # the dead owner's lock went with it
        assert [(b.payload, b.attempts) for b in s.take(10**6)] == [(b"in flight", 1), (b"pending", 0)]


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_an_unwritable_directory_is_unavailable(tmp_path: Path) -> None:
    locked = tmp_path / "ro"
    locked.mkdir(mode=0o500)
    try:
        with pytest.raises(SpoolUnavailable, match=r"ro.*Permission denied"):
            Spool(locked)
    finally:
        locked.chmod(0o700)


def test_a_path_under_a_regular_file_is_unavailable(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.write_text("not a directory")
    with pytest.raises(SpoolUnavailable, match=r"plain.*Not a directory"):
        Spool(plain / "spool")
    with pytest.raises(SpoolUnavailable, match="Not a directory"):
        Spool(plain)
    assert not isinstance(SpoolUnavailable("x"), SpoolLocked)


def test_files_are_private_whatever_the_umask(tmp_path: Path, clock: Clock) -> None:
    old = os.umask(0)
    try:
        with Spool(tmp_path / "a" / "spool", clock=clock) as s:
            put(s)
            d = Path(s.directory)
            assert mode(d) == 0o700
            for name in ("spool.db", "spool.db-wal", "spool.db-shm", "spool.lock"):
                assert mode(d / name) == 0o600, name
    finally:
        os.umask(old)


def test_pid_placeholder_and_worker_directory(tmp_path: Path) -> None:
    with Spool(str(tmp_path / "w-{pid}")) as s:
        assert s.directory == str(tmp_path / f"w-{os.getpid()}")
    assert worker_directory(str(tmp_path)) == os.path.join(str(tmp_path), str(os.getpid()))
    with Spool(worker_directory(tmp_path)) as s:
        assert Path(s.directory).name == str(os.getpid())


def test_a_write_error_raises_unavailable_and_leaves_the_spool_consistent(
    spool: Spool, monkeypatch: pytest.MonkeyPatch
) -> None:
    put(spool)
    conn = spool._conn
    assert conn is not None

    def disk_full(sql: str, *args: Any) -> sqlite3.Cursor:
        if sql.startswith("INSERT"):
            raise sqlite3.OperationalError("database or disk is full")
        return sqlite3.Connection.execute(conn, sql, *args)

    monkeypatch.setattr(conn, "execute", disk_full)
    with pytest.raises(SpoolUnavailable, match="disk is full"):
        put(spool)
    assert spool.pending() == (1, 100)
    assert spool.counts()["db_reset"] == 0
    monkeypatch.undo()
    put(spool)
    assert len(spool.take(10**6)) == 2


def test_scopes_share_a_directory_with_their_own_files(tmp_path: Path) -> None:
    with Spool(tmp_path) as traces, Spool(tmp_path, signal_scope="logs") as logs:
        put(traces)
        assert logs.pending() == (0, 0)
        assert (tmp_path / "spool-logs.db").exists() and (tmp_path / "spool-logs.lock").exists()
    with pytest.raises(ValueError):
        Spool(tmp_path, signal_scope="../x")


def test_close_is_idempotent_and_a_closed_spool_refuses_work(tmp_path: Path) -> None:
    s = Spool(tmp_path)
    s.close()
    s.close()
    with pytest.raises(SpoolUnavailable, match="closed"):
        s.take(1)


def test_a_lone_surrogate_in_a_tenant_is_stored_escaped(spool: Spool) -> None:
    assert spool.put("traces", "bad\udc80", 1, 1, NOW, 1, b"x") is not None
    (batch,) = spool.take(10)
    assert batch.tenant == "bad\\udc80"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_cannot_use_the_parents_spool_and_does_not_unlock_it(spool: Spool) -> None:
    put(spool)
    pid = os.fork()
    if pid == 0:  # child: report through the exit status only, never return into pytest
        status = 1
        try:
            spool.take(10)
        except SpoolUnavailable as exc:
            status = 0 if "after fork" in str(exc) else 2
        finally:
            if spool._lock_fd != -1:
                status = 4  # the inherited lock descriptor should have been closed at fork
            try:
                spool.close()  # must leave the parent's lock and database alone
            finally:
                os._exit(status)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    with pytest.raises(SpoolLocked):
        Spool(spool.directory)
    assert len(spool.take(10)) == 1  # the parent's connection still works


def test_adopt_orphans_moves_rows_of_dead_workers_only(tmp_path: Path, clock: Clock) -> None:
    with Spool(tmp_path / "101", clock=clock) as dead:
        orphan = dead.put("logs", "t", 2, 10, NOW - 5, 3, b"orphan", attempts=2)
    live = Spool(tmp_path / "102", clock=clock)
    put(live)
    (tmp_path / "unrelated").mkdir()
    try:
        with Spool(tmp_path / "103", clock=clock) as mine:
            assert mine.adopt_orphans(tmp_path) == 1
            (batch,) = mine.take(10**6)
            assert (batch.signal, batch.priority, batch.attempts, batch.payload) == ("logs", 2, 2, b"orphan")
            assert orphan is not None
        assert not (tmp_path / "101").exists()
        assert (tmp_path / "unrelated").exists() and not list((tmp_path / "unrelated").iterdir())
        assert live.pending() == (1, 100)
    finally:
        live.close()
