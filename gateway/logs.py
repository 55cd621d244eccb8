"""Structured logging on stderr, through the stdlib: one JSON object per line (the default), or
`GATEWAY_LOG_FORMAT=text` for `key=value` lines a person reads in a terminal."""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from contextvars import ContextVar, Token
from dataclasses import dataclass
from select import PIPE_BUF
from typing import Any

import orjson

from gateway.afterwards import Afterwards

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


class JsonLines(logging.StreamHandler):  # type: ignore[type-arg]
    """stderr for JSON lines. The request lines `log_request` wrote go out together a moment
    later (gateway/afterwards.py: once their callers have run), in writes of whole lines of at
    most PIPE_BUF bytes (what a pipe writes at once, never interleaved with another writer's
    bytes: the gateway's workers share their stderr); any other line first sends those, so the
    lines stay in order.

    With one write a line, py-spy found ~4% of the gateway's samples at c = 64 in that write
    call; at that load a turn of the loop ends several requests. Interleaved A/B at c = 64
    (8 pairs), batched per turn of the loop against one write a line: 1.08x the req/s with
    stderr on a pipe (as a container's log collector reads it), 1.005x with stderr to a file."""

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self.pending: list[bytes] = []
        self._afterwards = Afterwards(self.write_pending)

    def emit(self, record: logging.LogRecord) -> None:
        self.write_pending()
        super().emit(record)

    def flush(self) -> None:
        self.write_pending()
        super().flush()

    def add(self, line: bytes) -> None:
        with self.lock or contextlib.nullcontext():
            self.pending.append(line)
        self._afterwards.soon()

    def write_pending(self) -> None:
        with self.lock or contextlib.nullcontext():
            lines, self.pending = self.pending, []
            if not lines:
                return
            super().flush()  # what the text layer holds was written first
            stream = self.stream.buffer
            try:
                for piece in _pieces(lines, PIPE_BUF):
                    stream.write(piece)
                    stream.flush()
            except (OSError, ValueError):  # stderr is gone: nowhere is left to say so
                pass


def _pieces(lines: list[bytes], most: int) -> list[bytes]:
    """`lines` joined into pieces of whole lines, each of `most` bytes or fewer (a longer line
    is a piece of its own)."""
    pieces: list[bytes] = []
    piece: list[bytes] = []
    size = 0
    for line in lines:
        if piece and size + len(line) > most:
            pieces.append(b"".join(piece))
            piece, size = [], 0
        piece.append(line)
        size += len(line)
    if piece:
        pieces.append(b"".join(piece))
    return pieces


# The handler `configure` installed for JSON lines: while it is the only one, the request line
# skips the logging machinery (see log_request).
_json_handler: JsonLines | None = None


def log_request(fields: dict[str, Any]) -> None:
    """The one INFO line per request: `request` and `fields`, exactly as JsonFormatter writes it.

    While `configure`'s JSON handler is the only handler, the line is built here (no LogRecord,
    no formatter: through logging it cost ~60 µs of CPU a request in the gateway, a tenth of a
    fast call, and this ~20 µs) and written a moment later with the other request lines. With any
    other handler (text lines, a test's capture) it goes through logging like every other line.
    """
    handler = _json_handler
    if (
        handler is None
        or not hasattr(handler.stream, "buffer")
        or logging.getLogger().handlers != [handler]
    ):
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
    handler.add(orjson.dumps(entry, default=str, option=orjson.OPT_APPEND_NEWLINE))


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
    if _json_handler is not None:
        _json_handler.write_pending()  # the lines of the handler being replaced
    handler = JsonLines(sys.stderr) if log_format == "json" else logging.StreamHandler(sys.stderr)
    handler.setFormatter(TextFormatter() if log_format == "text" else JsonFormatter())
    _json_handler = handler if isinstance(handler, JsonLines) else None
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # The SDK logs request/response debug dumps at DEBUG; keep it at WARNING whatever our level.
    logging.getLogger("databricks").setLevel(logging.WARNING)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").disabled = True  # we log each request ourselves
