"""Structured JSON logs, one setup for structlog and the standard library, with a scrubber.

Request id and trade number ride along in context variables. Every line, tracebacks included,
passes `scrub` before it is written:
- fields whose name says secret (`secret`, `password`, `app_secret`, `private_key`, `token`,
  `signature`, `authorization`, `id_number`, ...) are replaced by `[redacted]`;
- in every text: a run of 12 or more digits (bank account, card and id numbers; an id number's
  final `X` too) keeps only its last 4 digits; a secret-named `name=value` loses its value;
  password hashes (`scrypt$...`), PEM private keys,
  `Bearer` tokens and SQL parameter lists (`[parameters: ...]`) are replaced.
The engines are also made with `hide_parameters=True` (db/database.py), so SQLAlchemy's own error
messages carry no parameters; the scrubber is the second line of defence for whatever else
quotes a value.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime

import structlog

__all__ = ["configure", "scrub", "scrub_text", "ScrubbingFormatter", "CurrentStderr", "uvicorn_log_config"]

_configured = False
REDACTED = "[redacted]"
_SECRET_NAMES = re.compile(
    r"(secret|passw|pwd|private_key|privkey|api_key|apikey|token|signature|authorization|cookie|id_number|"
    r"account_number|card_number|sealed|pem)", re.IGNORECASE)
_PATTERNS: tuple[tuple[re.Pattern, object], ...] = (
    (re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(-----END [A-Z ]*PRIVATE KEY-----|$)", re.DOTALL),
     "[redacted private key]"),
    (re.compile(r"\[parameters: .*?\](?=\s*(\n|\(Background|$))", re.DOTALL), "[parameters: redacted]"),
    (re.compile(r"scrypt\$[0-9]+\$[0-9]+\$[0-9]+\$[0-9a-f]+\$[0-9a-f]+"), "[redacted hash]"),
    (re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+"), r"\1[redacted]"),
    (re.compile(r"(?<![0-9A-Za-z])[0-9]{8,}([0-9]{4}[Xx]?)(?![0-9])"), r"****\1"),
    # `name=value` / `name: value` in free text (an exception's message, a traceback's source line)
    # where the name says secret: the value goes.
    (re.compile(r"(?i)\b([a-z_]*(?:secret|passw|pwd|private_key|privkey|api_key|apikey|token|signature|"
                r"authorization|cookie)[a-z_]*)(\s*[=:]\s*[\"']?)(?!\[redacted)([^\s\"',&;)}\]]+)"), r"\1\2[redacted]"),
)


def scrub_text(text: str) -> str:
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def _scrub_value(key: str, value):
    if isinstance(key, str) and _SECRET_NAMES.search(key) and value not in (None, "", 0):
        return REDACTED
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, dict):
        return {k: _scrub_value(k, v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub_value("", v) for v in value]
    if isinstance(value, BaseException):
        return scrub_text(f"{type(value).__name__}: {value}")
    return value


def scrub(_logger, _method, event_dict):
    """structlog processor: scrub every field (run it after exceptions are formatted)."""
    if isinstance(event_dict, str):
        return scrub_text(event_dict)
    return {k: _scrub_value(k, v) for k, v in event_dict.items()}


class ScrubbingFormatter(logging.Formatter):
    """The standard library's lines (uvicorn, SQLAlchemy, alembic, httpx), tracebacks included, as
    the same JSON lines as ours, scrubbed: one format on stderr, whoever wrote the line. Any format
    string given is ignored (callers pass one for the plain formatter this replaces)."""

    def format(self, record: logging.LogRecord) -> str:
        event = {
            "event": record.getMessage(),
            "logger": record.name,
            "level": record.levelname.lower(),
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat().replace("+00:00", "Z"),
        }
        if record.exc_info:
            event["exception"] = self.formatException(record.exc_info)
        return scrub_text(json.dumps(scrub(None, None, event), default=str, ensure_ascii=False))


class CurrentStderr:
    """Whatever sys.stderr is when a line is written, not when logging was configured: a stream
    bound at configure time may be closed later (a test's captured stream), and a log call must
    never fail the operation that logs."""

    def write(self, text: str) -> int:
        try:
            return sys.stderr.write(text)
        except ValueError:  # closed
            return 0

    def flush(self) -> None:
        try:
            sys.stderr.flush()
        except ValueError:
            pass


LINE_FORMAT = "%(levelname)s %(name)s %(message)s"


def stderr_handler() -> logging.Handler:
    return logging.StreamHandler(CurrentStderr())


def uvicorn_log_config(level: str = "WARNING") -> dict:
    """uvicorn's `log_config` for `serve --processes N`: uvicorn applies it in the supervising
    process and in every child it starts, before the app (and `configure`) is loaded there, so each
    of uvicorn's lines, from the first, goes through the scrubber in piaohao's format."""
    return {
        "version": 1, "disable_existing_loggers": False,
        "formatters": {"scrubbed": {"()": f"{__name__}.ScrubbingFormatter", "fmt": LINE_FORMAT}},
        "handlers": {"stderr": {"()": f"{__name__}.stderr_handler", "formatter": "scrubbed"}},
        "loggers": {
            "uvicorn": {"handlers": ["stderr"], "level": level, "propagate": False},
            "uvicorn.error": {"level": level},  # through "uvicorn"'s handler
            "uvicorn.access": {"handlers": ["stderr"], "level": level, "propagate": False},
        },
    }


def configure(level: str = "INFO") -> None:
    global _configured
    if _configured:
        return
    _configured = True
    numeric = getattr(logging, level, logging.INFO)
    handler = stderr_handler()
    handler.setFormatter(ScrubbingFormatter(LINE_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "sqlalchemy", "alembic"):
        for h in logging.getLogger(name).handlers:
            h.setFormatter(ScrubbingFormatter(LINE_FORMAT))
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            scrub,
            structlog.processors.JSONRenderer(),
            scrub,  # the rendered line once more: nothing a field's repr let through
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=CurrentStderr()),
        cache_logger_on_first_use=True,
    )
