"""Run an ASGI app under uvicorn on 127.0.0.1, a free port, in a background thread.

The suite uses the same helper the test kit ships to users (:func:`fastapi_authgate.testing.serve`).
"""

from __future__ import annotations

from fastapi_authgate.testing.server import serve

__all__ = ["serve"]
