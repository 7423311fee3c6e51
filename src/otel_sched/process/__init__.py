"""The process-wide level above the pipelines: one memory budget, CPU awareness, shares.

Owns: the coordinator every pipeline reports to (``_coordinator``), the resource probes
(cgroups, psutil, thread CPU clocks: ``_probe``) and the pure memory and CPU governors and the
batch tuner (``_governors``).  Only the probe's own thread does I/O; the governors are pure
objects with explicit time.

May import: the standard library, ``psutil`` and the shared thread registry
``otel_sched._threads`` (its probe thread registers there); never ``runtime``.
"""
