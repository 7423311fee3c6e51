"""The pure stages: what a task is, how it is ranked, admitted, queued, ordered and batched.

Owns: :class:`Task` and the priority classes (``_task``), classification of a raw span or log
record into a task (``_classify``, ``_tenancy``, ``_boost``, and the priority rules: their
language in ``_rule_syntax``, their compiled matcher in ``_priority_rules``), admission and
shedding (``_admission``), the queue set (``_queues``), the policies that pick what is exported
next (``_policies``), the batch former (``_batching``), the export-cost model (``_cost_model``)
and express batches, taken from the intake without a task per span while nothing is scarce
(``_express``).

Every object here is single-threaded and driven with an explicit ``now``: no threads, no clocks,
no locks, no I/O (``_boost``'s process-wide marks are the one lock, taken on the application
thread).  May import: the standard library, the OpenTelemetry API/SDK, ``otel_sched._config``,
``otel_sched._sdk_fields``.  Never imports ``runtime``, ``otlp``, ``process``, ``durability`` or ``demo``.
"""
