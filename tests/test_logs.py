"""Log lines: JSON by default, `key=value` text with GATEWAY_LOG_FORMAT=text."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import sys

import pytest

from gateway.logs import JsonFormatter, TextFormatter
from gateway.settings import Settings


def record() -> logging.LogRecord:
    entry = logging.LogRecord("gateway", logging.INFO, __file__, 1, "request", None, None)
    entry.__dict__.update(request_id="r-1", path="/run", trace_id="abc", message_text="a b")
    return entry


def test_json_is_the_default():
    assert Settings().log_format == "json"
    line = json.loads(JsonFormatter().format(record()))
    assert line["event"] == "request" and line["trace_id"] == "abc"


def test_text_lines_are_key_value_with_quoted_spaces(monkeypatch):
    monkeypatch.setenv("GATEWAY_LOG_FORMAT", "text")
    assert Settings().log_format == "text"
    line = TextFormatter().format(record())
    assert " info gateway request request_id=r-1 path=/run trace_id=abc " in line
    assert line.endswith('message_text="a b"')


def test_an_unknown_format_is_a_configuration_error(monkeypatch):
    monkeypatch.setenv("GATEWAY_LOG_FORMAT", "xml")
    with pytest.raises(ValueError, match=r"log_format|GATEWAY_LOG_FORMAT"):
        Settings()


def test_the_request_line_written_directly_is_the_formatters_line(monkeypatch):
    # log_request skips LogRecord and formatter while configure's JSON handler is the only one:
    # its line must be the very line that handler writes through logging.
    import io
    import sys

    from gateway import logs

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    raw = io.BytesIO()
    monkeypatch.setattr(sys, "stderr", io.TextIOWrapper(raw, encoding="utf-8"))
    fields = {"request_id": "r-1", "path": "/run", "op": "me", "note": 'é " \\n', "n": 1.5}
    try:
        logs.configure("INFO")
        logs.log_request(fields)  # directly
        logs.logger.info("request", extra=fields)  # through logging
        root.handlers.append(logging.NullHandler())  # another handler: through logging
        logs.log_request(fields)
        root.handlers.pop()
        logs.configure("WARNING")
        logs.log_request(fields)  # below the level: no line
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    lines = raw.getvalue().splitlines()
    assert len(lines) == 3
    entries = [json.loads(line) for line in lines]
    assert all(list(e) == list(entries[0]) for e in entries)  # the same keys, the same order
    without_time = [{k: v for k, v in e.items() if k != "ts"} for e in entries]
    assert without_time[0] == without_time[1] == without_time[2]
    assert without_time[0]["note"] == fields["note"] and without_time[0]["event"] == "request"


class RecordedWrites(io.RawIOBase):
    """A raw stream that keeps each write it is given, as the kernel would see them."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:  # type: ignore[override]
        self.writes.append(bytes(data))
        return len(data)


def test_request_lines_go_out_together_later_whole_and_in_order(monkeypatch):
    from select import PIPE_BUF

    from gateway import afterwards, logs

    monkeypatch.setattr(afterwards, "AFTER_ANSWER_SECONDS", 0.001)

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    raw = RecordedWrites()
    stderr = io.TextIOWrapper(io.BufferedWriter(raw), encoding="utf-8", write_through=True)
    monkeypatch.setattr(sys, "stderr", stderr)
    writes_in_turn: list[int] = []

    async def one_turn() -> None:
        for n in range(40):
            logs.log_request({"request_id": f"r-{n}", "pad": "x" * 300})
        writes_in_turn.append(len(raw.writes))  # none yet: they wait until their callers ran
        logs.logger.warning("after the requests")  # any other line sends them first
        for n in range(40, 60):
            logs.log_request({"request_id": f"r-{n}", "pad": "x" * 300})
        await asyncio.sleep(0.05)  # their write, due sooner, comes before this sleep ends

    try:
        logs.configure("INFO")
        asyncio.run(one_turn())
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    assert writes_in_turn == [0]
    assert all(len(w) <= PIPE_BUF and w.endswith(b"\n") for w in raw.writes)
    assert len(raw.writes) < 60  # lines share writes
    lines = [json.loads(line) for line in b"".join(raw.writes).splitlines()]
    events = [e.get("request_id") or e["event"] for e in lines]
    assert events == [f"r-{n}" for n in range(40)] + ["after the requests"] + [
        f"r-{n}" for n in range(40, 60)
    ]
