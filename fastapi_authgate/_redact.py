"""The only way a credential reaches a log line: a short, one-way fingerprint.

Eight hex characters of SHA-256 tell an operator whether two log lines concern the same token
without giving anyone a usable credential.
"""

from __future__ import annotations

import hashlib

__all__ = ["fingerprint"]


def fingerprint(secret: str | bytes | None) -> str:
    """``tok:1a2b3c4d`` for a token, ``tok:-`` for none."""
    if not secret:
        return "tok:-"
    data = secret.encode("utf-8", "surrogatepass") if isinstance(secret, str) else secret
    return "tok:" + hashlib.sha256(data).hexdigest()[:8]
