"""bench/run.py's report: RESULTS.md is built from a run's results alone, for a `--quick` run
(100,000 rows, so no 10M-row goals) and for a full one. The results are a `--quick` run's,
kept in tests/data with its per-sample lists left out (the report reads only the figures)."""

from __future__ import annotations

import copy
import json
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
QUICK_RESULTS = Path(__file__).parent / "data" / "bench_results_quick.json"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    # run.py imports its siblings (stack, load, layers) by name, as bench/run.sh runs it.
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import run
    finally:
        sys.path.remove(str(ROOT / "bench"))
    return run


@pytest.fixture
def quick() -> dict[str, Any]:
    results: dict[str, Any] = json.loads(QUICK_RESULTS.read_text())
    return results


def goal_rows(markdown: str) -> list[list[str]]:
    goals = markdown.split("## Goals", 1)[1].split("\n## ", 1)[0]
    return [line.split(" | ") for line in goals.splitlines() if line.startswith("| issue ")]


def test_a_quick_run_renders_with_its_unmeasured_goal_said_so(
    bench: ModuleType, quick: dict[str, Any]
) -> None:
    markdown = bench.results_markdown(quick)
    rows = goal_rows(markdown)
    unmeasured = [row for row in rows if "not measured in this run" in row[2]]
    assert len(unmeasured) == 1 and "peak RSS growth at 10,000,000 rows" in unmeasured[0][1]
    met = sum(1 for row in rows if row[4] == "met")
    assert f"{met} of {len(rows)} goals met." in markdown


def test_a_full_run_renders_its_10m_row_goals(bench: ModuleType, quick: dict[str, Any]) -> None:
    full = copy.deepcopy(quick)
    ten_million = copy.deepcopy(full["query"][0])
    ten_million["rows"] = 10_000_000
    full["query"].append(ten_million)
    markdown = bench.results_markdown(full)
    rows = goal_rows(markdown)
    assert not any("not measured" in row[2] for row in rows)
    assert any(row[1] == "10,000,000 rows: gateway peak RSS growth" for row in rows)


def test_every_missed_goal_is_printed_missed_and_accounted_for(
    bench: ModuleType, quick: dict[str, Any]
) -> None:
    goals = bench.goals(quick)
    markdown = bench.results_markdown(quick)
    missed = [g for g in goals if g["met"] is False]
    assert len(re.findall(r"\| \*\*MISSED\*\* \|", markdown)) == len(missed)
    # Each missed goal is named again in the sentences that say what bounds it.
    sentences = markdown.split("## Goals", 1)[1].split("## Issue 14's table", 1)[0]
    for g in missed:
        assert sentences.count(g["goal"]) >= 2, g["goal"]


def test_issue_14s_table_carries_this_runs_figures(
    bench: ModuleType, quick: dict[str, Any]
) -> None:
    table = bench.results_markdown(quick).split("## Issue 14's table, re-measured", 1)[1]
    me = next(r for r in quick["per_op"] if r["op"] == "me" and r["latency_ms"] == 0)
    assert f"| 2.09-2.23x | {bench.ratio(me['p50_ratio'], 1.3)} |" in table
    c64 = next(r for r in quick["concurrency"] if r["concurrency"] == 64)
    assert f"{c64['gateway']['rps']['median']:,.0f}" in table.split("\n## ", 1)[0]


def test_an_arrow_streams_time_is_split_at_its_first_byte(
    bench: ModuleType, quick: dict[str, Any]
) -> None:
    run = copy.deepcopy(quick)
    q = run["query"][0]
    q.update(
        rows=10_000_000,
        chunks=105,
        link_latency_ms=20,
        arrow_head_ms={"median": 2200.0, "min": 2000.0, "max": 2400.0},
        seconds={"arrow": {"median": 3.5}, "ndjson": {"median": 10.0}, "sdk": {"median": 30.0}},
        fake_execution_ms={"median": 2150.0, "min": 2000.0, "max": 2300.0},
    )
    run["gateway_settings"]["prefetch_chunks"] = 4
    markdown = bench.results_markdown(run)
    # 104 chunks after the first, 4 links at a time: 26 rounds of 20 ms.
    assert (
        "a stream took 3.50 s (medians of the samples), 2.20 s of it before its first byte"
        in markdown
    )
    assert "the fake's execution alone, timed apart: 2.15 s" in markdown
    assert "1.30 s for the 104 chunks after" in markdown
    assert "at least 26 x 20 ms = 0.52 s" in markdown
    assert f"would reach {10.0 / (2.2 + 0.52):.2f}x its rows/s" in markdown
    arrow_goal = next(g for g in bench.goals(run) if "Arrow passthrough" in g["goal"])
    assert arrow_goal["note"].startswith("63% of an Arrow stream's time came before its first")
    # A run from before these were timed renders without them.
    assert "before its first byte" not in bench.results_markdown(quick)


# --- the ablation section ---------------------------------------------------------------------


def ablation_results(p50: dict[str, float]) -> dict[str, Any]:
    """An ablation result whose every sample has these p50s (ms), by server."""
    return {
        "calls_per_sample": 200,
        "fresh_servers_per_sample": True,
        "servers": [
            {
                "name": name,
                "p50_ms": _figure([ms] * 3),
                "loop_cpu_us": _figure([ms * 500] * 3),
                "above_relay_ms": _figure([ms - p50["bare relay"]] * 3),
            }
            for name, ms in p50.items()
        ],
    }


def _figure(samples: list[float]) -> dict[str, Any]:
    return {"median": samples[0], "min": samples[0], "max": samples[0], "samples": samples}


