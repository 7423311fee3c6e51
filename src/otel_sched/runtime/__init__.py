"""The threads: the scheduler loop and everything that moves tasks from the intake to an exporter.

Owns: the pipeline (``_pipeline``: intake, the scheduler loop, dispatch, retries, completions,
hang handling, flush, shutdown, fork and exit), the lanes and the asyncio loop that call exporters
(``_workers``), adaptive concurrency (``_concurrency``), routing among endpoints (``_routing``)
and the counters behind ``stats()`` and the self-metrics (``_metrics``).

May import every other stage package except ``demo``; nothing below it imports ``runtime``.
"""
