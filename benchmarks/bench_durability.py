"""Durability with the on-disk spool: a collector outage, kill -9 during a burst, the spool's cost.

    python benchmarks/bench_durability.py [--quick] [--json PATH] [--only outage kill9 overhead outage_kill9]

(a) *outage*: an app thread offers 2,000 spans/s (4 attributes and a sequence number) for
80 s through the real OTLP/HTTP exporter (default settings, 10 s timeout); the embedded
receiver answers 503 to everything from t=5 s to t=65 s (``--quick``: from t=0.5 s for
8 s, load until t=9 s).  After the load the run waits, bounded (60 s; quick 4 s), until
every span has arrived, or the receiver's count has not grown for 3 s (quick 1.5 s) while
the pipeline holds nothing (stock: empty queue and no export call under way; otel-sched:
nothing queued, in flight or pending in the spool).  Offered, delivered (distinct
sequence numbers), duplicates, lost, and a timeline.  otel-sched runs with ``spool_dir``
(other settings default); the stock BatchSpanProcessor beside it, at the same time in the
same process, against its own receiver on the same timeline (a light load for both: the
figure is loss, not CPU).  Target: otel-sched loses 0.

(b) *kill9*: a child process (``python -c``) with the spool on and the collector down
emits one span, waits until its pipeline is degraded (the outage noticed), then emits
the rest of a 20,000-span burst as fast as it can while a thread prints
``stats()["spool"]["spooled_items"]`` every 10 ms.  The parent sends SIGKILL right after
reading a line with more than a quarter of the burst committed: mid-burst (a burst this
fast overflows the 2,048-item intake, so half of it is often never spooled; if a quarter
is not reached, the kill comes 0.5 s after the burst).  Then the rows on disk are counted
(sqlite3), and a second process opens the same directory with the collector up and
replays.  Committed (the last line read before the kill) vs delivered (distinct spans at
the receiver), and duplicates.  Target: delivered >= committed.  The stock processor keeps
nothing on disk: a kill loses everything it holds, so it is not run here.  (b) runs in
child processes while (a) is under way: it checks what survives a kill, not speed.

(d) *outage_kill9*: a child process set up by ``otel_sched.configure()`` (OTLP/HTTP, spool
on, everything else default) creates 500 spans/s, each with a sequence number, and prints
every 25 spans how many it has made and the wall time.  The receiver answers 503 to
everything from t=3 s; the parent sends SIGKILL 0.5, 1.5, 4 and 8 s into that outage (one run
each), and once, at t=7 s, with no outage.  A second process then opens the same spool with the
collector up and replays.  Figure: of the spans created 1 s or more before the kill (by the
child's last report at least 1 s older than the kill), the share delivered (distinct).
Target: >= 99 % at every moment.  ``--quick``: the 4 s run only.

(c) *overhead*: CPU per exported span through OTLP/HTTP to a local receiver, app at
2,000 spans/s (process CPU minus an app-alone run, the receiver's threads measured apart:
the in-process method ``bench_cpu_per_span.py`` used before it moved to child processes),
otel-sched with the spool on vs off while the collector is healthy
(nothing should go to disk); stock for scale.  5 s per run, 3 rounds of (app alone, then
stock, spool off, spool on; the three in reverse order every other round), the median
round by the on/off ratio.  ``--quick``: one round of 1.2 s runs, a smoke check only: the
ratio is a small difference of two large numbers and moves by 10-25 % between short runs.
Target: spool on / spool off <= 1.05 on the pipeline's CPU per span (the app's own cost
subtracted).  Also shown: the CPU of the pipeline's own threads alone
(``thread_cpu_seconds``: scheduler and lanes; stock's worker), read after a flush: it needs
no app-alone run to subtract, but leaves out the app thread's share (on_end, the same with
the spool on or off).
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import _common as c
from opentelemetry.sdk.trace import TracerProvider

from otel_sched.demo._received import ReceivedItem
from otel_sched.demo._receiver import OTLPReceiver
from otel_sched.process._probe import thread_cpu_seconds

# A 60 s outage makes the stock exporter log every failed batch and "Queue full": expected here.
logging.getLogger("opentelemetry").setLevel(logging.CRITICAL)
logging.getLogger("otel_sched").setLevel(logging.ERROR)  # degraded / recovering mode changes

OVERHEAD_TARGET = 1.05
SPOOL_DB = "spool-traces.db"  # the traces pipeline's database in a spool directory (see _spool)


# -- spans with a sequence number, and a receiver that counts distinct ones ----------------------------


class SeqSpans:
    """One span per call with the four usual attributes and ``bench.seq`` = 0, 1, 2, ..."""

    def __init__(self, provider: TracerProvider, seed: int = 1) -> None:
        self._tracer = provider.get_tracer("bench.durability", "1.0.0")
        self._rng = random.Random(seed)
        self.made = 0

    def __call__(self) -> None:
        attrs: dict[str, Any] = c.four_attributes(self._rng)
        attrs["bench.seq"] = self.made
        self.made += 1
        self._tracer.start_span("GET /api/v1/orders/{id}", attributes=attrs).end()


class Distinct:
    """Receiver hook: counts distinct values of one attribute (or of the span name) and all items."""

    def __init__(self, key: str | None = "bench.seq") -> None:
        self._key = key
        self.seen: set[Any] = set()
        self.items = 0

    def __call__(self, item: ReceivedItem) -> None:
        self.items += 1
        self.seen.add(item.name if self._key is None else item.attributes.get(self._key))


def wait_delivered(
    rx: OTLPReceiver,
    done: Callable[[], bool],
    busy: Callable[[], bool],
    quiet_s: float,
    bound_s: float,
) -> float:
    """Wait until ``done()``, or the receiver's count has not grown for ``quiet_s`` while nothing is
    ``busy()``; at most ``bound_s``.  Returns the seconds waited."""
    start = time.monotonic()
    last, last_change = -1, start
    while time.monotonic() - start < bound_s:
        if done():
            break
        now = time.monotonic()
        count = rx.span_count
        if count != last:
            last, last_change = count, now
        elif now - last_change >= quiet_s and rx.in_flight == 0 and not busy():
            break
        time.sleep(0.1)
    return time.monotonic() - start


# -- (a) a collector outage ---------------------------------------------------------------------------


def _stock_waiting(processor: Any) -> int:
    queue = getattr(getattr(processor, "_batch_processor", None), "_queue", None)
    try:
        return len(queue) if queue is not None else 0
    except TypeError:
        return 0


def _stock_busy(processor: Any) -> bool:
    """Items queued, or an export call under way (the exporter may be sleeping between retries)."""
    lock = getattr(getattr(processor, "_batch_processor", None), "_export_lock", None)
    return _stock_waiting(processor) > 0 or bool(lock is not None and lock.locked())


def _ours_busy(processor: Any) -> bool:
    snap = processor.stats()
    spool = snap["spool"]
    return bool(snap["queued"] or snap["intake"] or snap["in_flight"] or spool.get("pending_batches"))


def outage_run(
    kind: str,
    rate: float,
    before: float,
    down: float,
    after: float,
    t0: float,
    spool_dir: str | None,
    timeline: list[dict[str, Any]],
    result: dict[str, Any],
    wait_bound_s: float,
    quiet_s: float,
) -> None:
    hook = Distinct()
    with c.receiver(item_hook=hook) as rx:
        options: dict[str, Any] = {}
        if kind == c.OURS:
            options = {"spool_dir": spool_dir, "shutdown_timeout_millis": 10_000}
        processor = c.span_processor(kind, c.otlp_span_exporter(rx), **options)
        provider = TracerProvider(resource=c.RESOURCE, shutdown_on_exit=False)
        provider.add_span_processor(processor)
        make = SeqSpans(provider)
        stop = threading.Event()

        def faults() -> None:
            if not stop.wait(max(0.0, t0 + before - time.monotonic())):
                rx.set_faults(down=True)
            if not stop.wait(max(0.0, t0 + before + down - time.monotonic())):
                rx.set_faults(down=False)

        def sample() -> None:
            while not stop.wait(0.5):
                point: dict[str, Any] = {
                    "t": round(time.monotonic() - t0, 2),
                    "offered": make.made,
                    "delivered": len(hook.seen),
                }
                if kind == c.OURS:
                    snap = processor.stats()
                    point["mode"] = snap["mode"]
                    point["spooled_items"] = snap["spool"]["spooled_items"]
                    point["replayed_items"] = snap["spool"]["replayed_items"]
                    point["pending_batches"] = snap["spool"].get("pending_batches", 0)
                else:
                    point["queued"] = _stock_waiting(processor)
                timeline.append(point)

        threads = [threading.Thread(target=f, daemon=True) for f in (faults, sample)]
        for t in threads:
            t.start()
        time.sleep(max(0.0, t0 - time.monotonic()))
        made, skipped = c.paced(make, rate, before + down + after)
        load_end = time.monotonic() - t0
        if kind == c.OURS:
            busy: Callable[[], bool] = lambda: _ours_busy(processor)  # noqa: E731
        else:
            busy = lambda: _stock_busy(processor)  # noqa: E731
        waited = wait_delivered(rx, lambda: len(hook.seen) >= made, busy, quiet_s, wait_bound_s)
        stop.set()
        for t in threads:
            t.join(2.0)
        stats = processor.stats() if kind == c.OURS else None
        c.shutdown_processor(processor, 10.0)
        c.wait_settled(rx)
        distinct = len(hook.seen)
        result.update(
            {
                "offered": made,
                "generator_skipped": skipped,
                "delivered": distinct,
                "received_items": hook.items,
                "duplicates": hook.items - distinct,
                "lost": made - distinct,
                "lost_share": (made - distinct) / made if made else None,
                "load_s": load_end,
                "waited_after_load_s": waited,
                "refused_requests": rx.refused_request_count,
            }
        )
        if stats is not None:
            result["spool"] = stats["spool"]
            result["dropped"] = stats["dropped"]
            result["exported"] = stats["exported"]


def outage(quick: bool) -> dict[str, Any]:
    rate = 2000.0
    before, down, after = (0.5, 8.0, 0.5) if quick else (5.0, 60.0, 15.0)
    wait_bound, quiet = (4.0, 1.5) if quick else (60.0, 3.0)
    results: dict[str, dict[str, Any]] = {c.STOCK: {}, c.OURS: {}}
    timelines: dict[str, list[dict[str, Any]]] = {c.STOCK: [], c.OURS: []}
    with tempfile.TemporaryDirectory(prefix="bench-durability-") as tmp:
        t0 = time.monotonic() + 0.2
        threads = [
            threading.Thread(
                target=outage_run,
                args=(kind, rate, before, down, after, t0, str(Path(tmp) / "spool"), timelines[kind]),
                kwargs={"result": results[kind], "wait_bound_s": wait_bound, "quiet_s": quiet},
                name=f"bench-outage-{kind}",
            )
            for kind in (c.STOCK, c.OURS)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    return {
        "rate": rate,
        "before_s": before,
        "down_s": down,
        "after_s": after,
        "wait_bound_s": wait_bound,
        c.STOCK: results[c.STOCK],
        c.OURS: results[c.OURS],
        "pass": results[c.OURS]["lost"] <= 0,
        "timeline": timelines,
    }


def report_outage(r: dict[str, Any], quick: bool) -> None:
    before, down, after = r["before_s"], r["down_s"], r["after_s"]
    print(
        f"\n(a) collector outage: {r['rate']:,.0f} spans/s, receiver down from t={before:g} s to "
        f"t={before + down:g} s, load until t={before + down + after:g} s; both pipelines at once, "
        f"then a wait of at most {r['wait_bound_s']:g} s for the last deliveries"
    )
    s, o, timelines = r[c.STOCK], r[c.OURS], r["timeline"]
    rows = []
    for label, key, spec in (
        ("offered", "offered", ""),
        ("delivered (distinct)", "delivered", ""),
        ("duplicates", "duplicates", ""),
        ("lost", "lost", ""),
    ):
        rows.append([label, c.fmt(s.get(key), spec), c.fmt(o.get(key), spec)])
    rows.append(
        [
            "lost %",
            f"{100 * (s['lost_share'] or 0):.1f} %",
            f"{100 * (o['lost_share'] or 0):.1f} %",
        ]
    )
    rows.append(
        ["waited after the load (s)", f"{s['waited_after_load_s']:.1f}", f"{o['waited_after_load_s']:.1f}"]
    )
    rows.append(
        [
            "spooled / replayed items",
            "-",
            f"{o['spool']['spooled_items']:,} / {o['spool']['replayed_items']:,}",
        ]
    )
    dropped = {k: v for k, v in o.get("dropped", {}).items() if v}
    rows.append(
        ["dropped (ours, by reason)", "-", ", ".join(f"{k} {v:,}" for k, v in dropped.items()) or "none"]
    )
    c.print_table(["", "stock", "otel-sched"], rows)
    print(f"  acceptance, otel-sched loses 0 spans: {'PASS' if r['pass'] else 'FAIL'} (lost {o['lost']:,})")
    # A compact timeline: one row every few seconds.
    step = 1.0 if quick else 5.0
    rows = []
    nxt = 0.0
    for ps, po in zip(timelines[c.STOCK], timelines[c.OURS], strict=False):
        if po["t"] + 1e-9 < nxt:
            continue
        nxt = po["t"] - po["t"] % step + step
        rows.append(
            [
                f"{po['t']:.1f}",
                "down" if before <= po["t"] < before + down else "up",
                ps["offered"],
                ps["delivered"],
                po["offered"],
                po["delivered"],
                po["mode"],
                po["spooled_items"],
                po["replayed_items"],
            ]
        )
    print("\n  timeline (delivered = distinct spans at the receiver so far)")
    c.print_table(
        [
            "t (s)",
            "collector",
            "stock offered",
            "stock delivered",
            "ours offered",
            "ours delivered",
            "ours mode",
            "ours spooled",
            "ours replayed",
        ],
        rows,
    )


# -- (b) kill -9 during a burst, then restart ---------------------------------------------------------

_CHILD = textwrap.dedent(
    """
    import json, logging, sys, threading, time
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace import TracerProvider
    from otel_sched import ScheduledSpanProcessor

    logging.getLogger("otel_sched").setLevel(logging.ERROR)  # degraded / recovering mode changes
    endpoint, spool, n, mode = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    p = ScheduledSpanProcessor(OTLPSpanExporter(endpoint=endpoint, timeout=2), spool_dir=spool)
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(p)
    if mode == "burst":
        emitted = [0]

        def report():
            while True:
                s = p.stats()
                d = s["dropped"]
                line = (s["spool"]["spooled_items"], emitted[0], s["dropped_total"], d.get("intake_full", 0))
                print(*line, flush=True)
                time.sleep(0.01)

        tracer = provider.get_tracer("crash")
        # Span 0 first, until the pipeline has noticed the outage; then the rest as fast as possible.
        tracer.start_span("burst0").end()
        emitted[0] = 1
        deadline = time.monotonic() + 20
        while p.stats()["mode"] != "degraded" and time.monotonic() < deadline:
            p.force_flush(50)
        threading.Thread(target=report, daemon=True).start()
        for i in range(1, n):
            tracer.start_span(f"burst{i}").end()
            emitted[0] = i + 1
        time.sleep(3600)  # wait to be killed
    else:
        start = time.monotonic()
        last, last_change = -1, start
        while time.monotonic() - start < float(sys.argv[5]):
            s = p.stats()
            busy = s["spool"].get("pending_batches", 0) or s["in_flight"] or s["queued"]
            now = time.monotonic()
            if s["spool"]["replayed_items"] != last:
                last, last_change = s["spool"]["replayed_items"], now
            elif not busy and now - last_change > 1.0:
                break
            time.sleep(0.05)
        s = p.stats()
        print(json.dumps({"seconds": time.monotonic() - start, "spool": s["spool"], "dropped": s["dropped"]}))
        sys.stdout.flush()
        p.shutdown()
    """
)


def _rows_on_disk(directory: Path) -> tuple[int, int]:
    """(batches, items) stored in the traces spool database, read directly."""
    path = directory / SPOOL_DB
    if not path.exists():
        return 0, 0
    with contextlib.closing(sqlite3.connect(str(path), timeout=10)) as conn:
        rows, items = conn.execute("SELECT COUNT(*), COALESCE(SUM(items), 0) FROM batches").fetchone()
    return int(rows), int(items)


def kill9(quick: bool) -> dict[str, Any]:
    n = 20_000
    hook = Distinct(key=None)
    with c.receiver(item_hook=hook) as rx, tempfile.TemporaryDirectory(prefix="bench-kill9-") as tmp:
        spool = Path(tmp) / "spool"
        rx.set_faults(down=True)
        started = time.monotonic()
        child = subprocess.Popen(
            [sys.executable, "-c", _CHILD, rx.traces_url, str(spool), str(n), "burst"],
            stdout=subprocess.PIPE,
            text=True,
        )
        committed = emitted = dropped = intake_full = 0
        stalled_since: float | None = None
        try:
            assert child.stdout is not None
            for line in child.stdout:
                committed, emitted, dropped, intake_full = (int(x) for x in line.split())
                if committed > n // 4:
                    break
                if emitted >= n:  # the burst is over and the spool never got there: kill now
                    stalled_since = stalled_since or time.monotonic()
                    if time.monotonic() - stalled_since > 0.5:
                        break
                if time.monotonic() - started > 60:
                    break
            child.send_signal(signal.SIGKILL)
            child.wait(30)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait(10)
        killed_after = time.monotonic() - started
        on_disk_batches, on_disk_items = _rows_on_disk(spool)
        rx.set_faults(down=False)
        restarted = subprocess.run(
            [sys.executable, "-c", _CHILD, rx.traces_url, str(spool), "0", "replay", "60"],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        c.wait_settled(rx)
        try:
            replay = json.loads(restarted.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            replay = {"error": restarted.stderr[-2000:]}
        left_items = _rows_on_disk(spool)[1]
    delivered = len(hook.seen)
    return {
        "burst": n,
        "emitted_at_kill": emitted,
        "committed_at_kill": committed,
        "dropped_at_kill": dropped,
        "dropped_intake_full_at_kill": intake_full,
        "killed_after_s": killed_after,
        "on_disk_after_kill_items": on_disk_items,
        "on_disk_after_kill_batches": on_disk_batches,
        "replay": replay,
        "delivered": delivered,
        "received_items": hook.items,
        "duplicates": hook.items - delivered,
        "left_on_disk_items": left_items,
        "pass": delivered >= committed,
    }


def report_kill9(r: dict[str, Any], quick: bool) -> None:
    print(
        f"\n(b) kill -9 during a burst of {r['burst']:,} spans (collector down, spool on), then a restart "
        "with the collector up"
    )
    replay = r["replay"]
    c.print_table(
        ["otel-sched, spool on", "spans"],
        [
            ["emitted when killed", r["emitted_at_kill"]],
            [
                "dropped when killed (of which intake_full)",
                f"{r['dropped_at_kill']:,} ({r['dropped_intake_full_at_kill']:,})",
            ],
            ["committed (last spooled_items read)", r["committed_at_kill"]],
            ["on disk after the kill (sqlite)", r["on_disk_after_kill_items"]],
            ["replayed by the restarted process", replay.get("spool", {}).get("replayed_items", "-")],
            ["delivered (distinct)", r["delivered"]],
            ["duplicates", r["duplicates"]],
            ["left on disk after the replay", r["left_on_disk_items"]],
        ],
    )
    print(
        f"  acceptance, delivered >= committed: {'PASS' if r['pass'] else 'FAIL'} "
        f"({r['delivered']:,} >= {r['committed_at_kill']:,}); killed {r['killed_after_s']:.1f} s after "
        f"the start, replay took {replay.get('seconds', 0):.1f} s"
    )
    if "error" in replay:
        print(f"  the restarted process failed: {replay['error']}")


# -- (c) the spool's cost while the collector is healthy ----------------------------------------------


def overhead_run(kind: str | None, spool: bool, rate: float, seconds: float) -> dict[str, Any]:
    """One run; ``kind`` None is the app alone."""
    c.trim_heap()
    with c.receiver() as rx, tempfile.TemporaryDirectory(prefix="bench-spool-") as tmp:
        provider = TracerProvider(resource=c.RESOURCE, shutdown_on_exit=False)
        processor = None
        if kind is not None:
            options: dict[str, Any] = {"spool_dir": str(Path(tmp) / "spool")} if spool else {}
            processor = c.span_processor(kind, c.otlp_span_exporter(rx), **options)
            provider.add_span_processor(processor)
        make = c.SpanFactory(provider, c.four_attributes)
        with c.RssSampler() as sampler:
            cpu0 = time.process_time()
            made, skipped = c.paced(make, rate, seconds)
            stats = processor.stats() if kind == c.OURS and processor is not None else None
            thread_cpu = None
            if processor is not None:
                processor.force_flush(30_000)
                # This processor's own threads (created with it, alive until its shutdown).
                prefix = "otel-sched-traces" if kind == c.OURS else "OtelBatchSpan"
                thread_cpu = thread_cpu_seconds(t for t in threading.enumerate() if t.name.startswith(prefix))
                c.shutdown_processor(processor)
            c.wait_settled(rx)
            cpu = time.process_time() - cpu0
        return {
            "made": made,
            "skipped": skipped,
            "delivered": rx.span_count,
            "cpu_s": cpu,
            "receiver_cpu_s": sampler.receiver_cpu_s,
            "pipeline_threads_cpu_s": thread_cpu,
            "spooled_items": None if stats is None else stats["spool"]["spooled_items"],
        }


def _per_span(r: dict[str, Any], baseline: dict[str, Any]) -> dict[str, Any]:
    app_cpu = baseline["cpu_s"] * r["made"] / max(baseline["made"], 1)
    delivered = max(r["delivered"], 1)
    r["pipeline_cpu_s"] = r["cpu_s"] - app_cpu - r["receiver_cpu_s"]
    r["us_per_span"] = r["pipeline_cpu_s"] / delivered * 1e6
    r["us_per_span_process"] = (r["cpu_s"] - r["receiver_cpu_s"]) / delivered * 1e6
    r["us_per_span_threads"] = r["pipeline_threads_cpu_s"] / delivered * 1e6
    return r


OVERHEAD_CASES = (("stock", c.STOCK, False), ("spool_off", c.OURS, False), ("spool_on", c.OURS, True))


def overhead(quick: bool) -> dict[str, Any]:
    rate = 2000.0
    seconds, repeat = (1.2, 1) if quick else (5.0, 3)
    for kind, spool in ((c.STOCK, False), (c.OURS, False), (c.OURS, True)):  # warm-up, not measured
        overhead_run(kind, spool, rate, 0.3 if quick else 1.0)
    rounds: list[dict[str, Any]] = []
    for i in range(repeat):
        baseline = overhead_run(None, False, rate, seconds)
        entry: dict[str, Any] = {"app_only": baseline}
        # Spool off and on swap places every round, so that neither always runs last.
        for name, kind, spool in OVERHEAD_CASES if i % 2 == 0 else OVERHEAD_CASES[::-1]:
            entry[name] = _per_span(overhead_run(kind, spool, rate, seconds), baseline)
        entry["ratio"] = c.ratio(entry["spool_on"]["us_per_span"], entry["spool_off"]["us_per_span"])
        entry["ratio_process"] = c.ratio(
            entry["spool_on"]["us_per_span_process"], entry["spool_off"]["us_per_span_process"]
        )
        entry["ratio_threads"] = c.ratio(
            entry["spool_on"]["us_per_span_threads"], entry["spool_off"]["us_per_span_threads"]
        )
        rounds.append(entry)
    ratios = [r["ratio"] or 0.0 for r in rounds]
    chosen = rounds[sorted(range(repeat), key=lambda i: ratios[i])[repeat // 2]]
    ok = chosen["ratio"] is not None and chosen["ratio"] <= OVERHEAD_TARGET
    return {
        "rate": rate,
        "seconds": seconds,
        "repeat": repeat,
        "chosen": chosen,
        "ratio": chosen["ratio"],
        "ratio_process": chosen["ratio_process"],
        "ratios_all_rounds": ratios,
        "ratios_process_all_rounds": [r["ratio_process"] or 0.0 for r in rounds],
        "ratios_threads_all_rounds": [r["ratio_threads"] or 0.0 for r in rounds],
        "pass": ok,
        "rounds": rounds,
    }


def report_overhead(r: dict[str, Any], quick: bool) -> None:
    print(
        f"\n(c) spool overhead, collector healthy: {r['rate']:,.0f} spans/s for {r['seconds']:.1f} s "
        "per run, "
        f"{r['repeat']} round(s) of (app alone, stock, ours spool off, ours spool on)"
    )
    chosen, repeat = r["chosen"], r["repeat"]
    st, off, on, base = chosen["stock"], chosen["spool_off"], chosen["spool_on"], chosen["app_only"]
    app_us = base["cpu_s"] / max(base["made"], 1) * 1e6
    c.print_table(
        ["", "stock", "ours, spool off", "ours, spool on", "on/off"],
        [
            ["spans made", st["made"], off["made"], on["made"], ""],
            ["spans delivered", st["delivered"], off["delivered"], on["delivered"], ""],
            ["spooled items", "-", "-", c.fmt(on["spooled_items"]), ""],
            [
                "CPU us per span, pipeline (process - app alone)",
                f"{st['us_per_span']:.1f}",
                f"{off['us_per_span']:.1f}",
                f"{on['us_per_span']:.1f}",
                c.fmt_ratio(chosen["ratio"]),
            ],
            [
                "CPU us per span, app + pipeline",
                f"{st['us_per_span_process']:.1f}",
                f"{off['us_per_span_process']:.1f}",
                f"{on['us_per_span_process']:.1f}",
                c.fmt_ratio(chosen["ratio_process"]),
            ],
            [
                "CPU us per span, pipeline threads only",
                f"{st['us_per_span_threads']:.1f}",
                f"{off['us_per_span_threads']:.1f}",
                f"{on['us_per_span_threads']:.1f}",
                c.fmt_ratio(chosen["ratio_threads"]),
            ],
            ["(app alone: us per span created)", f"{app_us:.1f}", f"{app_us:.1f}", f"{app_us:.1f}", ""],
        ],
    )
    pipeline = ", ".join(c.fmt_ratio(x) for x in r["ratios_all_rounds"])
    process = ", ".join(c.fmt_ratio(x) for x in r["ratios_process_all_rounds"])
    threads = ", ".join(c.fmt_ratio(x) for x in r["ratios_threads_all_rounds"])
    print(
        f"  (median round of {repeat}; on/off per round, pipeline: {pipeline}; app + pipeline: {process}; "
        f"pipeline threads: {threads})"
    )
    print(
        f"  acceptance, spool on / off <= {OVERHEAD_TARGET:.2f} (pipeline CPU per span): "
        f"{'PASS' if r['pass'] else 'FAIL'} ({c.fmt_ratio(chosen['ratio'])})"
    )


# -- (d) kill -9 at any moment of a 503 outage, app at 500 spans/s through configure() ------------------

_PACED_CHILD = textwrap.dedent(
    """
    import json, logging, sys, time
    from otel_sched import configure

    logging.getLogger("otel_sched").setLevel(logging.ERROR)
    logging.getLogger("opentelemetry").setLevel(logging.CRITICAL)
    endpoint, spool, mode = sys.argv[1], sys.argv[2], sys.argv[3]
    setup = configure(service_name="kill9", endpoint=endpoint, protocol="http/protobuf", logs=False,
                      logging_handler=False, set_global=False, spool_dir=spool)
    p = setup.span_processor
    if mode == "paced":
        tracer = setup.tracer_provider.get_tracer("paced")
        rate, seq, t0 = float(sys.argv[4]), 0, time.monotonic()
        while True:
            delay = t0 + seq / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            tracer.start_span("paced", attributes={"bench.seq": seq}).end()
            seq += 1
            if seq % 25 == 0:  # spans 0..seq-1 exist now
                print(seq, time.time(), flush=True)
    else:
        start = time.monotonic()
        last, last_change = -1, start
        while time.monotonic() - start < 60:
            s = p.stats()
            busy = s["spool"].get("pending_batches", 0) or s["in_flight"] or s["queued"]
            now = time.monotonic()
            if s["spool"]["replayed_items"] != last:
                last, last_change = s["spool"]["replayed_items"], now
            elif not busy and now - last_change > 1.0:
                break
            time.sleep(0.05)
        print(json.dumps({"seconds": time.monotonic() - start, "spool": s["spool"]}), flush=True)
        setup.shutdown()
    """
)

# (seconds healthy before the outage, seconds into the outage when killed); None: no outage.
KILL_MOMENTS: tuple[tuple[float, float | None], ...] = (
    (3.0, 0.5),
    (3.0, 1.5),
    (3.0, 4.0),
    (3.0, 8.0),
    (7.0, None),
)
KILL_RATE = 500.0


def outage_kill9_run(before_s: float, into_s: float | None) -> dict[str, Any]:
    hook = Distinct()
    with c.receiver(item_hook=hook) as rx, tempfile.TemporaryDirectory(prefix="bench-okill9-") as tmp:
        spool = Path(tmp) / "spool"
        child = subprocess.Popen(
            [sys.executable, "-c", _PACED_CHILD, rx.http_endpoint, str(spool), "paced", str(KILL_RATE)],
            stdout=subprocess.PIPE,
            text=True,
        )
        marks: list[tuple[int, float]] = []  # (spans made, wall time)
        started = time.monotonic()
        outage_at = started + before_s
        kill_at = outage_at + (into_s if into_s is not None else 0.0)
        in_outage = False
        try:
            assert child.stdout is not None
            for line in child.stdout:
                made, wall = line.split()
                marks.append((int(made), float(wall)))
                now = time.monotonic()
                if into_s is not None and not in_outage and now >= outage_at:
                    rx.set_faults(failure_rate=1.0, failure_status=503)
                    in_outage = True
                if now >= kill_at:
                    break
            killed_wall = time.time()
            child.send_signal(signal.SIGKILL)
            child.wait(30)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait(10)
        # Spans created 1 s or more before the kill: those made by the last report at least 1 s old.
        old = max((made for made, wall in marks if wall <= killed_wall - 1.0), default=0)
        made_total = marks[-1][0] if marks else 0
        rx.set_faults(failure_rate=0.0)
        restarted = subprocess.run(
            [sys.executable, "-c", _PACED_CHILD, rx.http_endpoint, str(spool), "replay"],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        c.wait_settled(rx)
        try:
            replay = json.loads(restarted.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            replay = {"error": restarted.stderr[-2000:]}
    seen = hook.seen
    delivered_old = sum(1 for seq in range(old) if seq in seen)
    return {
        "healthy_s": before_s,
        "outage_s_at_kill": into_s,
        "made": made_total,
        "created_1s_before_kill": old,
        "delivered_of_those": delivered_old,
        "delivered_share": delivered_old / old if old else None,
        "delivered_total": len(seen),
        "duplicates": hook.items - len(seen),
        "replayed": replay.get("spool", {}).get("replayed_items"),
        "replay_error": replay.get("error"),
    }


def outage_kill9(quick: bool) -> dict[str, Any]:
    moments = KILL_MOMENTS[2:3] if quick else KILL_MOMENTS
    runs = [outage_kill9_run(before, into) for before, into in moments]
    shares = [r["delivered_share"] for r in runs if r["delivered_share"] is not None]
    return {
        "runs": runs,
        "worst_share": min(shares, default=0.0),
        "pass": bool(shares) and min(shares) >= 0.99,
    }


def report_outage_kill9(r: dict[str, Any], quick: bool) -> None:
    print(
        f"\n(d) kill -9 at a moment of a 503 outage (app at {KILL_RATE:.0f} spans/s through configure(), "
        "OTLP/HTTP, spool on), then a restart with the collector up"
    )
    rows = []
    for run in r["runs"]:
        when = "no outage" if run["outage_s_at_kill"] is None else f"{run['outage_s_at_kill']:.1f} s into it"
        share = run["delivered_share"]
        rows.append(
            [
                when,
                run["made"],
                run["created_1s_before_kill"],
                run["delivered_of_those"],
                "-" if share is None else f"{100 * share:.2f} %",
                run["duplicates"],
            ]
        )
    c.print_table(
        ["killed", "made", "created >= 1 s before", "delivered of those", "share", "duplicates"], rows
    )
    print(
        f"  acceptance, >= 99 % of what was created 1 s or more before the kill delivered, at every moment: "
        f"{'PASS' if r['pass'] else 'FAIL'} (worst {100 * r['worst_share']:.2f} %)"
    )
    for run in r["runs"]:
        if run["replay_error"]:
            print(f"  a restarted process failed: {run['replay_error']}")


PARTS: dict[str, tuple[Callable[[bool], dict[str, Any]], Callable[[dict[str, Any], bool], None]]] = {
    "outage": (outage, report_outage),
    "kill9": (kill9, report_kill9),
    "overhead": (overhead, report_overhead),
    "outage_kill9": (outage_kill9, report_outage_kill9),
}


def main(argv: list[str] | None = None) -> int:
    p = c.parser("durability", __doc__)
    p.add_argument("--only", nargs="+", choices=list(PARTS), metavar="PART", help="run only these parts")
    args = p.parse_args(argv)
    parts = args.only or list(PARTS)
    params = {"quick": args.quick, "parts": parts}
    c.print_header("Durability: collector outage, kill -9, spool overhead", params)
    results: dict[str, Any] = {}

    def measure(name: str) -> None:
        started = time.monotonic()
        try:
            results[name] = PARTS[name][0](args.quick)
        except Exception as exc:  # noqa: BLE001 - one broken part must not hide the others' figures
            traceback.print_exc()
            results[name] = {"error": f"{type(exc).__name__}: {exc}", "pass": False}
        results[name]["elapsed_s"] = time.monotonic() - started

    # (b) lives in child processes and checks what survives a kill, not how fast: it runs while
    # (a) is under way (a light load, whose figure is loss too), which saves its time.
    beside = None
    if "outage" in parts and "kill9" in parts:
        beside = threading.Thread(target=measure, args=("kill9",), name="bench-kill9")
        beside.start()
    for name in parts:
        if beside is None or name != "kill9":
            measure(name)
        if name == "outage" and beside is not None:
            beside.join()
    for name in parts:
        if "error" in results[name]:
            print(f"\n({name}) failed: {results[name]['error']}")
        else:
            PARTS[name][1](results[name], args.quick)
    summary = Counter("PASS" if r.get("pass") else "FAIL" for r in results.values())
    print(
        f"\n  {summary['PASS']} passed, {summary['FAIL']} failed: "
        + ", ".join(f"{name} {'PASS' if r.get('pass') else 'FAIL'}" for name, r in results.items())
    )
    c.write_json(args.json, "durability", params, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
