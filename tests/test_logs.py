"""Log lines: JSON by default, `key=value` text with GATEWAY_LOG_FORMAT=text."""

from __future__ import annotations

import json
import logging

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
