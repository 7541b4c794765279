"""structlog set-up: JSON lines in production, readable lines in development.

Every line goes through one handler on the root logger with structlog's `ProcessorFormatter`:
our own events, the standard library's (SQLAlchemy, httpx...) and uvicorn's startup and error
lines alike. Uvicorn's access log stays off; our middleware writes one line per request.
"""

from __future__ import annotations

import logging
import sys

import structlog

# Uvicorn's loggers: their lines propagate to the root handler instead of uvicorn's own.
UVICORN_LOGGERS = ("uvicorn", "uvicorn.error")
# The least level some libraries log at: aiosqlite's DEBUG lines quote SQL parameters (hashes,
# tokens); alembic announces each of its plugins at INFO whenever it is imported.
LIBRARY_LEVELS = {"aiosqlite": logging.INFO, "alembic.runtime.plugins": logging.WARNING}


class AppLogHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler `configure_logging` installs (and replaces when it is called again)."""


def _shared_processors() -> list[structlog.types.Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]


def build_formatter(*, json: bool) -> structlog.stdlib.ProcessorFormatter:
    """The formatter of every log line (also for tests that read what would be written)."""
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    )
    foreign = _shared_processors()
    if json:
        # A standard-library record with a traceback (uvicorn's "Exception in ASGI
        # application") renders it into the JSON line's `exception` field.
        foreign.append(structlog.processors.format_exc_info)
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=foreign,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            renderer,
        ],
    )


def configure_logging(level: str = "INFO", *, json: bool = True) -> None:
    """Configure structlog and route the standard library's logging (uvicorn's too) through it.

    Handlers that others added to the root logger (a test's, an error tracker's) are kept.
    """
    structlog.configure(
        processors=[
            *_shared_processors(),
            structlog.processors.format_exc_info
            if json
            else structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = AppLogHandler(sys.stderr)
    handler.setFormatter(build_formatter(json=json))
    root = logging.getLogger()
    root.handlers = [h for h in root.handlers if not isinstance(h, AppLogHandler)] + [handler]
    root.setLevel(level.upper())
    for name, least in LIBRARY_LEVELS.items():
        logging.getLogger(name).setLevel(least)
    for name in UVICORN_LOGGERS:
        logging.getLogger(name).handlers = []
        logging.getLogger(name).propagate = True
    # Our middleware writes the access log; uvicorn's own would double it.
    logging.getLogger("uvicorn.access").handlers = []
    logging.getLogger("uvicorn.access").propagate = False
