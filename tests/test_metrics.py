"""GET /metrics: Prometheus text, behind the secret, counting what the gateway did."""

from __future__ import annotations

import threading

from gateway.testing import Fault
from tests.support import run, scrape, wait_until


def test_metrics_need_the_gateway_secret(gateway):
    _, client = gateway(secret="metrics-secret")
    assert client.get("/metrics").status_code == 200
    assert client.get("/metrics", headers={"X-Gateway-Secret": "wrong"}).status_code == 401


def test_requests_latency_and_upstream_errors_are_counted(gateway):
    _, client = gateway()
    for _ in range(3):
        assert run(client, "me").status_code == 200
    assert run(client, "list_schemas", catalog="no_such_catalog").status_code == 404
    assert run(client, "no_such_op").status_code == 400

    def counted() -> bool:  # each request is counted just after its response is sent
        totals = scrape(client)["gateway_requests_total"]
        return sum(v for k, v in totals.items() if dict(k)["op"] != "/metrics") == 5

    wait_until(counted)
    samples = scrape(client)
    requests = samples["gateway_requests_total"]
    assert requests[(("op", "me"), ("status", "200"))] == 3
    assert requests[(("op", "list_schemas"), ("status", "404"))] == 1
    assert requests[(("op", "/run"), ("status", "400"))] == 1
    assert samples["gateway_request_duration_seconds_count"][(("op", "me"),)] == 3
    errors = samples["gateway_upstream_errors_total"]
    assert sum(v for k, v in errors.items() if ("code", "NOT_FOUND") in k) == 1
    # The scrape itself is in flight while it renders; nothing else is.
    assert samples["gateway_requests_in_flight"][()] == 1


def test_admission_slots_in_use_per_op(gateway, workspace):
    _, client = gateway(max_concurrent_per_op=7)
    assert run(client, "me").status_code == 200
    me = "/api/2.0/preview/scim/v2/Me"
    workspace.inject(Fault(path=me, delay=1))  # holds one `me` slot while we scrape
    held = threading.Thread(target=run, args=(client, "me"))
    held.start()
    try:
        wait_until(lambda: workspace.paths_seen(me).count(me) == 2)
        samples = scrape(client)
    finally:
        held.join(30)
    assert samples["gateway_admission_slots_in_use"][(("op", "me"),)] == 1
    assert samples["gateway_admission_slots_limit"][(("op", "me"),)] == 7
    wait_until(lambda: scrape(client)["gateway_admission_slots_in_use"][(("op", "me"),)] == 0)
