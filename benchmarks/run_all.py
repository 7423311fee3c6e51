"""Run every side-by-side benchmark, one process each, and list where their JSON went.

    python benchmarks/run_all.py [--quick] [--only NAME ...]

Each benchmark runs in its own Python process (``python benchmarks/bench_X.py``), so
one benchmark's threads and heap never weigh on the next one's figures.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHMARKS = [
    "on_end",
    "cpu_per_span",
    "throughput_latency",
    "overload_fairness",
    "memory",
    "decision_cost",
    "endpoints",
    "encode",
    "durability",
    "resources",
    "exit",
    "memory_budget",
    "full_speed",
    "tenant_cardinality",
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="pass --quick to every benchmark")
    parser.add_argument("--only", nargs="+", choices=BENCHMARKS, metavar="NAME", help="run only these")
    args = parser.parse_args(argv)
    failed: list[str] = []
    timings: list[tuple[str, float, int]] = []
    for name in args.only or BENCHMARKS:
        command = [sys.executable, str(HERE / f"bench_{name}.py")]
        if args.quick:
            command.append("--quick")
        print(f"\n$ {' '.join(command)}", flush=True)
        started = time.monotonic()
        code = subprocess.call(command)
        timings.append((name, time.monotonic() - started, code))
        if code != 0:
            failed.append(name)
    print("\nsummary")
    for name, seconds, code in timings:
        status = "ok" if code == 0 else f"exit {code}"
        print(f"  bench_{name + '.py':24} {seconds:6.1f} s  {status}  -> benchmarks/results/{name}.json")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
