"""``otel-sched demo``: the scenario, the embedded OTLP receiver, the report and the command line.

Owns: the demo scenario run with the stock processors and ours (``_demo``), the embedded OTLP
receiver (HTTP and gRPC, also the test suite's collector; ``_receiver``), the side-by-side
report (``_report``) and the ``otel-sched`` command (``_cli``).

Never imported by ``import otel_sched`` or by anything on the export path (tested); it may
import everything else.
"""
