"""`python -m gateway.testing --port N`: run the fake workspace with demo data until stopped."""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from gateway.testing import DEMO, FakeWorkspace, seed_demo

EXTRA_USER_TOKEN = "dapi-local-user-{i}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Fake Databricks workspace (local only).")
    parser.add_argument("--port", type=int, default=8766)
    parser.add_argument("--page-size", type=int, default=100)
    parser.add_argument("--chunk-rows", type=int, default=1000)
    parser.add_argument("--trips", type=int, default=5000, help="rows in samples.nyctaxi.trips")
    parser.add_argument("--sql-delay", type=float, default=0.0, help="seconds a statement runs")
    parser.add_argument(
        "--sql-pending", type=float, default=None, help="seconds a statement waits (PENDING) first"
    )
    parser.add_argument("--latency-ms", type=float, default=0.0, help="added to every API call")
    parser.add_argument(
        "--link-latency-ms", type=float, default=0.0, help="added to every external link fetch"
    )
    parser.add_argument(
        "--extra-users",
        type=int,
        default=0,
        help=f"also accept tokens {EXTRA_USER_TOKEN.format(i=0)} ... (for benchmarks)",
    )
    args = parser.parse_args(argv)
    ws = FakeWorkspace(page_size=args.page_size)
    ws.latency = args.latency_ms / 1000
    seed_demo(ws, trips=args.trips)
    for i in range(args.extra_users):
        ws.add_user(EXTRA_USER_TOKEN.format(i=i), f"bench-user-{i}@example.com")
    if ws.warehouse is not None:
        ws.warehouse.chunk_rows = args.chunk_rows
        ws.warehouse.delay_seconds = args.sql_delay
        if args.sql_pending is not None:
            ws.warehouse.pending_seconds = args.sql_pending
        ws.warehouse.link_latency_seconds = args.link_latency_ms / 1000
    ws.start(port=args.port)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    print(
        f"fake workspace on {ws.url} (NOT a real Databricks workspace)\n"
        f"  service PAT: {DEMO.service_token}   users: {DEMO.alice_token}, {DEMO.bob_token}\n"
        f"  OAuth M2M: {DEMO.client_id} / {DEMO.client_secret}   warehouse: {DEMO.warehouse_id}",
        flush=True,
    )
    stop.wait()
    ws.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
