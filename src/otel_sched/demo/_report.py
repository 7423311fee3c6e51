"""The demo's outputs: the side-by-side table (console and HTML) and the self-contained HTML report.

Everything here reads the dict :func:`otel_sched.demo._demo.run_demo` returns, so a
saved ``--json`` file can be rendered again.  The HTML has inline CSS and inline
SVG charts only: no script, no font, no image or stylesheet fetched from anywhere.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Row", "format_table", "render_html", "table_rows", "write_html"]

_STOCK = "stock"
_OURS = "otel_sched"
_LABELS = {_STOCK: "stock", _OURS: "otel-sched"}
_COLORS = {_STOCK: "#c2662d", _OURS: "#2f6db5"}
_SIGNAL_TITLES = {"spans": "Spans", "logs": "Logs"}
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


def _fmt(value: float | None, unit: str) -> str:
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


def _get(run: dict[str, Any] | None, *path: str) -> Any:
    node: Any = run
    for key in path:
        if not isinstance(node, dict):
            return None
        node = node.get(key)
    return node


def _tenant_rows(result: dict[str, Any], signal: str, section: str) -> list[Row]:
    stock, ours = result["runs"].get(_STOCK), result["runs"].get(_OURS)
    noisy = result.get("noisy_tenant")
    tenants: list[str] = list(result.get("tenants") or [])
    rows: list[Row] = []

    def pct(run: dict[str, Any] | None, tenant: str) -> float | None:
        value = _get(run, "signals", signal, "by_tenant", tenant, "delivered_pct")
        return None if value is None else float(value)

    quiet = [t for t in tenants if t != noisy]
    if noisy is not None and noisy in tenants:
        label = f"{noisy} (noisy)" if quiet else noisy
        rows.append(Row(section, label, pct(stock, noisy), pct(ours, noisy), "%"))
    if len(tenants) <= _MAX_TENANT_ROWS:
        rows.extend(Row(section, t, pct(stock, t), pct(ours, t), "%") for t in quiet)
        return rows

    def aggregate(run: dict[str, Any] | None) -> tuple[float | None, float | None]:
        by_tenant = _get(run, "signals", signal, "by_tenant") or {}
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
    stock, ours = runs.get(_STOCK), runs.get(_OURS)
    rows: list[Row] = []
    for signal in ("spans", "logs"):
        section = _SIGNAL_TITLES[signal]

        def value(run: dict[str, Any] | None, *path: str, signal: str = signal) -> float | None:
            v = _get(run, "signals", signal, *path)
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
            for reason in _get(run, "signals", signal, "drops") or {}:
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
        v = _get(run, key)
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
    is_stock = run.get("pipeline") == _STOCK
    if is_stock != (reason == _STOCK_LOSS):
        return None  # the stock processors only have offered - delivered; ours never report that
    drops = _get(run, "signals", signal, "drops") or {}
    return float(drops.get(reason, 0))


def _scenario_line(result: dict[str, Any]) -> str:
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
                f"the demo was interrupted in the {_LABELS.get(kind, kind)} run ({step}, "
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
    lines.append(f"otel-sched demo: {_scenario_line(result)}")
    lines.append("")
    lines.append(header)
    section = None
    for row in rows:
        if row.section != section:
            section = row.section
            lines.append(section)
        stock, ours = _fmt(row.stock, row.unit), _fmt(row.ours, row.unit)
        lines.append(f"  {row.label:{width - 2}}{stock:>14}{ours:>14}   {row.change}")
    notes = [n for run in result["runs"].values() for n in run.get("notes", [])]
    if any(_get(run, "generator_skipped") for run in result["runs"].values()):
        notes.append(
            "the generator fell behind its rate (generator_skipped in --json); offered counts what it made"
        )
    for note in notes:
        lines.append(f"note: {note}")
    return "\n".join(lines)


# -- SVG charts -------------------------------------------------------------------------------------

_FONT = "font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif"


def _esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def _nice_max(value: float) -> float:
    if value <= 0 or not math.isfinite(value):
        return 1.0
    exp = 10 ** math.floor(math.log10(value))
    for step in (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10):
        if value <= step * exp:
            return float(step * exp)
    return float(10 * exp)


def _legend(series: Sequence[tuple[str, str]], right: float, y: float, dashed: Sequence[str] = ()) -> str:
    """Swatches right-aligned to ``right``; a dashed series gets a dashed line for a swatch."""
    parts = []
    step = 140 if len(series) > 2 else 110
    for i, (name, color) in enumerate(series):
        dx = right - (len(series) - i) * step
        if name in dashed:
            parts.append(
                f'<line x1="{dx:.0f}" y1="{y - 3:.0f}" x2="{dx + 14:.0f}" y2="{y - 3:.0f}" stroke="{color}" '
                f'stroke-width="2" stroke-dasharray="4 2"/>'
            )
        else:
            parts.append(f'<rect x="{dx:.0f}" y="{y - 9:.0f}" width="12" height="12" fill="{color}" rx="2"/>')
        parts.append(f'<text x="{dx + 17:.0f}" y="{y + 1:.0f}" font-size="12">{_esc(name)}</text>')
    return "".join(parts)


def bar_chart(
    title: str,
    categories: Sequence[str],
    series: Sequence[tuple[str, str, Sequence[float | None]]],
    *,
    y_max: float = 100.0,
    unit: str = "%",
) -> str:
    """Grouped bars: one group per category, one bar per series (name, colour, values)."""
    width, height = 640, 290
    left, right, top, bottom = 52, 16, 48, 44
    plot_w, plot_h = width - left - right, height - top - bottom
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" aria-label="{_esc(title)}" style="{_FONT}">',
        f'<text x="{left}" y="20" font-size="15" font-weight="600">{_esc(title)}</text>',
        _legend([(name, color) for name, color, _ in series], width - right, 20),
    ]
    for i in range(5):
        tick = y_max * i / 4
        y = top + plot_h - plot_h * i / 4
        out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" stroke="#e3e3e3"/>')
        out.append(
            f'<text x="{left - 6}" y="{y + 4:.1f}" font-size="11" '
            f'text-anchor="end">{tick:g}{_esc(unit)}</text>'
        )
    n = max(len(categories), 1)
    group_w = plot_w / n
    bar_w = min(36.0, group_w * 0.8 / max(len(series), 1))
    for ci, category in enumerate(categories):
        gx = left + ci * group_w + (group_w - bar_w * len(series)) / 2
        for si, (name, color, values) in enumerate(series):
            v = values[ci] if ci < len(values) else None
            x = gx + si * bar_w
            if v is None:
                out.append(
                    f'<text x="{x + bar_w / 2:.1f}" y="{top + plot_h - 4:.1f}" font-size="10" '
                    f'text-anchor="middle" fill="#888">n/a</text>'
                )
                continue
            h = plot_h * max(min(v, y_max), 0.0) / y_max
            y = top + plot_h - h
            out.append(
                f'<rect x="{x + 1:.1f}" y="{y:.1f}" width="{bar_w - 2:.1f}" height="{h:.1f}" fill="{color}">'
                f"<title>{_esc(name)} {_esc(category)}: {v:.1f}{_esc(unit)}</title></rect>"
            )
            out.append(
                f'<text x="{x + bar_w / 2:.1f}" y="{y - 3:.1f}" font-size="10" '
                f'text-anchor="middle">{v:.0f}</text>'
            )
        label_y = top + plot_h + 16
        out.append(
            f'<text x="{left + ci * group_w + group_w / 2:.1f}" y="{label_y}" font-size="11" '
            f'text-anchor="middle">{_esc(category)}</text>'
        )
    out.append(
        f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="#555"/>'
    )
    out.append("</svg>")
    return "".join(out)


def line_chart(
    title: str,
    series: Sequence[tuple[str, str, Sequence[tuple[float, float]]]],
    *,
    y_label: str,
    marker_x: float | None = None,
    marker_label: str = "",
    dashed: Sequence[str] = (),
) -> str:
    """Lines over time: series of (name, colour, [(t seconds, value)]); series named in ``dashed`` dashed."""
    width, height = 640, 270
    # Three or more series do not fit beside the title: their legend gets a line of its own.
    wide_legend = len(series) > 2
    left, right, top, bottom = 64, 16, 52 if wide_legend else 40, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    xs = [t for _, _, pts in series for t, _ in pts]
    ys = [v for _, _, pts in series for _, v in pts]
    x_max = _nice_max(max([*xs, marker_x or 0.0], default=1.0))
    y_max = _nice_max(max(ys, default=1.0))
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" aria-label="{_esc(title)}" style="{_FONT}">',
        f'<text x="{left}" y="20" font-size="15" font-weight="600">{_esc(title)}</text>',
        _legend(
            [(name, color) for name, color, _ in series], width - right, 38 if wide_legend else 20, dashed
        ),
    ]
    for i in range(5):
        y = top + plot_h - plot_h * i / 4
        v = y_max * i / 4
        out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" stroke="#e3e3e3"/>')
        out.append(f'<text x="{left - 6}" y="{y + 4:.1f}" font-size="11" text-anchor="end">{v:,.0f}</text>')
    for i in range(6):
        x = left + plot_w * i / 5
        out.append(
            f'<text x="{x:.1f}" y="{top + plot_h + 16}" font-size="11" '
            f'text-anchor="middle">{x_max * i / 5:g} s</text>'
        )
    out.append(
        f'<text x="14" y="{top + plot_h / 2:.0f}" font-size="11" text-anchor="middle" '
        f'transform="rotate(-90 14 {top + plot_h / 2:.0f})">{_esc(y_label)}</text>'
    )
    if marker_x is not None:
        mx = left + plot_w * marker_x / x_max
        out.append(
            f'<line x1="{mx:.1f}" y1="{top}" x2="{mx:.1f}" y2="{top + plot_h}" '
            f'stroke="#999" stroke-dasharray="4 3"/>'
            f'<text x="{mx - 4:.1f}" y="{top + 12}" font-size="10" text-anchor="end" fill="#666">'
            f"{_esc(marker_label)}</text>"
        )
    for name, color, points in series:
        if not points:
            continue
        coords = " ".join(
            f"{left + plot_w * t / x_max:.1f},{top + plot_h - plot_h * min(v, y_max) / y_max:.1f}"
            for t, v in points
        )
        dash = ' stroke-dasharray="5 3"' if name in dashed else ""
        out.append(
            f'<polyline points="{coords}" fill="none" stroke="{color}"{dash} '
            f'stroke-width="2" stroke-linejoin="round">'
            f"<title>{_esc(name)}</title></polyline>"
        )
    out.append(
        f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="#555"/>'
    )
    out.append("</svg>")
    return "".join(out)


def _throughput(
    timeline: Sequence[dict[str, Any]], key: str, window_s: float = 1.0
) -> list[tuple[float, float]]:
    """Items/s over a trailing window: exports land in batches, so per-sample deltas show only batching."""
    out = []
    j = 0
    for i, cur in enumerate(timeline):
        while j < i and cur["t"] - timeline[j + 1]["t"] >= window_s:
            j += 1
        prev = timeline[j]
        dt = cur["t"] - prev["t"]
        if i and dt > 0:
            out.append((cur["t"], max(cur[key] - prev[key], 0) / dt))
    return out


def _charts(result: dict[str, Any]) -> list[str]:
    runs = result["runs"]
    present = [k for k in (_STOCK, _OURS) if k in runs]
    tenants = list(result.get("tenants") or [])
    noisy = result.get("noisy_tenant")
    charts = []
    shown = tenants[:12]  # more bars than that are unreadable; the table has the aggregates
    for signal in ("spans", "logs"):
        cats = [f"{t} (noisy)" if t == noisy and len(tenants) > 1 else t for t in shown]
        charts.append(
            bar_chart(
                f"{_SIGNAL_TITLES[signal]} delivered by tenant",
                cats,
                [
                    (
                        _LABELS[k],
                        _COLORS[k],
                        [_get(runs[k], "signals", signal, "by_tenant", t, "delivered_pct") for t in shown],
                    )
                    for k in present
                ],
            )
        )
    cats = ["spans ERROR", "spans normal", "logs ERROR", "logs normal"]
    keys = [("spans", "high"), ("spans", "normal"), ("logs", "high"), ("logs", "normal")]
    charts.append(
        bar_chart(
            "Delivered by priority",
            cats,
            [
                (
                    _LABELS[k],
                    _COLORS[k],
                    [_get(runs[k], "signals", s, "by_priority", p, "delivered_pct") for s, p in keys],
                )
                for k in present
            ],
        )
    )
    priority = charts.pop()
    # Two columns: spans on the left, logs on the right, row by row; priority (both signals) last.
    duration = float(result["config"]["duration_s"])
    waiting_charts = []
    rate_charts = []
    for signal in ("spans", "logs"):
        waiting = []
        for k in present:
            pts = [
                (p["t"], float(p[f"waiting_{signal}"]))
                for p in runs[k]["timeline"]
                if p.get(f"waiting_{signal}") is not None
            ]
            waiting.append((_LABELS[k], _COLORS[k], pts))
        if _OURS in present:
            in_flight = [
                (p["t"], float(p[f"in_flight_{signal}"]))
                for p in runs[_OURS]["timeline"]
                if p.get(f"in_flight_{signal}") is not None
            ]
            if in_flight:
                waiting.append((f"{_LABELS[_OURS]} in flight", _COLORS[_OURS], in_flight))
        waiting_charts.append(
            line_chart(
                f"{_SIGNAL_TITLES[signal]} waiting (queue depth)",
                waiting,
                y_label="items",
                marker_x=duration,
                marker_label="load ends",
                dashed=(f"{_LABELS[_OURS]} in flight",),
            )
        )
        rate_charts.append(
            line_chart(
                f"{_SIGNAL_TITLES[signal]} delivered per second",
                [
                    (_LABELS[k], _COLORS[k], _throughput(runs[k]["timeline"], f"delivered_{signal}"))
                    for k in present
                ],
                y_label=f"{signal}/s",
                marker_x=duration,
                marker_label="load ends",
            )
        )
    return [*charts, *waiting_charts, *rate_charts, priority]


# -- the HTML page ----------------------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:24px auto;max-width:1420px;
color:#1d1d1f;padding:0 16px;line-height:1.4}
h1{font-size:24px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 8px}
.sub{color:#555;margin:0 0 16px}
.partial{background:#fff3cd;border:1px solid #e0c36a;padding:8px 12px;border-radius:6px;margin:12px 0}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(560px,1fr));gap:16px}
.card{border:1px solid #e2e2e2;border-radius:8px;padding:8px;background:#fff}
.card svg{width:100%;height:auto;display:block}
.heads{display:flex;flex-wrap:wrap;gap:12px;margin:8px 0 4px}
.head{border:1px solid #e2e2e2;border-radius:8px;padding:10px 14px;min-width:200px}
.head .k{font-size:13px;color:#555}.head .v{font-size:20px;font-weight:600}
.head .stock{color:#c2662d}.head .ours{color:#2f6db5}
table{border-collapse:collapse;font-size:14px}
th,td{padding:4px 12px;border-bottom:1px solid #eee;text-align:right;white-space:nowrap}
th:first-child,td:first-child{text-align:left}
tr.section td{font-weight:600;background:#f5f6f8;text-align:left}
td.better{color:#1a7f37}td.worse{color:#b42318}
dl.params{display:grid;grid-template-columns:max-content auto;gap:2px 16px;font-size:14px;margin:0}
dl.params dt{color:#555}dl.params dd{margin:0}
.notes{font-size:13px;color:#555}
"""

