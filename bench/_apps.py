"""The one application shape every benchmark variant uses: a gate, one route at ``/r``.

Every variant returns the same plain dict the same way, so a ratio between two variants measures
the dependency in front of the route and nothing else.
"""

from __future__ import annotations

from typing import Any

from fastapi import Depends, FastAPI

from fastapi_authgate import AuthGate


def one_route_app(gate: AuthGate, dependency: Any = None, *, as_parameter: bool = False) -> FastAPI:
    """An app with ``gate`` installed and ``GET /r`` behind ``dependency`` (or nothing).

    ``as_parameter`` hands the dependency's value to the route (``auth = Depends(...)``), the way
    a guard is used; otherwise it sits in ``dependencies=[...]``, the way a rate limit is.
    """
    app = FastAPI()
    gate.install(app)
    if dependency is None:

        @app.get("/r")
        async def bare() -> dict[str, bool]:
            return {"ok": True}

    elif as_parameter:

        @app.get("/r")
        async def guarded(auth: Any = Depends(dependency)) -> dict[str, bool]:
            return {"ok": True}

    else:

        @app.get("/r", dependencies=[Depends(dependency)])
        async def limited() -> dict[str, bool]:
            return {"ok": True}

    return app
