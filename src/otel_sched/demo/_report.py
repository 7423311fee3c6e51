"""The demo's comparison table: its rows (console and HTML) and the console rendering.

Everything here, in :mod:`._charts` and in :mod:`._report_html` reads the dict
:func:`otel_sched.demo._demo.run_demo` returns, so a saved ``--json`` file can be rendered again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = [
    "COLORS",
    "LABELS",
    "OURS",
    "SIGNAL_TITLES",
    "STOCK",
    "Row",
    "fmt",
    "format_table",
    "get",
    "scenario_line",
    "table_rows",
]

STOCK = "stock"
OURS = "otel_sched"
LABELS = {STOCK: "stock", OURS: "otel-sched"}
COLORS = {STOCK: "#c2662d", OURS: "#2f6db5"}
SIGNAL_TITLES = {"spans": "Spans", "logs": "Logs"}
_MAX_TENANT_ROWS = 10  # beyond this many tenants the table shows aggregates instead of one row each


@dataclass(frozen=True)
class Row:
    """One line of the comparison table.  ``unit`` decides formatting and how the two are compared."""

    section: str
    label: str
    stock: float | None
    ours: float | None
    unit: str  # "%" (difference in points), "count", "ms", "s", "MiB", "us" (ratio ours/stock), "drops"

    @property
    def change(self) -> str:
        if self.stock is None or self.ours is None or self.unit == "drops":
            return ""
        if self.unit == "%":
            return f"{self.ours - self.stock:+.1f} pp"
        if self.unit == "count":
            return ""
        if self.stock == 0:
            return "" if self.ours == 0 else "n/a"
        return f"x{self.ours / self.stock:.2f}"


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "%":
        return f"{value:.1f} %"
    if unit in ("count", "drops"):
        return f"{int(value):,}"
    if unit == "ms":
        return f"{value:,.0f} ms"
    if unit == "s":
        return f"{value:.2f} s"
    if unit == "MiB":
        return f"{value:.1f} MiB"
    if unit == "us":
        return f"{value:.1f} us"
    return str(value)


def get(run: dict[str, Any] | None, *path: str) -> Any:
    node: Any = run
    for key in path:
        if not isinstance(node, dict):
            return None
        node = node.get(key)
    return node


def _tenant_rows(result: dict[str, Any], signal: str, section: str) -> list[Row]:
    stock, ours = result["runs"].get(STOCK), result["runs"].get(OURS)
    noisy = result.get("noisy_tenant")
    tenants: list[str] = list(result.get("tenants") or [])
    rows: list[Row] = []

    def pct(run: dict[str, Any] | None, tenant: str) -> float | None:
        value = get(run, "signals", signal, "by_tenant", tenant, "delivered_pct")
        return None if value is None else float(value)

    quiet = [t for t in tenants if t != noisy]
    if noisy is not None and noisy in tenants:
        label = f"{noisy} (noisy)" if quiet else noisy
        rows.append(Row(section, label, pct(stock, noisy), pct(ours, noisy), "%"))
    if len(tenants) <= _MAX_TENANT_ROWS:
        rows.extend(Row(section, t, pct(stock, t), pct(ours, t), "%") for t in quiet)
        return rows

    def aggregate(run: dict[str, Any] | None) -> tuple[float | None, float | None]:
        by_tenant = get(run, "signals", signal, "by_tenant") or {}
        offered = sum(by_tenant[t]["offered"] for t in quiet if t in by_tenant)
        delivered = sum(by_tenant[t]["delivered"] for t in quiet if t in by_tenant)
        shares = [
            by_tenant[t]["delivered_pct"]
            for t in quiet
            if by_tenant.get(t, {}).get("delivered_pct") is not None
        ]
        overall = 100.0 * delivered / offered if offered else None
        return overall, (min(shares) if shares else None)

    (s_all, s_min), (o_all, o_min) = aggregate(stock), aggregate(ours)
    rows.append(Row(section, f"quiet tenants, all {len(quiet)}", s_all, o_all, "%"))
    rows.append(Row(section, "quiet tenants, worst one", s_min, o_min, "%"))
    return rows


def table_rows(result: dict[str, Any]) -> list[Row]:
    """The comparison, row by row: what the console table and the HTML table both show."""
    runs = result["runs"]
    stock, ours = runs.get(STOCK), runs.get(OURS)
    rows: list[Row] = []
    for signal in ("spans", "logs"):
        section = SIGNAL_TITLES[signal]

        def value(run: dict[str, Any] | None, *path: str, signal: str = signal) -> float | None:
            v = get(run, "signals", signal, *path)
            return None if v is None else float(v)

        rows.append(Row(section, "offered", value(stock, "offered"), value(ours, "offered"), "count"))
        rows.append(Row(section, "delivered", value(stock, "delivered"), value(ours, "delivered"), "count"))
        rows.append(
            Row(section, "delivered, all", value(stock, "delivered_pct"), value(ours, "delivered_pct"), "%")
        )
        for priority, label in (("high", "high priority (ERROR)"), ("normal", "normal priority")):
            rows.append(
                Row(
                    section,
                    f"delivered, {label}",
                    value(stock, "by_priority", priority, "delivered_pct"),
                    value(ours, "by_priority", priority, "delivered_pct"),
                    "%",
                )
            )
        rows.extend(_tenant_rows(result, signal, section))
        reasons: list[str] = []
        for run in (stock, ours):
            for reason in get(run, "signals", signal, "drops") or {}:
                if reason not in reasons:
                    reasons.append(reason)
        for reason in reasons:
            rows.append(
                Row(
                    section,
                    f"dropped: {reason}",
                    _drop_count(stock, signal, reason),
                    _drop_count(ours, signal, reason),
                    "drops",
                )
            )
        rows.append(
            Row(
                section,
                "end -> export p50",
                value(stock, "latency_ms", "p50"),
                value(ours, "latency_ms", "p50"),
                "ms",
            )
        )
        rows.append(
            Row(
                section,
                "end -> export p99",
                value(stock, "latency_ms", "p99"),
                value(ours, "latency_ms", "p99"),
                "ms",
            )
        )

    def run_value(run: dict[str, Any] | None, key: str) -> float | None:
        v = get(run, key)
        return None if v is None else float(v)

    section = "Process (spans + logs)"
    for key, label, unit in (
        ("cpu_s", "CPU, whole process", "s"),
        ("cpu_receiver_s", "CPU, embedded receiver", "s"),
        ("cpu_app_pipeline_s", "CPU, app + pipeline", "s"),
        ("cpu_us_per_delivered", "CPU per delivered item (app + pipeline)", "us"),
        ("rss_peak_growth_mib", "peak RSS growth", "MiB"),
    ):
        rows.append(Row(section, label, run_value(stock, key), run_value(ours, key), unit))
    return rows


_STOCK_LOSS = "queue_full/lost"


def _drop_count(run: dict[str, Any] | None, signal: str, reason: str) -> float | None:
    """A run's count for a drop reason; None where the reason does not apply to that pipeline."""
    if run is None:
        return None
    is_stock = run.get("pipeline") == STOCK
    if is_stock != (reason == _STOCK_LOSS):
        return None  # the stock processors only have offered - delivered; ours never report that
    drops = get(run, "signals", signal, "drops") or {}
    return float(drops.get(reason, 0))


