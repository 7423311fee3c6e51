"""The demo's self-contained HTML report: headlines, charts, the comparison table, the parameters.

Inline CSS and the inline SVG charts of :mod:`._charts` only: no script, no font, no image or
stylesheet fetched from anywhere.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ._charts import charts, esc
from ._report import OURS, STOCK, Row, fmt, get, scenario_line, table_rows

__all__ = ["render_html", "write_html"]

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
            out.append(f'<tr class="section"><td colspan="4">{esc(section)}</td></tr>')
        cls = _change_class(row)
        out.append(
            f"<tr><td>{esc(row.label)}</td>"
            f'<td data-pipeline="stock">{esc(fmt(row.stock, row.unit))}</td>'
            f'<td data-pipeline="otel_sched">{esc(fmt(row.ours, row.unit))}</td>'
            f'<td class="{cls}">{esc(row.change)}</td></tr>'
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
    return '<dl class="params">' + "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in items) + "</dl>"


def _worst_quiet(result: dict[str, Any], run: dict[str, Any] | None, signal: str) -> float | None:
    noisy = result.get("noisy_tenant")
    by_tenant = get(run, "signals", signal, "by_tenant") or {}
    shares = [
        row["delivered_pct"]
        for tenant, row in by_tenant.items()
        if tenant != noisy and row.get("delivered_pct") is not None
    ]
    return min(shares) if shares else None


def _headlines_html(result: dict[str, Any]) -> str:
    runs = result["runs"]
    stock, ours = runs.get(STOCK), runs.get(OURS)
    heads: list[tuple[str, float | None, float | None]] = [
        (
            "ERROR spans delivered",
            get(stock, "signals", "spans", "by_priority", "high", "delivered_pct"),
            get(ours, "signals", "spans", "by_priority", "high", "delivered_pct"),
        ),
        (
            "ERROR logs delivered",
            get(stock, "signals", "logs", "by_priority", "high", "delivered_pct"),
            get(ours, "signals", "logs", "by_priority", "high", "delivered_pct"),
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
            get(stock, "signals", "spans", "delivered_pct"),
            get(ours, "signals", "spans", "delivered_pct"),
        )
    )
    heads.append(
        (
            "all logs delivered",
            get(stock, "signals", "logs", "delivered_pct"),
            get(ours, "signals", "logs", "delivered_pct"),
        )
    )
    cards = "".join(
        f'<div class="head"><div class="k">{esc(label)}</div><div class="v">'
        f'<span class="stock">{esc(fmt(s, "%"))}</span> &rarr; '
        f'<span class="ours">{esc(fmt(o, "%"))}</span>'
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
        f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{esc(title)}</h1>",
        f'<p class="sub">{esc(scenario_line(result))}</p>',
    ]
    if result.get("partial"):
        parts.append(
            '<div class="partial">Partial results: the demo was interrupted before both runs finished.</div>'
        )
    parts.append(_headlines_html(result))
    parts.append("<h2>Delivery and queues</h2>")
    parts.append(
        '<div class="grid">' + "".join(f'<div class="card">{c}</div>' for c in charts(result)) + "</div>"
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
        '<div class="notes"><h2>Notes</h2><ul>' + "".join(f"<li>{esc(n)}</li>" for n in notes) + "</ul></div>"
    )
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_html(result: dict[str, Any], path: str | Path) -> Path:
    target = Path(path)
    target.write_text(render_html(result), encoding="utf-8")
    return target
