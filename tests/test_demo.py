"""``otel-sched demo``: the runner's numbers, the CLI's usage errors, the HTML report."""

from __future__ import annotations

import io
import json
import os
import shutil
import struct
import subprocess
import sys
import threading
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from otel_sched.demo._cli import ProgressPrinter
from otel_sched.demo._demo import SIGNALS, run_demo
from otel_sched.demo._report import format_table, table_rows
from otel_sched.demo._report_html import render_html
from otel_sched.demo._scenario import DemoConfig, Progress

# Small, but over what one export lane carries at 100 ms a round trip, so ours sheds and the
# stock queue overflows: the drop accounting is exercised, not only the happy path.
TINY = DemoConfig(
    duration_s=1.5,
    span_rate=3000.0,
    log_rate=1000.0,
    latency_ms=100.0,
    tenants=3,
    warmup_s=0.2,
    drain_timeout_s=10.0,
)


@pytest.fixture(scope="module")
def result() -> dict[str, Any]:
    return run_demo(TINY)


def _sum(rows: dict[str, dict[str, Any]], key: str) -> int:
    return sum(int(r[key]) for r in rows.values())


def test_result_structure(result: dict[str, Any]) -> None:
    assert result["partial"] is False
    assert set(result["runs"]) == {"stock", "otel_sched"}
    assert result["tenants"] == ["tenant-a", "tenant-b", "tenant-c"]
    assert result["noisy_tenant"] == "tenant-a"
    assert result["config"]["duration_s"] == TINY.duration_s
    machine = result["machine"]
    assert machine["cpu_count"] >= 1 and machine["opentelemetry_sdk"] and machine["python"]
    for run in result["runs"].values():
        assert run["completed"] and run["drained"], run["notes"]
        assert run["cpu_s"] > 0 and run["rss_baseline_mib"] > 0
        assert run["timeline"], "sampled during the run"
        sample = run["timeline"][-1]
        for key in (
            "t",
            "offered_spans",
            "delivered_spans",
            "waiting_spans",
            "waiting_logs",
            "in_flight_spans",
        ):
            assert key in sample
        for signal in SIGNALS:
            entry = run["signals"][signal]
            assert entry["offered"] > 0
            assert set(entry["by_priority"]) == {"high", "normal"}
            assert set(entry["latency_ms"]) >= {"count", "p50", "p99"}
    json.dumps(result)  # everything is JSON-ready


def test_counts_are_consistent(result: dict[str, Any]) -> None:
    for run in result["runs"].values():
        for signal in SIGNALS:
            entry = run["signals"][signal]
            assert 0 <= entry["delivered"] <= entry["offered"]
            for rows in (entry["by_tenant"], entry["by_priority"]):
                assert _sum(rows, "offered") == entry["offered"]
                assert _sum(rows, "delivered") == entry["delivered"]
                for row in rows.values():
                    assert 0 <= row["delivered"] <= row["offered"]
            assert entry["latency_ms"]["count"] == entry["delivered"]
            # The generator's mix: every tenant and both priorities were offered something.
            assert all(row["offered"] > 0 for row in entry["by_tenant"].values())
            assert entry["by_priority"]["high"]["offered"] > 0


def test_stock_loss_is_offered_minus_delivered(result: dict[str, Any]) -> None:
    for signal in SIGNALS:
        entry = result["runs"]["stock"]["signals"][signal]
        assert entry["drops"] == {"queue_full/lost": entry["offered"] - entry["delivered"]}


def test_ours_accounts_for_every_item(result: dict[str, Any]) -> None:
    for signal in SIGNALS:
        entry = result["runs"]["otel_sched"]["signals"][signal]
        stats = entry["processor"]
        assert stats["received"] == entry["offered"]
        assert sum(entry["drops"].values()) == stats["dropped_total"]
        # No refused requests in this scenario: what it exported is what the receiver counted.
        assert stats["exported"] == entry["delivered"]
        left = stats["queued"] + stats["intake"] + stats["in_flight"]
        assert entry["delivered"] + stats["dropped_total"] + left == entry["offered"]


def test_stop_event_gives_partial_result() -> None:
    stop = threading.Event()

    def progress(p: Progress) -> None:
        if p.pipeline == "stock" and p.step == "load" and p.offered > 200:
            stop.set()

    config = DemoConfig(duration_s=30.0, span_rate=1000.0, log_rate=200.0, tenants=2, warmup_s=0.0)
    result = run_demo(config, progress=progress, stop=stop)
    assert result["partial"] is True
    assert list(result["runs"]) == ["stock"], "the second run never starts"
    run = result["runs"]["stock"]
    assert run["completed"] is False and run["interrupted_in"] == "load"
    assert run["load_seconds"] < 30.0
    table = format_table(result)
    assert table.startswith("PARTIAL RESULTS")
    offered = next(line for line in table.splitlines() if line.strip().startswith("offered"))
    assert offered.split()[-1] == "-", "the missing run's column"


def test_table_lists_both_pipelines(result: dict[str, Any]) -> None:
    table = format_table(result)
    assert "stock" in table and "otel-sched" in table
    labels = [row.label for row in table_rows(result)]
    for label in ("delivered, all", "delivered, high priority (ERROR)", "tenant-a (noisy)", "tenant-b"):
        assert label in labels
    assert "dropped: queue_full/lost" in labels
    assert "peak RSS growth" in labels


