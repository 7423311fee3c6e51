"""Durability: the on-disk spool where batches that could not be exported wait to be replayed.

Owns: :class:`Spool` (``_spool``: put, take, ack, nack, adopt), a pure, single-owner, synchronous
object with an injected clock, on its file (``_spool_file``: the directory, its lock and the SQLite
database in WAL mode, corruption and fork handling; unavailable on platforms without ``fcntl``,
where it says so).

May import: the standard library only.  The pipeline (``runtime``) decides when to spool and replay.
"""
