"""The only way a credential reaches a log line: a short, one-way fingerprint.

Eight hex characters of SHA-256 tell an operator whether two log lines concern the same token
without giving anyone a usable credential. URLs are logged through :func:`redact_url`, since an
operator may put a password in the userinfo or a key in the query of a JWKS URL.
"""

from __future__ import annotations

import hashlib
from urllib.parse import urlsplit, urlunsplit

__all__ = ["fingerprint", "redact_url"]


def redact_url(url: str | None) -> str:
    """``url`` with any ``user:password@`` and every query value replaced by ``***``.

    ``https://u:p@idp.example/jwks?key=s3cret&v=2`` becomes
    ``https://***@idp.example/jwks?key=***&v=***``; the fragment is dropped.
    """
    if not url:
        return "-"
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return url.split(":", 1)[0] + ":<unparsable>"
    netloc = ("***@" if "@" in parts.netloc else "") + host + (f":{port}" if port else "")
    query = "&".join(
        name.split("=", 1)[0] + ("=***" if "=" in name else "")
        for name in parts.query.split("&")
        if name
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def fingerprint(secret: str | bytes | None) -> str:
    """``tok:1a2b3c4d`` for a token, ``tok:-`` for none."""
    if not secret:
        return "tok:-"
    data = secret.encode("utf-8", "surrogatepass") if isinstance(secret, str) else secret
    return "tok:" + hashlib.sha256(data).hexdigest()[:8]
