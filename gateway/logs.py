"""Structured logging on stderr, through the stdlib: one JSON object per line (the default), or
`GATEWAY_LOG_FORMAT=text` for `key=value` lines a person reads in a terminal."""

from __future__ import annotations

import logging
import sys
import time
from contextvars import ContextVar, Token
from typing import Any

import orjson

logger = logging.getLogger("gateway")
_request_id: ContextVar[str] = ContextVar("request_id", default="")


def current_request_id() -> str:
    return _request_id.get()


def bind_request_id(request_id: str) -> Token[str]:
    return _request_id.set(request_id)


def unbind_request_id(token: Token[str]) -> None:
    _request_id.reset(token)


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


def configure(level: str, log_format: str = "json") -> None:
    # One line per request must stay cheap: skip what our lines never show (the caller's
    # file and line, thread, process), as the logging docs' "Optimization" section suggests.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(TextFormatter() if log_format == "text" else JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # The SDK logs request/response debug dumps at DEBUG; keep it at WARNING whatever our level.
    logging.getLogger("databricks").setLevel(logging.WARNING)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").disabled = True  # we log each request ourselves
