"""Rate limiting: the limiter decides (``limiter``, ``rules``, ``headers``), a store counts.

Stores are interchangeable implementations of ``protocols.RateLimitStore``: ``memory_store``
(the default, one process) and ``redis_store`` (shared by all workers; needs the ``[redis]``
extra, so nothing here imports it eagerly).
"""

__all__: list[str] = []
