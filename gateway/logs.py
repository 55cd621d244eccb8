"""Structured logging on stderr, through the stdlib: one JSON object per line (the default), or
`GATEWAY_LOG_FORMAT=text` for `key=value` lines a person reads in a terminal."""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from contextvars import ContextVar, Token
from dataclasses import dataclass
from typing import Any

import orjson

logger = logging.getLogger("gateway")


@dataclass(slots=True)
class CurrentRequest:
    """What the code serving a request adds to its log line without seeing HTTP: its id, and
    the time it spent waiting on Databricks (`upstream_ms`)."""

    request_id: str
    upstream_seconds: float = 0.0


_current: ContextVar[CurrentRequest | None] = ContextVar("current_request", default=None)


def current_request_id() -> str:
    current = _current.get()
    return current.request_id if current is not None else ""


def bind_request(request_id: str) -> tuple[CurrentRequest, Token[CurrentRequest | None]]:
    current = CurrentRequest(request_id)
    return current, _current.set(current)


def unbind_request(token: Token[CurrentRequest | None]) -> None:
    _current.reset(token)


def add_upstream_time(seconds: float) -> None:
    """Count `seconds` spent on a Databricks call to the current request. Called on the event
    loop's thread (a worker thread's call is timed around its await), so no sum is lost."""
    current = _current.get()
    if current is not None:
        current.upstream_seconds += seconds


_RESERVED = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}
_second: tuple[int, str] = (-1, "")  # the last formatted second: most lines share it


def _timestamp(created: float, msecs: float) -> str:
    global _second
    whole = int(created)
    if _second[0] != whole:
        _second = (whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)))
    return f"{_second[1]}.{int(msecs):03d}Z"


def _entry(record: logging.LogRecord) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "ts": _timestamp(record.created, record.msecs),
        "level": record.levelname.lower(),
        "logger": record.name,
        "event": record.getMessage(),
    }
    entry.update({k: v for k, v in vars(record).items() if k not in _RESERVED})  # `extra`
    return entry


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = _entry(record)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


class TextFormatter(logging.Formatter):
    """`ts level logger event key=value ...`; a value with spaces or quotes is JSON-quoted."""

    def format(self, record: logging.LogRecord) -> str:
        entry = _entry(record)
        head = [entry.pop(k) for k in ("ts", "level", "logger")]
        pairs = [f"{k}={_text_value(v)}" for k, v in entry.items() if k != "event"]
        line = " ".join([*head, _text_value(entry["event"]), *pairs])
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def _text_value(value: Any) -> str:
    text = value if isinstance(value, str) else orjson.dumps(value, default=str).decode()
    if text and not any(c in text for c in ' "=\n'):
        return text
    return orjson.dumps(text).decode()


# The handler `configure` installed for JSON lines: while it is the only one, the request line
# skips the logging machinery (see log_request).
_json_handler: logging.StreamHandler[Any] | None = None


def log_request(fields: dict[str, Any]) -> None:
    """The one INFO line per request: `request` and `fields`, exactly as JsonFormatter writes it.

    While `configure`'s JSON handler is the only handler, the line is built and written here
    (no LogRecord, no formatter): through logging it cost ~60 µs of CPU a request in the
    gateway, a tenth of a fast call, and this ~20 µs. With any other handler (text lines, a
    test's capture) it goes through logging like every other line.
    """
    handler = _json_handler
    stream = getattr(handler.stream, "buffer", None) if handler is not None else None
    if handler is None or stream is None or logging.getLogger().handlers != [handler]:
        logger.info("request", extra=fields)
        return
    if not logger.isEnabledFor(logging.INFO):
        return
    now = time.time()
    entry = {
        "ts": _timestamp(now, (now - int(now)) * 1000),
        "level": "info",
        "logger": logger.name,
        "event": "request",
        **fields,
    }
    line = orjson.dumps(entry, default=str, option=orjson.OPT_APPEND_NEWLINE)
    with handler.lock or contextlib.nullcontext():
        stream.write(line)
        stream.flush()


class StreamCut(Exception):
    """What a stream that Databricks cut mid-way raises to the server, once the gateway logged
    why: the server cuts the connection, and its own traceback line is left out."""


def logged_here(exc: Exception) -> StreamCut:
    return StreamCut(type(exc).__name__)


class _NotLoggedTwice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], StreamCut))


def quiet_server_on_cut_streams() -> None:
    """uvicorn logs a traceback for whatever an app raises once its answer began; for a
    StreamCut the gateway has said why already, as a warning."""
    server_errors = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _NotLoggedTwice) for f in server_errors.filters):
        server_errors.addFilter(_NotLoggedTwice())


def configure(level: str, log_format: str = "json") -> None:
    # One line per request must stay cheap: skip what our lines never show (the caller's
    # file and line, thread, process), as the logging docs' "Optimization" section suggests.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    global _json_handler
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(TextFormatter() if log_format == "text" else JsonFormatter())
    _json_handler = handler if log_format == "json" else None
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # The SDK logs request/response debug dumps at DEBUG; keep it at WARNING whatever our level.
    logging.getLogger("databricks").setLevel(logging.WARNING)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").disabled = True  # we log each request ourselves
