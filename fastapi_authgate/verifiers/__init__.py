"""Provider-neutral verifiers: interchangeable implementations of ``protocols.Verifier``.

``jwks`` verifies JWTs against any JWKS/OIDC issuer; ``chain`` asks several verifiers in turn;
``remote`` caches what a provider's server verified (hashed keys, single flight, optional shared
store from ``remote_store``) for providers that verify by calling home.
"""

__all__: list[str] = []
