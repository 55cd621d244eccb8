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
