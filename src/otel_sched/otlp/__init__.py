"""OTLP on the wire: encoding items once, assembling requests, and sending them.

Owns: the Python encoder and its compiled twin (``_encoding``, ``_speedups.c``), the senders that
deliver pre-encoded request bytes (``_sender``: outcomes and ``sender_for``; ``_http`` over urllib3
or requests; ``_grpc``), the one place that knows the stock OTLP exporters' internals (``_stock``),
and where more exporter instances come from (``_exporters``).

May import: the standard library, the OpenTelemetry SDK and exporters, requests and urllib3,
``otel_sched._safe``, ``otel_sched._sdk_fields``.  Never imports ``runtime``, ``scheduling``,
``process`` or ``demo``.
"""
