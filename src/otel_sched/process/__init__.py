"""The process-wide level above the pipelines: one memory budget, CPU awareness, shares.

Owns: the coordinator every pipeline reports to (``_coordinator``) and the resource probe
(cgroups, psutil, thread CPU clocks) with the pure memory and CPU governors (``_resources``).
Only the probe's own thread does I/O; the governors are pure objects with explicit time.

May import: the standard library, ``psutil`` and the thread registry of
``otel_sched.runtime._workers`` (the threads whose CPU it measures).
"""
