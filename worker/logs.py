"""Structured logs: one JSON object per line in production, readable lines in a terminal.

stdlib logging (arq, SQLAlchemy, alembic) is routed through the same renderer. Job lines carry
command_id, task_id, function, job_id and try; payloads and secrets are never logged. Every
string in a line (the message, each value, a traceback) passes through `redact_text` last, so a
URL with a password in it (`user:password@`, `?password=`) is logged as `***` whoever logs it.
A process that traces adds a processor that writes the current span's trace_id and span_id.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping, Sequence
from typing import Any

import structlog
from taskline_producer.redaction import redact_text

__all__ = ["configure_logging", "get_logger", "redact_event"]


def redact_event(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """A structlog processor: every string value with a URL in it, redacted."""
    for name, value in event.items():
        if isinstance(value, str) and "://" in value:
            event[name] = redact_text(value)
    return event


def configure_logging(fmt: str = "auto", level: str = "INFO", *, extra_processors: Sequence[Any] = ()) -> None:
    json_lines = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    shared: list[Any] = [
        *extra_processors,
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer() if json_lines else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            redact_event,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # arq logs every job start/finish with its arguments at INFO: keep it to warnings.
    logging.getLogger("arq").setLevel(max(logging.WARNING, logging.getLevelName(level)))


def get_logger(name: str) -> Any:
    return structlog.stdlib.get_logger(name)
