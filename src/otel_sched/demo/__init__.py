"""``otel-sched demo``: the scenario, the embedded OTLP receiver, the report and the command line.

Owns: the demo run with the stock processors and ours (``_demo``), its scenario and producers
(``_scenario``) and what it measures (``_measure``); the embedded OTLP receiver, also the test
suite's collector (``_receiver``: lifecycle and faults; ``_received``: decoded items and
counters; ``_receiver_transports``: HTTP and gRPC); the side-by-side report (``_report``: the
table; ``_charts``: SVG charts; ``_report_html``: the HTML page) and the ``otel-sched`` command
(``_cli``).

Never imported by ``import otel_sched`` or by anything on the export path (tested); it may
import everything else.
"""
