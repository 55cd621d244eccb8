"""GATEWAY_OTEL=1: one OpenTelemetry span per op, a child of the caller's traceparent."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from gateway.telemetry import Telemetry, exporters
from tests.support import run, running_gateway, settings_for, wait_until

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"


def test_one_span_per_op_with_its_attributes_under_the_callers_trace(gateway, monkeypatch):
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    server, client = gateway(otel=True)
    memory = InMemorySpanExporter()
    server.runtime.telemetry.provider.add_span_processor(SimpleSpanProcessor(memory))

    assert run(client, "me", headers={"traceparent": TRACEPARENT}).status_code == 200
    denied = run(client, "list_schemas", catalog="finance")
    assert denied.status_code == 403
    assert run(client, "no_such_op").status_code == 400
    assert client.get("/health").status_code == 200  # not an op: no span
    wait_until(lambda: len(memory.get_finished_spans()) == 3)

    me, schemas, unknown = sorted(memory.get_finished_spans(), key=lambda s: s.start_time or 0)
    assert (me.name, me.kind) == ("me", SpanKind.SERVER)
    assert me.context is not None and me.parent is not None
    assert me.context.trace_id == int(TRACE_ID, 16)
    assert me.parent.span_id == int(PARENT_ID, 16)
    assert dict(me.attributes or {}) == {
        "gateway.op": "me",
        "gateway.identity": "service",
        "http.response.status_code": 200,
    }
    error = denied.json()["error"]
    assert error["databricks_error_code"]
    assert schemas.name == "list_schemas"
    assert schemas.parent is None  # no traceparent: a root span
    assert dict(schemas.attributes or {}) == {
        "gateway.op": "list_schemas",
        "gateway.identity": "service",
        "http.response.status_code": 403,
        "gateway.error_code": error["code"],
        "databricks.error_code": error["databricks_error_code"],
    }
    assert schemas.status.status_code == StatusCode.UNSET  # the caller's fault, not ours
    assert unknown.name == "POST /run"
    assert unknown.attributes is not None
    assert unknown.attributes["gateway.error_code"] == "UNKNOWN_OP"


def test_a_server_error_marks_the_span_failed():
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    span = Telemetry(provider).start(None)
    span.end({"op": "me", "error_code": "DATABRICKS_UNAVAILABLE"}, 503)
    (finished,) = memory.get_finished_spans()
    assert finished.status.status_code == StatusCode.ERROR
    assert finished.status.description == "DATABRICKS_UNAVAILABLE"


class _Collector(ThreadingHTTPServer):
    """A stand-in OTLP/HTTP collector: keeps each POST /v1/traces body."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                collector.bodies.append(self.rfile.read(int(self.headers["Content-Length"])))
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)


@pytest.fixture
def collector() -> Iterator[_Collector]:
    server = _Collector()
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        thread.join(10)
        server.server_close()


def test_spans_reach_an_otlp_collector_named_by_the_standard_variables(
    workspace, collector, monkeypatch
):
    port = collector.server_address[1]
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", f"http://127.0.0.1:{port}/v1/traces")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "gateway-under-test")
    with running_gateway(settings_for(workspace, otel=True)) as (_, client):
        assert run(client, "me", headers={"traceparent": TRACEPARENT}).status_code == 200
    # Stopping the gateway flushed the batch.
    assert collector.bodies
    sent = ExportTraceServiceRequest.FromString(b"".join(collector.bodies[:1]))
    spans = [s for rs in sent.resource_spans for ss in rs.scope_spans for s in ss.spans]
    resource = {a.key: a.value.string_value for a in sent.resource_spans[0].resource.attributes}
    assert resource["service.name"] == "gateway-under-test"
    assert [(s.name, s.trace_id.hex(), s.parent_span_id.hex()) for s in spans] == [
        ("me", TRACE_ID, PARENT_ID)
    ]


def test_exporters_follow_otel_traces_exporter(monkeypatch):
    assert exporters("none") == []
    assert [type(e) for e in exporters("console")] == [ConsoleSpanExporter]
    assert len(exporters("otlp, console")) == 2
    with pytest.raises(ValueError, match="zipkin"):
        exporters("zipkin")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    with pytest.raises(ValueError, match="http/protobuf"):
        exporters("otlp")


def test_disabled_the_sdk_is_never_loaded():
    code = (
        "import sys\n"
        "from gateway.app import create_app\n"
        "from gateway.settings import Settings\n"
        "app = create_app(Settings(databricks_host='https://example.invalid'))\n"
        "assert app.state.runtime.telemetry is None\n"
        "print(sorted(m for m in sys.modules if m.startswith(('opentelemetry.sdk', 'gateway.telemetry'))))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
