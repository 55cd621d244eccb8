"""W3C traceparent: validated, its trace id in the request's log line, echoed back."""

from __future__ import annotations

import pytest

from gateway.tracing import traceparent_from
from tests.support import run, wait_until

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
VALID = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


def test_a_valid_traceparent_gives_its_trace_id():
    assert traceparent_from([(b"traceparent", VALID.encode())]) == (VALID, TRACE_ID)
    future = f"cc-{TRACE_ID}-00f067aa0ba902b7-01-what-comes-later"
    assert traceparent_from([(b"traceparent", future.encode())]) == (future, TRACE_ID)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "garbage",
        VALID.upper(),
        f"ff-{TRACE_ID}-00f067aa0ba902b7-01",
        f"00-{'0' * 32}-00f067aa0ba902b7-01",
        f"00-{TRACE_ID}-{'0' * 16}-01",
        f"00-{TRACE_ID}-00f067aa0ba902b7-01-extra",
        f"00-{TRACE_ID[:-1]}-00f067aa0ba902b7-01",
    ],
)
def test_an_invalid_traceparent_is_ignored(value):
    assert traceparent_from([(b"traceparent", value.encode())]) is None


def test_a_repeated_traceparent_is_ignored():
    assert traceparent_from([(b"traceparent", VALID.encode())] * 2) is None


def request_lines(caplog, request_id):
    return [
        r
        for r in caplog.records
        if r.getMessage() == "request" and getattr(r, "request_id", "") == request_id
    ]


def test_the_trace_id_is_logged_and_the_header_echoed(gateway, caplog):
    caplog.set_level("INFO", logger="gateway")
    _, client = gateway()
    response = run(client, "me", headers={"traceparent": VALID, "X-Request-Id": "traced-1"})
    assert response.status_code == 200
    assert response.headers["traceparent"] == VALID
    wait_until(lambda: request_lines(caplog, "traced-1"))  # logged just after the response
    (line,) = request_lines(caplog, "traced-1")
    assert line.trace_id == TRACE_ID


def test_an_invalid_traceparent_is_neither_logged_nor_echoed(gateway, caplog):
    caplog.set_level("INFO", logger="gateway")
    _, client = gateway()
    response = run(client, "me", headers={"traceparent": "nope", "X-Request-Id": "untraced-1"})
    assert response.status_code == 200
    assert "traceparent" not in response.headers
    wait_until(lambda: request_lines(caplog, "untraced-1"))  # logged just after the response
    (line,) = request_lines(caplog, "untraced-1")
    assert not hasattr(line, "trace_id")
