"""Durability: the on-disk spool where batches that could not be exported wait to be replayed.

Owns: :class:`Spool` (``_spool``), a pure, single-owner, synchronous object with an injected clock
(SQLite in WAL mode; unavailable on platforms without ``fcntl``, where it says so).

May import: the standard library only.  The pipeline (``runtime``) decides when to spool and replay.
"""
