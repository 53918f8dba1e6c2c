"""The cache of verified tokens: a repeated token costs a hash and a dict lookup.

Verifying a JWT means parsing it and running RSA/ECDSA; a client sends the same token on every
request until it expires. So a verifier remembers the :class:`AuthContext` it built, keyed by the
SHA-256 digest of the token (the token itself is never kept, so a memory dump holds no usable
credential), and serves it again only inside the window the token was valid for: from ``nbf``
(less the leeway) up to, never past, ``exp``. It is separate from any one verifier so other
verifiers can use it too; the verifier decides what may be cached and for how long, the cache
only counts time.
"""

from __future__ import annotations

import hashlib
import math
from collections import OrderedDict

from fastapi_authgate.context import AuthContext
from fastapi_authgate.errors import ConfigurationError

__all__ = ["TokenCache"]


class TokenCache:
    """Verified tokens by SHA-256 digest, each valid only while ``not_before <= now < expires``.

    Bounded: when full, the oldest entry makes room (insertion order; a hit does not reorder, so a
    hit stays a single dict lookup). The entries live in an ``OrderedDict`` because dropping the
    oldest entry of a plain ``dict`` (``next(iter(d))``) walks past every slot deleted since the
    last resize: with fresh tokens arriving at a full cache that is O(size) per eviction, while
    ``popitem(last=False)`` is O(1). Entries are shared between requests, so store only frozen
    values such as :class:`AuthContext`. ``max_size`` 0 disables the cache.
    """

    __slots__ = ("_entries", "max_size")

    def __init__(self, max_size: int = 10_000) -> None:
        if max_size < 0:
            raise ConfigurationError("token cache size must be >= 0")
        self.max_size = max_size
        self._entries: OrderedDict[bytes, tuple[AuthContext, float, float]] = OrderedDict()

    @staticmethod
    def key(token: str, namespace: bytes = b"") -> bytes:
        """The cache key of ``token`` within ``namespace`` (which must not contain a NUL byte).

        The SHA-256 digest of ``namespace + NUL + token``: the separator keeps the framing
        unambiguous, so a bearer string ``"cookie:" + T`` can never hit the entry of cookie ``T``.
        """
        return TokenCache.key_of_bytes(token.encode("utf-8", "surrogatepass"), namespace)

    @staticmethod
    def key_of_bytes(token: bytes, namespace: bytes = b"") -> bytes:
        """:meth:`key` for a token still in the bytes it arrived as (equal for ASCII tokens)."""
        return hashlib.sha256(namespace + b"\0" + token).digest()

    def get(self, key: bytes, now: float) -> AuthContext | None:
        """The cached context for ``key`` if it is still valid at ``now``."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[1] <= now < entry[2]:
            return entry[0]
        if now >= entry[2]:
            self._entries.pop(key, None)
        return None

    def put(
        self,
        key: bytes,
        context: AuthContext,
        *,
        expires_at: float,
        now: float,
        not_before: float = -math.inf,
    ) -> None:
        """Remember ``context`` until ``expires_at`` (nothing is stored if that has passed)."""
        if self.max_size == 0 or expires_at <= now:
            return
        entries = self._entries
        if len(entries) >= self.max_size and key not in entries:
            entries.popitem(last=False)
        entries[key] = (context, not_before, expires_at)

    def clear(self) -> None:
        """Forget every entry (for instance after a key was revoked)."""
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
