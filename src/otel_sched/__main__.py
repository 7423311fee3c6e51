"""``python -m otel_sched demo ...``: the same as the ``otel-sched`` command."""

from __future__ import annotations

import sys

from .demo._cli import main

if __name__ == "__main__":
    sys.exit(main())
