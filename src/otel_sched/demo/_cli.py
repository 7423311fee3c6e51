"""The ``otel-sched`` command.  One subcommand so far: ``demo``."""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from .._option_parsers import POLICY_NAMES

__all__ = ["build_parser", "main"]

# Mirrors DemoConfig's defaults (importing _demo here would load the SDK just to print --help).
_DEFAULTS: dict[str, Any] = {
    "duration": 15.0,
    "rate": 5000.0,
    "log_rate": 4000.0,
    "latency_ms": 300.0,
    "failure_rate": 0.0,
    "collector_concurrency": 4,
    "tenants": 5,
    "noisy_share": 0.7,
    "error_share": 0.05,
    "policy": "priority_fair",
    "seed": 1,
    "warmup": 2.0,
}


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def _positive(text: str) -> float:
    value = _number(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _non_negative(text: str) -> float:
    value = _number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _share(text: str) -> float:
    value = _number(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be within 0..1, got {text}")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return value


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None


def _output(text: str) -> Path:
    path = Path(text)
    if not path.parent.is_dir():
        raise argparse.ArgumentTypeError(f"directory {path.parent} does not exist")
    return path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="otel-sched",
        description="otel-sched: a scheduled export pipeline for the OpenTelemetry Python SDK.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    d = _DEFAULTS
    demo = commands.add_parser(
        "demo",
        help="run one overload scenario with the stock processors and with otel-sched, side by side",
        description=(
            "Run one realistic overload scenario twice in this process -- with the SDK's "
            "BatchSpanProcessor/BatchLogRecordProcessor, then with otel-sched -- through the real "
            "OTLP/HTTP exporters to an embedded collector on 127.0.0.1, and print a side-by-side table."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    demo.add_argument(
        "--duration", type=_positive, default=d["duration"], metavar="SECONDS", help="load time per pipeline"
    )
    demo.add_argument(
        "--rate",
        type=_non_negative,
        default=d["rate"],
        metavar="SPANS_PER_S",
        help="offered spans per second",
    )
    demo.add_argument(
        "--log-rate",
        type=_non_negative,
        default=d["log_rate"],
        metavar="LOGS_PER_S",
        help="offered log records per second",
    )
    demo.add_argument(
        "--latency-ms",
        type=_non_negative,
        default=d["latency_ms"],
        metavar="MS",
        help="collector round trip added per request",
    )
    demo.add_argument(
        "--failure-rate",
        type=_share,
        default=d["failure_rate"],
        metavar="0..1",
        help="share of requests the collector refuses (503)",
    )
    demo.add_argument(
        "--collector-concurrency",
        type=_count,
        default=d["collector_concurrency"],
        metavar="N",
        help="requests the collector serves at once; 1 makes it the ceiling for both pipelines",
    )
    demo.add_argument(
        "--tenants",
        type=_count,
        default=d["tenants"],
        metavar="N",
        help="number of tenants (attribute tenant.id)",
    )
    demo.add_argument(
        "--noisy-share",
        type=_share,
        default=d["noisy_share"],
        metavar="0..1",
        help="share of the items sent by the noisy tenant",
    )
    demo.add_argument(
        "--error-share",
        type=_share,
        default=d["error_share"],
        metavar="0..1",
        help="share of ERROR spans and ERROR logs",
    )
    demo.add_argument(
        "--policy", choices=POLICY_NAMES, default=d["policy"], help="otel-sched scheduling policy"
    )
    demo.add_argument("--report", type=_output, metavar="FILE.html", help="write a self-contained HTML page")
    demo.add_argument("--json", type=_output, metavar="FILE", help="write every number as JSON")
    demo.add_argument(
        "--seed",
        type=_int,
        default=d["seed"],
        help="random seed of the generator and the collector's failures",
    )
    demo.add_argument(
        "--warmup",
        type=_non_negative,
        default=d["warmup"],
        metavar="SECONDS",
        help="unmeasured run per pipeline first, so neither measured run pays one-time costs",
    )
    demo.add_argument("--quiet", action="store_true", help="no progress line on stderr")
    return parser


class ProgressPrinter:
    """One live line on a terminal (~4 updates/s); a plain line every few seconds otherwise."""

    def __init__(self, stream: TextIO, *, live: bool | None = None, every_s: float = 5.0) -> None:
        self._stream = stream
        self._live = stream.isatty() if live is None else live
        self._every = every_s
        self._last_print = -math.inf
        self._last_phase: tuple[str, str] | None = None
        self._dirty = False

    def __call__(self, p: Any) -> None:
        from ._demo import PIPELINE_LABELS

        pct = f" ({100.0 * p.delivered / p.offered:.1f} %)" if p.offered else ""
        clock = (
            f"{min(p.elapsed_s, p.duration_s):4.1f}/{p.duration_s:g} s"
            if p.step == "load"
            else f"{p.elapsed_s:4.1f} s"
        )
        line = (
            f"[{p.run_index}/{p.runs} {PIPELINE_LABELS.get(p.pipeline, p.pipeline)}] {p.step} {clock}  "
            f"offered {p.offered:,}  delivered {p.delivered:,}{pct}"
        )
        if p.step == "warm-up":
            line = f"warm-up, not measured: {PIPELINE_LABELS.get(p.pipeline, p.pipeline)}"
        now = time.monotonic()
        phase = (p.pipeline, p.step)
        if self._live:
            self._stream.write("\r\x1b[K" + line)
            self._dirty = True
        elif phase != self._last_phase or now - self._last_print >= self._every:
            self._stream.write(line + "\n")
            self._last_print = now
        self._last_phase = phase
        self._stream.flush()

    def finish(self) -> None:
        if self._live and self._dirty:
            self._stream.write("\r\x1b[K")
            self._stream.flush()
            self._dirty = False


def _demo(args: argparse.Namespace) -> int:
    from ._demo import run_demo
    from ._report import format_table
    from ._report_html import write_html
    from ._scenario import DemoConfig

    config = DemoConfig(
        duration_s=args.duration,
        span_rate=args.rate,
        log_rate=args.log_rate,
        latency_ms=args.latency_ms,
        failure_rate=args.failure_rate,
        collector_concurrency=args.collector_concurrency,
        tenants=args.tenants,
        noisy_share=args.noisy_share,
        error_share=args.error_share,
        policy=args.policy,
        seed=args.seed,
        warmup_s=args.warmup,
    )
    printer = None if args.quiet else ProgressPrinter(sys.stderr)
    if printer is not None:
        sys.stderr.write(
            f"otel-sched demo: stock, then otel-sched, {config.duration_s:g} s each "
            f"(Ctrl-C stops and prints what there is)\n"
        )
    try:
        result = run_demo(config, progress=printer)
    except KeyboardInterrupt:  # outside a run (between runs or while starting one): nothing to show
        if printer is not None:
            printer.finish()
        sys.stderr.write("interrupted\n")
        return 130
    finally:
        if printer is not None:
            printer.finish()
    print(format_table(result))
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")
    if args.report is not None:
        write_html(result, args.report)
        print(f"wrote {args.report}")
    return 130 if result["partial"] else 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "demo":
        return _demo(args)
    parser.error(f"unknown command {args.command!r}")  # argparse exits; kept for completeness
    return 2
