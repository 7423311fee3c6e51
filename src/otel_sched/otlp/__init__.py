"""OTLP on the wire: encoding items once, assembling requests, and sending them.

Owns: the Python encoder and its compiled twin (``_encoding``, ``_speedups.c``), the senders that
deliver pre-encoded request bytes over HTTP and gRPC (``_otlp_sender``), and the one place that
knows the stock OTLP exporters' internals and where more exporter instances come from
(``_exporters``).

May import: the standard library, the OpenTelemetry SDK and exporters, ``otel_sched._safe``,
``otel_sched._sdk_fields``.  Never imports ``runtime``, ``scheduling``, ``process`` or ``demo``.
"""
