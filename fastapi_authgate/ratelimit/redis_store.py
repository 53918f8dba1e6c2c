"""The Redis rate-limit store: shared by every worker, many decisions per round trip.

``lua/gcra.lua`` (package data) runs GCRA steps atomically: for each decision all rules of a
request are charged or none, the time is taken from the server's ``TIME`` so workers with skewed
clocks still agree, and each charged bucket gets an expiry equal to its drain time in the same
script, so Redis forgets idle keys by itself. The script is sent by hash and loaded again when
the server answers ``NOSCRIPT`` (after a restart or ``SCRIPT FLUSH``).

**One round trip for many decisions.** A decision does not get a connection of its own: it joins
a queue, and the decisions queued during one event-loop tick leave together, written in one go
on one connection, the replies handed back to each waiting request. Decisions whose keys share a
hash tag (the same caller of the same route: exactly what a flood from one client is) go in one
``EVALSHA`` that decides them one after the other; the others are pipelined ``EVALSHA`` calls of
the same script. One script call never spans two hash tags, so batching never breaks Redis
Cluster's rule that a script touches one slot. At most ``connections`` round trips are in flight
at once, each on its own long-lived connection (a *lane*); while they are all out, new decisions
wait in the queue and leave with the next free lane. So the busier the worker, the larger the
batches: a worker at 128 connections sends a few hundred round trips a second, not thousands.
Commands are encoded to RESP here, with the fixed parts of each rule built once: redis-py's
generic encoder was most of the client's cost per decision.

**The deadline times the round trip only.** The timer starts when a batch is written and covers
nothing else: not the wait in the queue, not (re)connecting, which ``socket_connect_timeout``
bounds, and not the event loop's backlog: a miss is declared one loop iteration after the timer
fires, so a reply that came in while the loop was busy is read first. A batch that misses it
fails its waiters with :class:`StoreDeadlineMissed` (the limiter applies its failure mode), and so
do the decisions still queued if no lane is free then (all lanes out, one of them overdue); but its
connection is kept and its late reply read and dropped: cutting the connection would make the next
request open a new one, and under load that turns a slow Redis into a flood of reconnections. A
connection is dropped only when it really fails: an error, or no reply at all within
``hard_timeout`` seconds.

With the optional ``hiredis`` package installed (``pip install 'fastapi-authgate[hiredis]'``),
redis-py parses replies with it, which is most of the client's cost per decision.

Bucket keys carry a Redis Cluster hash tag (``{...}``) built by the limiter, so all rules of one
request live in one slot. This is the only module that imports :mod:`redis`; without the ``redis``
extra, importing it raises :class:`ConfigurationError` naming the extra.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

from fastapi_authgate.context import Decision
from fastapi_authgate.errors import ConfigurationError, ProviderError
from fastapi_authgate.protocols import Clock
from fastapi_authgate.ratelimit.resp import Call, bulk, command, decision_args, group_of

try:
    import redis.asyncio as aioredis
    from redis.exceptions import NoScriptError, RedisError, ResponseError
except ImportError as exc:  # pragma: no cover - exercised with the extra uninstalled
    raise ConfigurationError(
        "AUTHGATE_REDIS_URL needs the redis client: pip install 'fastapi-authgate[redis]'"
    ) from exc

__all__ = ["GCRA_SCRIPT", "RedisStore", "RoundTripStats", "StoreDeadlineMissed"]

logger = logging.getLogger(__name__)

GCRA_SCRIPT: str = (
    resources.files("fastapi_authgate.ratelimit").joinpath("lua/gcra.lua").read_text("utf-8")
)
"""The Lua source of one GCRA decision (see the module docstring)."""

_SHA = hashlib.sha1(GCRA_SCRIPT.encode("utf-8"), usedforsecurity=False).hexdigest()
_MAX_BATCH = 512


class StoreDeadlineMissed(TimeoutError):
    """A round trip to Redis got no answer within the deadline (``round_trip`` is its number)."""

    def __init__(self, round_trip: int, deadline: float) -> None:
        super().__init__(f"no answer within {deadline * 1000:g} ms")
        self.round_trip = round_trip


class _RoundTripFailed(ProviderError):
    def __init__(self, round_trip: int, description: str) -> None:
        super().__init__(description)
        self.round_trip = round_trip


@dataclass(slots=True)
class RoundTripStats:
    """Counters of the store's round trips (the limiter folds them into its own stats)."""

    round_trips: int = 0
    batched_decisions: int = 0
    deadline_misses: int = 0
    """Round trips that missed the deadline."""
    late_replies: int = 0
    """Of those, the ones whose reply came later anyway (their connection was kept)."""
    failures: int = 0
    """Round trips that failed (error, connection lost); their connection was dropped."""
    reconnections: int = 0
    """Connections opened (the first of each lane included)."""


