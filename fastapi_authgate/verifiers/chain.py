"""A verifier made of verifiers: the first one that recognises the credential gives the answer.

"Recognises" means it returned something other than ``None``. A verifier that recognises the
credential and finds it bad raises, and that answer is final: the chain never falls through to a
more lenient verifier after a forged or expired token, which would turn "first match" into "any
match" and let the weakest verifier decide.

The same holds for repeated tokens answered from the children's caches. A child's cache may hold
a token this chain would refuse (the child also serves another gate, where it was the only
verifier), so a later child's cached answer is only taken when no earlier child could have
recognised the token: every earlier child is a :class:`JWKSVerifier` bound to an issuer, the
cached token is another issuer's (such a verifier passes those on) and it is no longer than the
earlier children read (a longer one they refuse, whatever its issuer). Otherwise the request goes
down the normal path and the earlier child decides.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

from fastapi_authgate.context import AuthContext, Credentials
from fastapi_authgate.errors import ConfigurationError
from fastapi_authgate.protocols import Verifier
from fastapi_authgate.verifiers.jwks import JWKSVerifier

__all__ = ["ChainVerifier"]


class ChainVerifier:
    """Asks each verifier in order; answers with the first that recognises the credential."""

    provider = "chain"

    def __init__(self, verifiers: Iterable[Verifier]) -> None:
        self.verifiers: tuple[Verifier, ...] = tuple(verifiers)
        if not self.verifiers:
            raise ConfigurationError("ChainVerifier needs at least one verifier")
        self.cookie_names: frozenset[str] | None = frozenset()
        """Every child's cookies; ``None`` (read them all) when a child does not say."""
        for verifier in self.verifiers:
            names = getattr(verifier, "cookie_names", None)
            if names is None:
                self.cookie_names = None
                break
            self.cookie_names |= frozenset(names)
        lookups: list[tuple[Callable[[bytes], AuthContext | None], frozenset[str], float]] = []
        earlier: set[str] = set()
        longest: float = math.inf  # the longest token every earlier child passes on
        for verifier in self.verifiers:
            lookup = getattr(verifier, "cached_bearer", None)
            if callable(lookup):
                lookups.append((lookup, frozenset(earlier), longest))
            if not isinstance(verifier, JWKSVerifier) or verifier.issuer is None:
                break  # it may recognise any token: no later cache may answer in its place
            earlier.add(verifier.issuer)
            longest = min(longest, verifier.max_token_bytes)
        self._lookups = tuple(lookups)

    async def verify(self, credentials: Credentials) -> AuthContext | None:
        for verifier in self.verifiers:
            context = await verifier.verify(credentials)
            if context is not None:
                return context
        return None

    def cached_bearer(self, token: bytes) -> AuthContext | None:
        """A child's cached answer for ``token``, taken only where ``verify`` would give it.

        Children without a cache are skipped. A hit in a later child counts only when its token's
        verified ``iss`` is none of the earlier children's issuers and the token is no longer than
        they read (see the module docstring); otherwise ``None``, and ``verify`` lets the earlier
        child decide.
        """
        for lookup, earlier_issuers, longest in self._lookups:
            context = lookup(token)
            if context is not None:
                if not earlier_issuers:
                    return context
                issuer = context.claims.get("iss")
                if type(issuer) is str and issuer not in earlier_issuers and len(token) <= longest:
                    return context
                return None
        return None

    async def startup(self) -> None:
        for verifier in self.verifiers:
            hook = getattr(verifier, "startup", None)
            if hook is not None:
                await hook()

    async def aclose(self) -> None:
        for verifier in self.verifiers:
            hook = getattr(verifier, "aclose", None)
            if hook is not None:
                await hook()