# Rows where a higher value is better; every other compared row is better lower.
_HIGHER_IS_BETTER = ("%",)


def _change_class(row: Row) -> str:
    if row.stock is None or row.ours is None or row.unit in ("count", "drops") or row.ours == row.stock:
        return ""
    higher = row.ours > row.stock
    good = higher if row.unit in _HIGHER_IS_BETTER else not higher
    return "better" if good else "worse"


def _table_html(rows: Iterable[Row]) -> str:
    out = [
        '<table class="comparison"><thead><tr><th></th><th>stock</th><th>otel-sched</th>'
        "<th>change</th></tr></thead><tbody>"
    ]
    section = None
    for row in rows:
        if row.section != section:
            section = row.section
            out.append(f'<tr class="section"><td colspan="4">{_esc(section)}</td></tr>')
        cls = _change_class(row)
        out.append(
            f"<tr><td>{_esc(row.label)}</td>"
            f'<td data-pipeline="stock">{_esc(_fmt(row.stock, row.unit))}</td>'
            f'<td data-pipeline="otel_sched">{_esc(_fmt(row.ours, row.unit))}</td>'
            f'<td class="{cls}">{_esc(row.change)}</td></tr>'
        )
    out.append("</tbody></table>")
    return "".join(out)


def _params_html(result: dict[str, Any]) -> str:
    c = result["config"]
    m = result["machine"]
    items = [
        ("duration per pipeline", f"{c['duration_s']:g} s"),
        (
            "offered load",
            f"{c['span_rate']:,.0f} spans/s + {c['log_rate']:,.0f} logs/s from {c['producers']} threads",
        ),
        (
            "tenants",
            f"{c['tenants']} (attribute {result.get('tenant_key')}); {result.get('noisy_tenant')} sends "
            f"{c['noisy_share'] * 100:.0f} %"
            if c["tenants"] > 1
            else f"{c['tenants']}",
        ),
        ("errors", f"{c['error_share'] * 100:.1f} % of spans (status ERROR) and of logs (severity ERROR)"),
        (
            "collector",
            f"embedded OTLP/HTTP receiver, {c['latency_ms']:g} ms latency, serving "
            f"{c.get('collector_concurrency', '?')} request(s) at a time, "
            f"{c['failure_rate'] * 100:.0f} % of requests refused",
        ),
        ("otel-sched policy", c["policy"]),
        ("seed", c["seed"]),
        ("machine", f"{m.get('cpu_count')} CPUs, {m.get('platform')}"),
        ("python", f"{m.get('python_implementation')} {m.get('python')}"),
        (
            "versions",
            f"opentelemetry-sdk {m.get('opentelemetry_sdk')}, exporter-otlp-proto-http "
            f"{m.get('opentelemetry_exporter_otlp_proto_http')}, otel-sched {m.get('otel_sched')}",
        ),
        ("date", result.get("date")),
    ]
    return (
        '<dl class="params">' + "".join(f"<dt>{_esc(k)}</dt><dd>{_esc(v)}</dd>" for k, v in items) + "</dl>"
    )


