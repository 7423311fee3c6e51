"""The threads: the scheduler loop and everything that moves tasks from the intake to an exporter.

Owns: the pipeline, a composition root (``_pipeline``) over its components -- the intake
(``_intake``), the scheduler loop (``_loop``), express batches while nothing is scarce
(``_express``), dispatch with retries, completions and hang handling
(``_dispatch``), the drop ledger (``_ledger``), the standing in the process-wide level
(``_standing``), flush, shutdown, fork and exit (``_lifecycle``), ``stats()`` (``_introspection``)
and their builders (``_builders``) -- the lanes and the asyncio loop that call exporters
(``_workers``), adaptive concurrency (``_concurrency``), routing among endpoints (``_routing``)
and the counters behind ``stats()`` and the self-metrics (``_metrics``).

May import every other stage package except ``demo``; nothing below it imports ``runtime``.
"""
