"""Structured logs: one JSON object per line, carrying the request, agent and run a line was logged for.

The ids live in context variables: the request middleware (obs/context.py) sets the request id and the
agent id of the path; a turn sets the agent id and run id. asyncio copies context variables into every
task it creates, so lines logged by a turn running in the background still carry the request that
started it. uvicorn's own loggers (access and error) go through the same formatter (`logging_config`).

Nothing secret goes out, in either format (JSON, or text with RECALLD_LOG_FORMAT=text): messages and tracebacks
pass through `redact`, which drops SQL parameters, masks keys, bearer tokens and passwords in URLs, and masks
the values of agent secrets this process has handled (`remember_secret_values`, called by secrets_box.py).
"""

from __future__ import annotations

import logging
import logging.config
import re
import time
from collections.abc import Iterable
from contextvars import ContextVar
from typing import Any, Literal

import orjson
from opentelemetry import trace

REQUEST_ID: ContextVar[str | None] = ContextVar("recalld_request_id", default=None)
AGENT_ID: ContextVar[str | None] = ContextVar("recalld_agent_id", default=None)
RUN_ID: ContextVar[str | None] = ContextVar("recalld_run_id", default=None)

LogFormat = Literal["json", "text"]
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# (substrings of the lower-cased text that a match needs, pattern, replacement): a pattern runs only when one of
# its substrings is present, so an ordinary line costs a few substring checks, not a regex scan per pattern.
_REDACTIONS = (
    # SQLAlchemy appends the statement's parameters to its errors: user text, hashed keys, tool secrets.
    (("[parameters:",), re.compile(r"\[parameters: .*?\](?=\n|$)", re.DOTALL), "[parameters: redacted]"),
    (("bearer",), re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]{8,}"), r"\1 [redacted]"),
    (("sk-", "lr-", "rk-", "pk-"), re.compile(r"\b(sk|sk-ant|sk-proj|lr|rk|pk)-[A-Za-z0-9_-]{8,}"), r"\1-[redacted]"),
    (
        ("key", "pass", "secret", "token", "authorization"),
        re.compile(r"(?i)((?:api[_-]?key|password|passwd|secret|token|authorization)[\"']?\s*[:=]\s*[\"']?)[^\s\"',;&]+"),
        r"\1[redacted]",
    ),
    (("@",), re.compile(r"(://[^/\s:@]+:)[^@\s/]+@"), r"\1[redacted]@"),
)
# Attributes every LogRecord has; anything else on a record came from `extra=` and is logged as a field
# (except uvicorn's copy of the message with terminal colours).
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message", "asctime", "taskName", "color_message"
}


# Values of secrets seen by this process, newest last (a dict as an ordered set), masked wherever they appear.
_SECRET_VALUES: dict[str, None] = {}
SECRET_VALUES_MAX = 1024
# Shorter values ("1", "yes") would mask ordinary words; the patterns above still catch name=value forms.
SECRET_VALUE_MIN_CHARS = 6


def remember_secret_values(values: Iterable[str]) -> None:
    """Mask these values in every line from now on (bounded: the oldest are forgotten first)."""
    for value in values:
        if isinstance(value, str) and len(value) >= SECRET_VALUE_MIN_CHARS:
            _SECRET_VALUES.pop(value, None)
            _SECRET_VALUES[value] = None
    while len(_SECRET_VALUES) > SECRET_VALUES_MAX:
        del _SECRET_VALUES[next(iter(_SECRET_VALUES))]


def redact(text: str) -> str:
    """The text without SQL parameters, keys, tokens, URL passwords or known secret values."""
    lowered = text.lower()
    for needles, pattern, replacement in _REDACTIONS:
        if any(needle in lowered for needle in needles):
            text = pattern.sub(replacement, text)
    for value in list(_SECRET_VALUES):
        if value in text:
            text = text.replace(value, "[redacted]")
    return text


class TextFormatter(logging.Formatter):
    """Plain text lines (RECALLD_LOG_FORMAT=text), redacted exactly as the JSON lines are."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, the context ids, trace ids, exc."""

    _second = -1
    _second_text = ""

    def _timestamp(self, record: logging.LogRecord) -> str:
        second = int(record.created)
        if second != self._second:  # strftime once a second (a race between threads only recomputes it)
            self._second_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = second
        return f"{self._second_text}.{int(record.msecs):03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": self._timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        if (request_id := REQUEST_ID.get()) is not None:
            entry["request_id"] = request_id
        if (agent_id := AGENT_ID.get()) is not None:
            entry["agent_id"] = agent_id
        if (run_id := RUN_ID.get()) is not None:
            entry["run_id"] = run_id
        span_context = trace.get_current_span().get_span_context()
        if span_context.is_valid:
            entry["trace_id"] = format(span_context.trace_id, "032x")
            entry["span_id"] = format(span_context.span_id, "016x")
        if record.name == "uvicorn.access" and isinstance(record.args, tuple) and len(record.args) == 5:
            _client, method, path, _version, status = record.args
            # The path carries the query string, where a client may have put a key.
            entry.update(method=method, path=redact(path) if isinstance(path, str) else path, status=status)
        for key, value in record.__dict__.items():
            if key not in _STANDARD and key not in entry:
                entry[key] = redact(value) if isinstance(value, str) else value
        if record.exc_info:
            entry["exc"] = redact(self.formatException(record.exc_info))
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return orjson.dumps(entry, default=str).decode()


def logging_config(log_format: LogFormat, level: str) -> dict[str, Any]:
    """A dictConfig for the whole process: the root logger and uvicorn's loggers write through one
    formatter to stderr (uvicorn's own handlers are dropped, so its lines cannot bypass it)."""
    level = level.upper()
    formatter: dict[str, Any] = {"()": JsonFormatter if log_format == "json" else TextFormatter}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"recalld": formatter},
        "handlers": {
            "stderr": {"class": "logging.StreamHandler", "formatter": "recalld", "stream": "ext://sys.stderr"}
        },
        "root": {"handlers": ["stderr"], "level": level},
        "loggers": {
            name: {"handlers": [], "level": level, "propagate": True}
            for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi")
        },
    }


def configure(log_format: LogFormat, level: str) -> None:
    """Apply `logging_config` to this process."""
    logging.config.dictConfig(logging_config(log_format, level))
