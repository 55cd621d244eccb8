"""Prometheus metrics, served at `GET /metrics` (behind the gateway secret like every route).

One registry per app (not the library's global one), so apps in one process never share counts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

import anyio
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from gateway.afterwards import Afterwards

CONTENT_TYPE = CONTENT_TYPE_LATEST
MAX_UNCOUNTED = 1024  # answered requests waiting to be counted, at most
# Up to the Apps proxy's ~120 s cut; streams that run longer land in +Inf.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class _AdmissionCollector(Collector):
    """Slots in use and slot limits per op, read from `Runtime.admission` at scrape time."""

    def __init__(self, admission: Callable[[], Mapping[str, anyio.CapacityLimiter]]) -> None:
        self.admission = admission

    def collect(self) -> Iterator[Metric]:
        in_use = GaugeMetricFamily(
            "gateway_admission_slots_in_use", "Admission slots taken, per op.", labels=["op"]
        )
        limit = GaugeMetricFamily(
            "gateway_admission_slots_limit", "Admission slots available, per op.", labels=["op"]
        )
        for op, slots in sorted(self.admission().items()):
            in_use.add_metric([op], slots.borrowed_tokens)
            limit.add_metric([op], slots.total_tokens)
        yield in_use
        yield limit


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "gateway_requests",
            "Requests answered, by op (or route) and HTTP status.",
            ["op", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "gateway_request_duration_seconds",
            "Time from the request's arrival to the end of its response, by op (or route).",
            ["op"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.upstream_errors = Counter(
            "gateway_upstream_errors",
            "Databricks failures, by the gateway's error code and Databricks' error_code.",
            ["code", "databricks_error_code"],
            registry=self.registry,
        )
        # Counted in a plain int, read at scrape time: every request moves it twice, and only
        # the event loop's thread does.
        self.in_flight = 0
        Gauge(
            "gateway_requests_in_flight", "Requests being served.", registry=self.registry
        ).set_function(lambda: self.in_flight)
        # Labelled children by label values (the library looks them up under a lock each time);
        # bounded: ops and routes are a fixed set, statuses a handful.
        self._children: dict[tuple[str, int], tuple[Counter, Histogram]] = {}
        # Answered requests not counted yet: counted a moment later (gateway/afterwards.py), and
        # before any scrape.
        self._answered: list[tuple[str, int, float]] = []
        self._afterwards = Afterwards(self._count_answered)

    def watch_admission(self, admission: Callable[[], Mapping[str, anyio.CapacityLimiter]]) -> None:
        self.registry.register(_AdmissionCollector(admission))

    def observe(self, op: str, status: int, seconds: float) -> None:
        """A request answered: counted, with its duration, once its caller has run."""
        self._answered.append((op, status, seconds))
        if len(self._answered) >= MAX_UNCOUNTED:
            self._afterwards.now()
        else:
            self._afterwards.soon()

    def _count_answered(self) -> None:
        answered, self._answered = self._answered, []
        for op, status, seconds in answered:
            children = self._children.get((op, status))
            if children is None:
                children = (self.requests.labels(op, str(status)), self.latency.labels(op))
                self._children[(op, status)] = children
            children[0].inc()
            children[1].observe(seconds)

    def upstream_error(self, code: str, databricks_error_code: str | None) -> None:
        self.upstream_errors.labels(code, databricks_error_code or "").inc()

    def render(self) -> bytes:
        self._afterwards.now()
        return generate_latest(self.registry)
