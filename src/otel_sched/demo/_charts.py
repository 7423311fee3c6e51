"""The demo report's charts: inline SVG (bars, lines) drawn from the dict ``run_demo`` returns.

No script, no font, nothing fetched: each chart is a self-contained ``<svg>`` string that
:mod:`._report_html` places on the page.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from typing import Any

from ._report import COLORS, LABELS, OURS, SIGNAL_TITLES, STOCK, get

__all__ = ["bar_chart", "charts", "esc", "line_chart"]


_FONT = "font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif"


def esc(text: object) -> str:
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
        parts.append(f'<text x="{dx + 17:.0f}" y="{y + 1:.0f}" font-size="12">{esc(name)}</text>')
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
        f'width="{width}" height="{height}" role="img" aria-label="{esc(title)}" style="{_FONT}">',
        f'<text x="{left}" y="20" font-size="15" font-weight="600">{esc(title)}</text>',
        _legend([(name, color) for name, color, _ in series], width - right, 20),
    ]
    for i in range(5):
        tick = y_max * i / 4
        y = top + plot_h - plot_h * i / 4
        out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" stroke="#e3e3e3"/>')
        out.append(
            f'<text x="{left - 6}" y="{y + 4:.1f}" font-size="11" '
            f'text-anchor="end">{tick:g}{esc(unit)}</text>'
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
                f"<title>{esc(name)} {esc(category)}: {v:.1f}{esc(unit)}</title></rect>"
            )
            out.append(
                f'<text x="{x + bar_w / 2:.1f}" y="{y - 3:.1f}" font-size="10" '
                f'text-anchor="middle">{v:.0f}</text>'
            )
        label_y = top + plot_h + 16
        out.append(
            f'<text x="{left + ci * group_w + group_w / 2:.1f}" y="{label_y}" font-size="11" '
            f'text-anchor="middle">{esc(category)}</text>'
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
        f'width="{width}" height="{height}" role="img" aria-label="{esc(title)}" style="{_FONT}">',
        f'<text x="{left}" y="20" font-size="15" font-weight="600">{esc(title)}</text>',
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
        f'transform="rotate(-90 14 {top + plot_h / 2:.0f})">{esc(y_label)}</text>'
    )
    if marker_x is not None:
        mx = left + plot_w * marker_x / x_max
        out.append(
            f'<line x1="{mx:.1f}" y1="{top}" x2="{mx:.1f}" y2="{top + plot_h}" '
            f'stroke="#999" stroke-dasharray="4 3"/>'
            f'<text x="{mx - 4:.1f}" y="{top + 12}" font-size="10" text-anchor="end" fill="#666">'
            f"{esc(marker_label)}</text>"
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
            f"<title>{esc(name)}</title></polyline>"
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


def charts(result: dict[str, Any]) -> list[str]:
    runs = result["runs"]
    present = [k for k in (STOCK, OURS) if k in runs]
    tenants = list(result.get("tenants") or [])
    noisy = result.get("noisy_tenant")
    charts = []
    shown = tenants[:12]  # more bars than that are unreadable; the table has the aggregates
    for signal in ("spans", "logs"):
        cats = [f"{t} (noisy)" if t == noisy and len(tenants) > 1 else t for t in shown]
        charts.append(
            bar_chart(
                f"{SIGNAL_TITLES[signal]} delivered by tenant",
                cats,
                [
                    (
                        LABELS[k],
                        COLORS[k],
                        [get(runs[k], "signals", signal, "by_tenant", t, "delivered_pct") for t in shown],
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
                    LABELS[k],
                    COLORS[k],
                    [get(runs[k], "signals", s, "by_priority", p, "delivered_pct") for s, p in keys],
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
            waiting.append((LABELS[k], COLORS[k], pts))
        if OURS in present:
            in_flight = [
                (p["t"], float(p[f"in_flight_{signal}"]))
                for p in runs[OURS]["timeline"]
                if p.get(f"in_flight_{signal}") is not None
            ]
            if in_flight:
                waiting.append((f"{LABELS[OURS]} in flight", COLORS[OURS], in_flight))
        waiting_charts.append(
            line_chart(
                f"{SIGNAL_TITLES[signal]} waiting (queue depth)",
                waiting,
                y_label="items",
                marker_x=duration,
                marker_label="load ends",
                dashed=(f"{LABELS[OURS]} in flight",),
            )
        )
        rate_charts.append(
            line_chart(
                f"{SIGNAL_TITLES[signal]} delivered per second",
                [
                    (LABELS[k], COLORS[k], _throughput(runs[k]["timeline"], f"delivered_{signal}"))
                    for k in present
                ],
                y_label=f"{signal}/s",
                marker_x=duration,
                marker_label="load ends",
            )
        )
    return [*charts, *waiting_charts, *rate_charts, priority]