SERVERS = {
    "gateway": 1.00,
    "without result typing": 0.95,  # typing 0.05
    "and without the deadline": 0.92,  # the deadline 0.03
    "and without the request context": 0.85,  # the context 0.07
    "and without op dispatch": 0.75,  # dispatch 0.10
    "bare relay": 0.70,  # the lean call alone: 0.05 above the relay
}


def express_at_0ms(direct: float, relay: float) -> dict[str, Any]:
    row = json.loads(QUICK_RESULTS.read_text())["express"][0]
    row = copy.deepcopy(row)
    assert row["latency_ms"] == 0
    for side, ms in {
        "express_gateway": 1.50,
        "node_client_gateway": 1.00,  # so Express and the caller's hop: 0.50 ms
        "express_direct_client": direct,
        "node_bare_relay": relay,
    }.items():
        row[side]["p50_ms"]["median"] = ms
    return row


def test_the_report_says_how_many_layers_fit_the_express_goals_room(bench: ModuleType):
    # Room: 1.6 x 0.80 - 0.50 - 0.60 = 0.18 ms above the relay; the lean call takes 0.05, so
    # 0.13 ms is left: the deadline (0.03) and typing (0.05) fit, the context (0.07) no more.
    lines = bench.ablation_markdown(ablation_results(SERVERS), [express_at_0ms(0.80, 0.60)])
    text = "\n".join(lines)
    assert "| and without the deadline | 0.92 (0.92-0.92) | 0.220 (0.220-0.220) | 0.030 |" in text
    assert "result typing 0.050 ms; the deadline 0.030 ms" in text
    assert "(0.250 ms together)" in text
    assert "took 0.050 ms above the bare relay" in text
    assert "leaves the gateway's call 0.180 ms above the bare relay's" in text
    assert "leaving 0.130 ms for the gateway's layers, which cost 0.250 ms: 2 of the 4 fit" in text
    assert "(the deadline, result typing)" in text


def test_the_report_says_when_no_layer_fits(bench: ModuleType):
    # Room: 1.6 x 0.70 - 0.50 - 0.60 = 0.02 ms, less than the lean call alone.
    text = "\n".join(
        bench.ablation_markdown(ablation_results(SERVERS), [express_at_0ms(0.70, 0.60)])
    )
    assert (
        "The lean upstream call alone takes 0.050 ms, more than all of it: no layer fits." in text
    )


def test_the_express_goals_line_says_what_the_ablation_found(
    bench: ModuleType, quick: dict[str, Any]
) -> None:
    results = copy.deepcopy(quick)
    results["ablation"] = ablation_results(SERVERS)
    results["express"][0] = express_at_0ms(0.80, 0.60)  # a 1.50 / 0.80 = 1.88x route: missed
    results["express"][0]["p50_ratio"]["median"] = 1.88
    missed = bench.results_markdown(results).split("## Goals", 1)[1].split("\n## ", 1)[0]
    assert (
        "the ablation section: the goal leaves the gateway's call 0.180 ms above the bare "
        "relay's; with every layer taken away it took 0.050 ms above it; 2 of its 4 layers fit"
    ) in missed


def test_when_the_relay_alone_passes_the_express_goal_no_room_is_left(
    bench: ModuleType, quick: dict[str, Any]
) -> None:
    # 1.6 x 0.60 = 0.96 ms for the route: Express's 0.50 and the relay's 0.60 already take 1.10.
    results = copy.deepcopy(quick)
    results["ablation"] = ablation_results(SERVERS)
    results["express"][0] = express_at_0ms(0.60, 0.60)
    results["express"][0]["p50_ratio"]["median"] = 2.5
    markdown = bench.results_markdown(results)
    assert (
        "leaves the gateway's call no room: the bare relay's own call (0.60 ms) already passes "
        "it by 0.140 ms, so no layer fits, nor the lean upstream call (0.050 ms above the relay)."
    ) in markdown
    missed = markdown.split("## Goals", 1)[1].split("\n## ", 1)[0]
    assert "missed by the bare relay too" in missed
    assert (
        "(the ablation section: the bare relay's own call passes the room the goal leaves by "
        in missed
    )


def test_layers_that_tie_are_listed_by_name(bench: ModuleType) -> None:
    # A set's order changes with the process's hash seed: `--render` must rebuild the same file.
    # Ten tied layers: a set gives them in name order by chance once in 10! orders.
    tied = {name: 9.0 for name in "jihgfedcba"}
    profile = {
        "gateway": {"per_call_us": {**tied, "top": 20.0}},
        "bare_relay": {"per_call_us": {"top": 1.0}},
    }
    assert list(bench.layer_differences(profile)) == ["top", *"abcdefghij"]


def test_a_missed_file_goals_line_says_what_each_path_spent(
    bench: ModuleType, quick: dict[str, Any]
) -> None:
    results = copy.deepcopy(quick)
    upload = results["files"]["upload"]
    upload["ratio"]["median"] = 0.5  # missed
    cpu = upload["cpu_s_per_gib"]
    cpu["gateway"]["gateway"]["median"] = 0.761
    cpu["bare_relay"]["bare_relay"]["median"] = 0.642
    cpu["gateway"]["fake"]["median"] = 0.958
    cpu["bare_relay"]["fake"]["median"] = 0.463
    cpu["direct_sdk"]["fake"]["median"] = 0.891
    missed = bench.results_markdown(results).split("## Goals", 1)[1].split("\n## ", 1)[0]
    line = next(s for s in missed.splitlines() if "upload throughput" in s and s.startswith("- "))
    assert (
        "(the files CPU section, per GiB: the gateway 0.76 CPU-s, the bare relay 0.64; the fake "
        "on their paths 0.96 and 0.46, on the direct SDK's 0.89)"
    ) in line
