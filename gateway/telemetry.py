"""Optional OpenTelemetry: one span per `/run` request, named after its op (`GATEWAY_OTEL=1`).

Needs the `otel` extra (`pip install 'databricks-gateway[otel]'`). Imported only when enabled
(`Runtime.create`), so a gateway without it neither loads the SDK nor pays per request.

The span's parent is the caller's W3C `traceparent` (already validated by `gateway.tracing`);
its attributes are the op, the identity kind, the HTTP status and, on failure, the gateway's
error code and Databricks' `error_code`. Where spans go follows the standard variables:
`OTEL_TRACES_EXPORTER` (`otlp`, the default, `console` or `none`), `OTEL_EXPORTER_OTLP_*` for
the OTLP/HTTP endpoint and headers, `OTEL_SERVICE_NAME` / `OTEL_RESOURCE_ATTRIBUTES`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.trace import Span, SpanKind, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from gateway import __version__

SERVICE_NAME = "databricks-gateway"
_PROPAGATOR = TraceContextTextMapPropagator()


class Telemetry:
    """Starts each request's span and ends it with what the request turned out to be."""

    def __init__(self, provider: TracerProvider) -> None:
        self.provider = provider
        self.tracer = provider.get_tracer("gateway", __version__)

    @classmethod
    def from_environment(cls) -> Telemetry:
        service = os.environ.get("OTEL_SERVICE_NAME") or SERVICE_NAME
        provider = TracerProvider(resource=Resource.create({"service.name": service}))
        for exporter in exporters(os.environ.get("OTEL_TRACES_EXPORTER") or "otlp"):
            # Batched: exporting happens on the SDK's thread, never on the request path.
            provider.add_span_processor(BatchSpanProcessor(exporter))
        return cls(provider)

    def start(self, traceparent: str | None) -> RequestSpan:
        parent: Context | None = None
        if traceparent is not None:
            parent = _PROPAGATOR.extract({"traceparent": traceparent})
        # Renamed after the op once the body is read; see RequestSpan.end.
        span = self.tracer.start_span("POST /run", context=parent, kind=SpanKind.SERVER)
        return RequestSpan(span)

    def shutdown(self) -> None:
        """Flush what is batched (bounded by the exporters' own timeouts)."""
        self.provider.shutdown()


class RequestSpan:
    """One request's span, ended with what the request turned out to be."""

    def __init__(self, span: Span) -> None:
        self.span = span

    def end(self, fields: Mapping[str, Any], status: int) -> None:
        """`fields`: the request's log fields (op, identity, error codes) as the app filled them."""
        if fields.get("op"):
            self.span.update_name(fields["op"])
        attributes = {
            "gateway.op": fields.get("op"),
            "gateway.identity": fields.get("identity"),
            "http.response.status_code": status,
            "gateway.error_code": fields.get("error_code"),
            "databricks.error_code": fields.get("databricks_error_code"),
        }
        self.span.set_attributes({k: v for k, v in attributes.items() if v is not None})
        if status >= 500:  # HTTP server convention: a 4xx is the caller's, not a failed span
            self.span.set_status(StatusCode.ERROR, fields.get("error_code"))
        self.span.end()


def exporters(names: str) -> list[SpanExporter]:
    """`OTEL_TRACES_EXPORTER`'s comma-separated list, as exporters; unknown names fail startup."""
    chosen: list[SpanExporter] = []
    for name in (n.strip() for n in names.split(",")):
        if name == "none":
            continue
        if name == "console":
            chosen.append(ConsoleSpanExporter())
        elif name == "otlp":
            chosen.append(_otlp_exporter())
        else:
            raise ValueError(
                f"OTEL_TRACES_EXPORTER={name!r}: the gateway knows otlp, console, none"
            )
    return chosen


def _otlp_exporter() -> SpanExporter:
    # Only OTLP over HTTP is in the extra (no gRPC stack in a sidecar); the exporter reads
    # OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT, _HEADERS, _TIMEOUT... itself. Imported here: it
    # brings protobuf and requests along, which `console` or `none` do not need.
    protocol = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or os.environ.get(
        "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"
    )
    if protocol != "http/protobuf":
        raise ValueError(f"OTLP protocol {protocol!r}: the gateway exports http/protobuf only")
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()
