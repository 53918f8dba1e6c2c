"""``LogSink``: one JSON object per event, one log record per line, on a Python logger.

The default logger is ``fastapi_authgate.reporting`` at ``INFO``; route it wherever logs go
(the example app sends it to stderr). Each record's message is the event's ``as_dict()`` as
compact JSON, which escapes control characters, so a user agent or path cannot break a line or
forge a second one. The reporter's own diagnostics use child loggers
(``fastapi_authgate.reporting.*``): a consumer that wants only events filters on the record's
name being exactly ``fastapi_authgate.reporting``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence

from fastapi_authgate.events import Event

__all__ = ["EVENT_LOGGER", "LogSink"]

EVENT_LOGGER = "fastapi_authgate.reporting"
"""Name of the logger the log sink writes events to."""


class LogSink:
    """Writes each event as a JSON line on ``logger`` (``AUTHGATE_REPORTING__SINK=log``).

    Args:
        logger: the logger, or its name.
        level: the level of each record.
    """

    def __init__(self, logger: logging.Logger | str = EVENT_LOGGER, *, level: int = logging.INFO):
        self.logger = logging.getLogger(logger) if isinstance(logger, str) else logger
        self.level = level

    async def send(self, events: Sequence[Event]) -> None:
        """Log every event of the batch; logging never fails a batch."""
        log = self.logger
        if not log.isEnabledFor(self.level):
            return
        dumps = json.dumps
        for event in events:
            log.log(self.level, dumps(event.as_dict(), separators=(",", ":"), sort_keys=False))