class RedisStore:
    """GCRA buckets in Redis (``redis.asyncio``), batched per event-loop tick.

    Args:
        client: a ``redis.asyncio.Redis`` client; the store's lanes are new connections made
            with its pool's connection settings (so host, TLS and credentials are the same).
        prefix: prepended to every key, so several apps can share one database (no braces:
            the limiter's hash tag must be the first ``{...}`` of a key).
        clock: for tests only: pass "now" to the script instead of the server's ``TIME``.
        close_client: whether :meth:`aclose` closes ``client`` (true for :meth:`from_url`).
        connections: round trips in flight at once, each on its own connection.
        hard_timeout: seconds after which a connection with no reply is dropped (a dead peer);
            at least ten times the limiter's deadline.

    Raises:
        ConfigurationError: a prefix with braces, or fewer than one connection.
    """

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        prefix: str = "authgate:",
        clock: Clock | None = None,
        close_client: bool = False,
        connections: int = 4,
        hard_timeout: float = 5.0,
    ) -> None:
        if "{" in prefix or "}" in prefix:
            raise ConfigurationError(
                f"RedisStore prefix {prefix!r} must not contain braces: the limiter's Redis "
                "Cluster hash tag must be the first {...} of every key"
            )
        if connections < 1:
            raise ConfigurationError("RedisStore needs at least one connection")
        self.client = client
        self._commands: Any = client  # the command methods are untyped in some redis releases
        self.prefix = prefix
        self._prefix = prefix.encode()
        self._clock = clock
        self._close_client = close_client
        self._deadline = 0.5
        self._hard_timeout = hard_timeout
        pool: Any = client.connection_pool
        self._connection_class: Any = pool.connection_class
        self._connection_kwargs: dict[str, Any] = dict(pool.connection_kwargs)
        self._idle: list[Any] = [None] * connections  # None: a lane not connected yet
        self._lanes: set[Any] = set()
        self._queue: list[Call] = []
        self._scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._numbers = itertools.count(1)
        self.stats = RoundTripStats()

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        prefix: str = "authgate:",
        connections: int = 4,
        clock: Clock | None = None,
        **kwargs: Any,
    ) -> RedisStore:
        """A store owning a new client for ``url`` (``redis://``, ``rediss://``, ``unix://``).

        Extra keyword arguments go to the connection pool (and so to every lane).

        Raises:
            ConfigurationError: the URL is not a Redis URL.
        """
        kwargs.setdefault("socket_connect_timeout", 1.0)
        try:
            pool: Any = aioredis.ConnectionPool.from_url(url, **kwargs)
        except ValueError as exc:
            raise ConfigurationError("AUTHGATE_REDIS_URL is not a valid Redis URL") from exc
        client: Any = aioredis.Redis(connection_pool=pool)
        client.auto_close_connection_pool = True  # closing the store closes the pool it made
        return cls(client, prefix=prefix, clock=clock, close_client=True, connections=connections)

    def set_deadline(self, seconds: float) -> None:
        """The limiter's deadline for one round trip (see the module docstring)."""
        self._deadline = seconds

    async def hit(self, key: str, *, limit: int, period: float, cost: int = 1) -> Decision:
        """One atomic GCRA step for ``key``; ``cost`` 0 asks, a negative ``cost`` refunds.

        Raises:
            ProviderError: Redis is unreachable or answered an error.
            StoreDeadlineMissed: the round trip took longer than the deadline.
        """
        return (await self.hit_many(((key, limit, period),), cost=cost))[0]

    async def hit_many(
        self, buckets: Sequence[tuple[str, int, float]], *, cost: int = 1
    ) -> list[Decision]:
        """One atomic GCRA step over several ``(key, limit, period)`` rules, all or none.

        Raises:
            ProviderError: Redis is unreachable or answered an error.
            StoreDeadlineMissed: the round trip took longer than the deadline.
        """
        prefix = self._prefix
        keys = b"".join(bulk(prefix + key.encode()) for key, _, _ in buckets)
        args = decision_args(buckets, cost)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._queue.append(Call(group_of(buckets), keys, len(buckets), args, future))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        reply = await future
        try:
            if len(buckets) == 1:
                _, limit, period = buckets[0]
                allowed, remaining, reset_after, retry_after = reply
                return [
                    Decision(
                        allowed == 1,
                        limit,
                        int(remaining),
                        float(reset_after),  # float() takes the bytes of a Lua string
                        float(retry_after),
                        period,
                    )
                ]
            return [
                Decision(
                    allowed=int(reply[i]) == 1,
                    limit=limit,
                    remaining=int(reply[i + 1]),
                    reset_after=float(reply[i + 2]),
                    retry_after=float(reply[i + 3]),
                    period=period,
                )
                for i, (_, limit, period) in zip(
                    range(0, 4 * len(buckets), 4), buckets, strict=True
                )
            ]
        except (TypeError, ValueError, IndexError) as exc:
            raise ProviderError("The rate-limit store (Redis) answered garbage") from exc

    def _flush(self) -> None:
        """Send what the last tick queued, one batch per free lane."""
        self._scheduled = False
        while self._queue and self._idle:
            lane = self._idle.pop()
            batch = self._queue[:_MAX_BATCH]
            del self._queue[:_MAX_BATCH]
            task = asyncio.get_running_loop().create_task(self._round_trip(lane, batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _round_trip(self, lane: Any, batch: list[Call]) -> None:
        number = next(self._numbers)
        stats = self.stats
        stats.round_trips += 1
        stats.batched_decisions += len(batch)
        loop = asyncio.get_running_loop()
        timer: asyncio.TimerHandle | None = None
        try:
            if lane is None:
                # No socket timeout: one timer per round trip (below), not one per reply read.
                lane = self._connection_class(**{**self._connection_kwargs, "socket_timeout": None})
                self._lanes.add(lane)
            if not lane.is_connected:
                # Not timed by the deadline: connecting (and redis-py's handshake) is bounded by
                # socket_connect_timeout, and a saturated loop must not make it look like a miss.
                self.stats.reconnections += 1
                await lane.connect()
            timer = loop.call_later(self._deadline, loop.call_soon, self._expire, batch, number)
            groups: dict[object, list[Call]] = {}
            for call in batch:
                groups.setdefault(call.group, []).append(call)
            now = b"" if self._clock is None else repr(self._clock()).encode()
            commands = [command(_SHA, calls, now) for calls in groups.values()]
            async with asyncio.timeout(self._hard_timeout):  # a dead peer: drop the connection
                replies = await self._send(lane, commands)
                if any(isinstance(reply, NoScriptError) for reply in replies):
                    load = lane.pack_commands([("SCRIPT", "LOAD", GCRA_SCRIPT)])
                    await self._send(lane, [load])
                    again = [i for i, r in enumerate(replies) if isinstance(r, NoScriptError)]
                    resent = await self._send(lane, [commands[i] for i in again])
                    for i, reply in zip(again, resent, strict=True):
                        replies[i] = reply
        except (Exception, asyncio.CancelledError) as exc:  # broken or out of step: drop it
            if not isinstance(exc, asyncio.CancelledError):
                stats.failures += 1
            self._lanes.discard(lane)
            if lane is not None:
                await lane.disconnect()
            lane = None
            failure = _RoundTripFailed(number, "The rate-limit store (Redis) is unavailable")
            failure.__cause__ = exc
            for call in batch:
                if not call.future.done():
                    call.future.set_exception(failure)
            if isinstance(exc, asyncio.CancelledError):
                raise  # the store is closing
        else:
            late = False
            for calls, reply in zip(groups.values(), replies, strict=True):
                if isinstance(reply, Exception):
                    error = _RoundTripFailed(number, "The rate-limit store (Redis) failed")
                    error.__cause__ = reply
                offset = 0
                for call in calls:
                    future = call.future
                    width = 4 * call.rules
                    if future.done():
                        late = True
                    elif isinstance(reply, Exception):
                        future.set_exception(error)
                    elif isinstance(reply, list) and len(reply) >= offset + width:
                        future.set_result(reply[offset : offset + width])
                    else:
                        future.set_exception(
                            ProviderError("The rate-limit store (Redis) answered garbage")
                        )
                    offset += width
            if late:
                stats.late_replies += 1
        finally:
            if timer is not None:
                timer.cancel()
            self._idle.append(lane)
            if self._queue and not self._scheduled:
                self._flush()

    def _expire(self, batch: list[Call], number: int) -> None:
        # Called one loop iteration after the timer fired: a reply that arrived in the same
        # iteration as the timer has woken its reader by then and is not taken for a miss.
        missed = StoreDeadlineMissed(number, self._deadline)
        expired = False
        for call in batch:
            if not call.future.done():
                call.future.set_exception(missed)
                expired = True
        if expired:
            self.stats.deadline_misses += 1
        if not self._idle:  # every lane is out and this one is overdue: Redis is unwell
            queued, self._queue = self._queue, []
            for call in queued:
                if not call.future.done():
                    call.future.set_exception(missed)

    async def _send(self, lane: Any, commands: Sequence[bytes | list[bytes]]) -> list[Any]:
        """Write RESP ``commands`` in one go and read one reply each (error replies as values)."""
        packed: list[bytes] = []
        for item in commands:
            if isinstance(item, bytes):
                packed.append(item)
            else:
                packed.extend(item)
        await lane.send_packed_command(packed, check_health=False)
        replies: list[Any] = []
        for _ in commands:
            try:
                replies.append(await lane.read_response())
            except ResponseError as exc:  # read in full: the connection is still in step
                replies.append(exc)
        return replies

    async def aclose(self) -> None:
        """Fail queued decisions, close the lanes, and the client when the store owns it."""
        for call in self._queue:
            if not call.future.done():
                call.future.set_exception(ProviderError("The rate-limit store (Redis) was closed"))
        self._queue.clear()
        for task in list(self._tasks):
            task.cancel()
        for lane in list(self._lanes):
            try:
                await lane.disconnect()
            except (RedisError, OSError):  # pragma: no cover - closing a broken socket
                logger.debug("closing a Redis connection failed", exc_info=True)
        self._lanes.clear()
        if self._close_client:
            await self._commands.aclose()