def scenario_line(result: dict[str, Any]) -> str:
    c = result["config"]
    tenants = result.get("tenants") or []
    noisy = f", {result['noisy_tenant']} sends {c['noisy_share'] * 100:.0f} %" if len(tenants) > 1 else ""
    failures = f", {c['failure_rate'] * 100:.0f} % of requests refused" if c["failure_rate"] else ""
    cc = c.get("collector_concurrency")
    serves = f" serving {cc} request{'s' if cc != 1 else ''} at a time" if cc is not None else ""
    plural = "s" if c["tenants"] != 1 else ""
    return (
        f"{c['duration_s']:g} s per pipeline, {c['span_rate']:,.0f} spans/s + {c['log_rate']:,.0f} logs/s, "
        f"{c['tenants']} tenant{plural}{noisy}, {c['error_share'] * 100:.0f} % errors, "
        f"collector latency {c['latency_ms']:g} ms{serves}{failures}, policy {c['policy']}"
    )


def _partial_reason(result: dict[str, Any]) -> str:
    for kind, run in result["runs"].items():
        if not run.get("completed", True):
            step = run.get("interrupted_in") or "run"
            return (
                f"the demo was interrupted in the {LABELS.get(kind, kind)} run ({step}, "
                f"after {run.get('load_seconds', 0):.1f} s of load)"
            )
    return "the demo was interrupted"


def format_table(result: dict[str, Any]) -> str:
    """The console table."""
    rows = table_rows(result)
    width = max(len(r.label) for r in rows) + 4
    header = f"{'':{width}}{'stock':>14}{'otel-sched':>14}   change"
    lines = []
    if result.get("partial"):
        lines.append(f"PARTIAL RESULTS: {_partial_reason(result)}; a missing run shows as '-'")
    lines.append(f"otel-sched demo: {scenario_line(result)}")
    lines.append("")
    lines.append(header)
    section = None
    for row in rows:
        if row.section != section:
            section = row.section
            lines.append(section)
        stock, ours = fmt(row.stock, row.unit), fmt(row.ours, row.unit)
        lines.append(f"  {row.label:{width - 2}}{stock:>14}{ours:>14}   {row.change}")
    notes = [n for run in result["runs"].values() for n in run.get("notes", [])]
    if any(get(run, "generator_skipped") for run in result["runs"].values()):
        notes.append(
            "the generator fell behind its rate (generator_skipped in --json); offered counts what it made"
        )
    for note in notes:
        lines.append(f"note: {note}")
    return "\n".join(lines)
