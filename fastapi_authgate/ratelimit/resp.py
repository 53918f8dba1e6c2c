"""RESP encoding of the store's script calls: pure bytes, no client, built for the hot path.

redis-py's generic command encoder (type checks and an encode per argument) was most of the
client's cost per rate-limit decision, so the Redis store encodes its one command itself. The
fixed parts are built once: the arguments of each rule (limit and period) and of each
``(rules, cost)`` pair are cached. The layout is the one ``lua/gcra.lua`` reads.

Kept apart from ``redis_store`` because it needs nothing of redis-py (and that module is the only
one that imports it) and because it is the part to read when the script's arguments change.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

__all__ = ["Call", "bulk", "command", "decision_args", "group_of"]

_heads: dict[tuple[int, int], bytes] = {}
_rules: dict[tuple[int, float], bytes] = {}
_CACHE_MAX = 4096


def bulk(data: bytes) -> bytes:
    """One RESP bulk string."""
    return b"$%d\r\n%b\r\n" % (len(data), data)


class Call:
    """One queued decision: its keys and arguments already in RESP, and the future of its reply.

    ``group`` is the hash tag its keys share: decisions of one group go to Redis in one script
    call (one Cluster slot); a decision whose keys do not share one is a group of its own.
    """

    __slots__ = ("args", "future", "group", "keys", "rules")

    def __init__(
        self, group: object, keys: bytes, rules: int, args: bytes, future: asyncio.Future[Any]
    ) -> None:
        self.group = group
        self.keys = keys
        self.rules = rules
        self.args = args
        self.future = future


def decision_args(buckets: Sequence[tuple[str, int, float]], cost: int) -> bytes:
    """RESP of one decision's arguments: its number of rules, its cost, each rule's pair."""
    head = _heads.get((len(buckets), cost))
    if head is None:
        head = bulk(b"%d" % len(buckets)) + bulk(b"%d" % cost)
        if len(_heads) < _CACHE_MAX:
            _heads[(len(buckets), cost)] = head
    if len(buckets) == 1:
        _, limit, period = buckets[0]
        return head + _rule(limit, period)
    return head + b"".join(_rule(limit, period) for _, limit, period in buckets)


def _rule(limit: int, period: float) -> bytes:
    """RESP of a rule's two arguments, built once per distinct rule."""
    packed = _rules.get((limit, period))
    if packed is None:
        packed = bulk(repr(limit).encode()) + bulk(repr(period).encode())
        if len(_rules) < _CACHE_MAX:
            _rules[(limit, period)] = packed
    return packed


def group_of(buckets: Sequence[tuple[str, int, float]]) -> object:
    """The hash tag (``{...}``) all keys of a decision share, else a group of its own."""
    first = buckets[0][0]
    end = first.find("}")
    if not first.startswith("{") or end < 1:
        return object()  # no hash tag: a group of its own
    tag = first[: end + 1]
    for key, _, _ in buckets:
        if not key.startswith(tag):
            return object()
    return tag


def command(sha: str, calls: Sequence[Call], now: bytes) -> bytes:
    """One ``EVALSHA`` of script ``sha`` deciding ``calls`` in order (see ``lua/gcra.lua``).

    ``now`` is the time to use, or empty for the server's clock.
    """
    keys = sum(call.rules for call in calls)
    arguments = 2 + sum(2 + 2 * call.rules for call in calls)
    parts = [b"*%d\r\n$7\r\nEVALSHA\r\n" % (3 + keys + arguments), bulk(sha.encode())]
    parts.append(bulk(b"%d" % keys))
    parts.extend(call.keys for call in calls)
    parts.append(bulk(now))
    parts.append(bulk(b"%d" % len(calls)))
    parts.extend(call.args for call in calls)
    return b"".join(parts)
