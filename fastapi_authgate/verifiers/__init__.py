"""Provider-neutral verifiers: interchangeable implementations of ``protocols.Verifier``.

``jwks`` verifies JWTs against any JWKS/OIDC issuer; ``chain`` asks several verifiers in turn.
"""

__all__: list[str] = []
