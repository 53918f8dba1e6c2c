"""A verifier made of verifiers: the first one that recognises the credential gives the answer.

"Recognises" means it returned something other than ``None``. A verifier that recognises the
credential and finds it bad raises, and that answer is final: the chain never falls through to a
more lenient verifier after a forged or expired token, which would turn "first match" into "any
match" and let the weakest verifier decide.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from fastapi_authgate.context import AuthContext, Credentials
from fastapi_authgate.errors import ConfigurationError
from fastapi_authgate.protocols import Verifier

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
        self._lookups: tuple[Callable[[bytes], AuthContext | None], ...] = tuple(
            lookup
            for lookup in (getattr(v, "cached_bearer", None) for v in self.verifiers)
            if callable(lookup)
        )

    async def verify(self, credentials: Credentials) -> AuthContext | None:
        for verifier in self.verifiers:
            context = await verifier.verify(credentials)
            if context is not None:
                return context
        return None

    def cached_bearer(self, token: bytes) -> AuthContext | None:
        """The first child's cached answer for ``token`` (children without a cache are skipped)."""
        for lookup in self._lookups:
            context = lookup(token)
            if context is not None:
                return context
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