def _worst_quiet(result: dict[str, Any], run: dict[str, Any] | None, signal: str) -> float | None:
    noisy = result.get("noisy_tenant")
    by_tenant = _get(run, "signals", signal, "by_tenant") or {}
    shares = [
        row["delivered_pct"]
        for tenant, row in by_tenant.items()
        if tenant != noisy and row.get("delivered_pct") is not None
    ]
    return min(shares) if shares else None


def _headlines_html(result: dict[str, Any]) -> str:
    runs = result["runs"]
    stock, ours = runs.get(_STOCK), runs.get(_OURS)
    heads: list[tuple[str, float | None, float | None]] = [
        (
            "ERROR spans delivered",
            _get(stock, "signals", "spans", "by_priority", "high", "delivered_pct"),
            _get(ours, "signals", "spans", "by_priority", "high", "delivered_pct"),
        ),
        (
            "ERROR logs delivered",
            _get(stock, "signals", "logs", "by_priority", "high", "delivered_pct"),
            _get(ours, "signals", "logs", "by_priority", "high", "delivered_pct"),
        ),
    ]
    if len(result.get("tenants") or []) > 1:
        heads.append(
            (
                "worst quiet tenant, spans",
                _worst_quiet(result, stock, "spans"),
                _worst_quiet(result, ours, "spans"),
            )
        )
        heads.append(
            (
                "worst quiet tenant, logs",
                _worst_quiet(result, stock, "logs"),
                _worst_quiet(result, ours, "logs"),
            )
        )
    heads.append(
        (
            "all spans delivered",
            _get(stock, "signals", "spans", "delivered_pct"),
            _get(ours, "signals", "spans", "delivered_pct"),
        )
    )
    heads.append(
        (
            "all logs delivered",
            _get(stock, "signals", "logs", "delivered_pct"),
            _get(ours, "signals", "logs", "delivered_pct"),
        )
    )
    cards = "".join(
        f'<div class="head"><div class="k">{_esc(label)}</div><div class="v">'
        f'<span class="stock">{_esc(_fmt(s, "%"))}</span> &rarr; '
        f'<span class="ours">{_esc(_fmt(o, "%"))}</span>'
        f"</div></div>"
        for label, s, o in heads
    )
    return (
        '<div class="heads">' + cards + "</div>"
        '<p class="sub">Each card: <span style="color:#c2662d">stock</span> &rarr; '
        '<span style="color:#2f6db5">otel-sched</span>, same scenario, same process.</p>'
    )