def test_progress_printer_plain_and_live() -> None:
    plain = io.StringIO()
    printer = ProgressPrinter(plain, live=False, every_s=3600.0)
    for step, t in (("load", 0.0), ("load", 0.25), ("load", 0.5), ("drain", 1.1)):
        printer(Progress("stock", step, 1, 2, t, 1.0, 100, 50))
    printer.finish()
    lines = plain.getvalue().splitlines()
    assert len(lines) == 2, "a plain stream gets a line per phase, not one per update"
    assert "stock" in lines[0] and "offered 100" in lines[0]

    live = io.StringIO()
    printer = ProgressPrinter(live, live=True)
    for t in (0.0, 0.25):
        printer(Progress("otel_sched", "load", 2, 2, t, 1.0, 10, 5))
    printer.finish()
    assert live.getvalue().count("\r") == 3 and "\n" not in live.getvalue()


# -- the command line -------------------------------------------------------------------------------


def _cli(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "otel_sched", "demo", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["--duration", "-1"], "--duration"),
        (["--duration", "0"], "--duration"),
        (["--tenants", "0"], "--tenants"),
        (["--tenants", "two"], "--tenants"),
        (["--latency-ms", "slow"], "--latency-ms"),
        (["--latency-ms", "nan"], "--latency-ms"),
        (["--noisy-share", "1.5"], "--noisy-share"),
        (["--error-share", "-0.1"], "--error-share"),
        (["--failure-rate", "2"], "--failure-rate"),
        (["--rate", "-5"], "--rate"),
        (["--policy", "lifo"], "--policy"),
        (["--collector-concurrency", "0"], "--collector-concurrency"),
        (["--report", "/nonexistent-dir/report.html"], "--report"),
    ],
)
def test_cli_usage_errors(args: list[str], option: str) -> None:
    done = _cli(*args)
    assert done.returncode == 2, done.stderr
    assert "usage: otel-sched demo" in done.stderr
    assert f"argument {option}" in done.stderr


class _Page(HTMLParser):
    """Collects what the report test checks: tags, and the comparison table's cells by row label."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.cells: dict[str, dict[str, str]] = {}
        self._row: list[tuple[str | None, str]] = []
        self._cell: str | None = None
        self._pipeline: str | None = None
        self._in_table = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        a = dict(attrs)
        if tag == "table" and a.get("class") == "comparison":
            self._in_table = True
        elif self._in_table and tag == "tr":
            self._row = []
        elif self._in_table and tag == "td":
            self._cell, self._pipeline = "", a.get("data-pipeline")

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._cell is not None:
            self._row.append((self._pipeline, self._cell))
            self._cell = None
        elif tag == "tr" and self._in_table and len(self._row) == 4:
            label = self._row[0][1]
            section = self.cells.setdefault(label, {})
            for pipeline, text in self._row[1:3]:
                if pipeline is not None:
                    section.setdefault(pipeline, text)
        elif tag == "table":
            self._in_table = False


def _parse(page: str) -> _Page:
    parser = _Page()
    parser.feed(page)
    parser.close()
    return parser


def test_cli_writes_json_and_a_self_contained_report(tmp_path: Path) -> None:
    report, data = tmp_path / "report.html", tmp_path / "result.json"
    done = _cli(
        "--duration", "1", "--rate", "400", "--log-rate", "200", "--latency-ms", "5",
        "--tenants", "3", "--warmup", "0.2", "--quiet", "--json", str(data), "--report", str(report),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "otel-sched" in done.stdout and "delivered, all" in done.stdout
    assert done.stderr == "" or "[" not in done.stderr, "--quiet prints no progress"
    result = json.loads(data.read_text())
    page = report.read_text()

    parsed = _parse(page)
    assert parsed.tags.count("svg") >= 5, "bar charts and timelines"
    assert {"table", "polyline", "rect", "title", "style"} <= set(parsed.tags)
    for forbidden in ("<script", "<link", " src=", "url(", "@import"):
        assert forbidden not in page, f"the report must not load anything: found {forbidden!r}"

    cells = parsed.cells
    for kind in ("stock", "otel_sched"):
        spans = result["runs"][kind]["signals"]["spans"]
        logs = result["runs"][kind]["signals"]["logs"]
        assert cells["offered"][kind] == f"{spans['offered']:,}"  # the first "offered" row is the spans'
        assert cells["delivered, all"][kind] == f"{spans['delivered_pct']:.1f} %"
        assert f"{logs['offered']:,}" in page
        cpu = result["runs"][kind]["cpu_s"]
        assert cells["CPU, whole process"][kind] == f"{cpu:.2f} s"


# -- rendering in a real browser ----------------------------------------------------------------------

_CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)


@pytest.mark.skipif(_CHROMIUM is None, reason="chromium is not installed")
def test_report_renders_in_headless_chromium(result: dict[str, Any], tmp_path: Path) -> None:
    assert _CHROMIUM is not None
    page = tmp_path / "report.html"
    page.write_text(render_html(result), encoding="utf-8")
    png = tmp_path / "report.png"
    subprocess.run(
        [
            _CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--window-size=1280,2000",
            f"--screenshot={png}",
            page.as_uri(),
        ],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert png.exists(), "chromium wrote no screenshot"
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (1280, 2000)
    # A blank page compresses to a few KB; charts, text and a table do not.
    assert len(data) > 40_000
