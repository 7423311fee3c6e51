"""Durability: the on-disk spool where batches that could not be exported wait to be replayed.

Owns: :class:`Spool` (``_spool``: put, take, ack, nack, adopt), a pure, single-owner, synchronous
object with an injected clock, on its file (``_spool_file``: the directory, its lock and the SQLite
database in WAL mode, corruption and fork handling; unavailable on platforms without ``fcntl``,
where it says so), and its bridge to the pipeline, :class:`SpoolBridge` (``_bridge``): what is
spooled instead of dropped, replay pacing.

May import: ``_spool`` the standard library only; ``_bridge`` also ``scheduling`` and ``otlp``
(tasks, and assembling their OTLP bytes into a request).  Never ``runtime``: the pipeline decides
when to spool and replay, and builds the replay's job.
"""