def render_html(result: dict[str, Any]) -> str:
    """A complete, self-contained HTML page."""
    title = result.get("title") or "otel-sched demo"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_esc(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_esc(title)}</h1>",
        f'<p class="sub">{_esc(_scenario_line(result))}</p>',
    ]
    if result.get("partial"):
        parts.append(
            '<div class="partial">Partial results: the demo was interrupted before both runs finished.</div>'
        )
    parts.append(_headlines_html(result))
    parts.append("<h2>Delivery and queues</h2>")
    parts.append(
        '<div class="grid">' + "".join(f'<div class="card">{c}</div>' for c in _charts(result)) + "</div>"
    )
    parts.append("<h2>Side by side</h2>")
    parts.append(_table_html(table_rows(result)))
    parts.append("<h2>Scenario and machine</h2>")
    parts.append(_params_html(result))
    notes = [n for run in result["runs"].values() for n in run.get("notes", [])]
    notes.append(
        "Delivery is counted at the receiver. The stock processors expose no drop counters: their loss is "
        "offered minus delivered. Latency is from the span's end (log timestamp) to its receipt, collector "
        "latency included. CPU of the embedded receiver (decoding what it receives) is shown apart."
    )
    for warning in result.get("warnings") or []:
        notes.append(f"{warning['count']} x {warning['logger']}: {warning['message']}")
    parts.append(
        '<div class="notes"><h2>Notes</h2><ul>'
        + "".join(f"<li>{_esc(n)}</li>" for n in notes)
        + "</ul></div>"
    )
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_html(result: dict[str, Any], path: str | Path) -> Path:
    target = Path(path)
    target.write_text(render_html(result), encoding="utf-8")
    return target
