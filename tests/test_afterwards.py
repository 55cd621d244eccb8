"""What a request leaves for after its answer (gateway/afterwards.py): its metrics and the write
of its log line run a moment later, together, and nothing is lost or left waiting."""

from __future__ import annotations

import asyncio

import pytest

from gateway import afterwards
from gateway.afterwards import Afterwards
from gateway.metrics import MAX_UNCOUNTED, Metrics

HOUR = 3600.0  # a delay no test waits out: only `now()` (or its absence) can run the work


def test_the_work_of_many_answers_runs_once_and_not_in_their_turn(monkeypatch):
    monkeypatch.setattr(afterwards, "AFTER_ANSWER_SECONDS", HOUR)
    runs: list[int] = []
    later = Afterwards(lambda: runs.append(1))

    async def answers() -> None:
        for _ in range(3):
            later.soon()
        await asyncio.sleep(0)
        assert runs == []  # not in the turn that answered, nor the next
        later.now()
        assert runs == [1]

    asyncio.run(answers())


def test_the_work_runs_by_itself_after_the_delay(monkeypatch):
    monkeypatch.setattr(afterwards, "AFTER_ANSWER_SECONDS", 0.001)
    runs: list[int] = []
    later = Afterwards(lambda: runs.append(1))

    async def answer() -> None:
        later.soon()
        later.soon()
        await asyncio.sleep(0.05)  # a timer due sooner runs before this one ends

    asyncio.run(answer())
    assert runs == [1]


def test_without_an_event_loop_the_work_runs_at_once():
    runs: list[int] = []
    Afterwards(lambda: runs.append(1)).soon()
    assert runs == [1]


def test_a_run_due_on_a_loop_that_ended_does_not_hold_back_the_next(monkeypatch):
    runs: list[int] = []
    later = Afterwards(lambda: runs.append(1))

    async def answer() -> None:
        later.soon()

    monkeypatch.setattr(afterwards, "AFTER_ANSWER_SECONDS", HOUR)
    asyncio.run(answer())  # ends with its run still due: it never comes

    async def answer_and_wait() -> None:
        later.soon()
        await asyncio.sleep(0.05)

    monkeypatch.setattr(afterwards, "AFTER_ANSWER_SECONDS", 0.001)
    asyncio.run(answer_and_wait())
    assert runs == [1]


def test_a_scrape_counts_every_request_answered_before_it(monkeypatch):
    monkeypatch.setattr(afterwards, "AFTER_ANSWER_SECONDS", HOUR)
    metrics = Metrics()

    async def answers_then_scrape() -> bytes:
        for status in (200, 200, 404):
            metrics.observe("me", status, 0.001)
        return metrics.render()

    text = asyncio.run(answers_then_scrape()).decode()
    assert 'gateway_requests_total{op="me",status="200"} 2.0' in text
    assert 'gateway_requests_total{op="me",status="404"} 1.0' in text
    assert 'gateway_request_duration_seconds_count{op="me"} 3.0' in text


@pytest.mark.parametrize("answered", [MAX_UNCOUNTED - 1, MAX_UNCOUNTED])
def test_requests_waiting_to_be_counted_are_bounded(monkeypatch, answered):
    monkeypatch.setattr(afterwards, "AFTER_ANSWER_SECONDS", HOUR)
    metrics = Metrics()

    async def answers() -> float | None:
        for _ in range(answered):
            metrics.observe("me", 200, 0.001)
        labels = {"op": "me", "status": "200"}
        return metrics.registry.get_sample_value("gateway_requests_total", labels)

    counted = asyncio.run(answers())
    assert counted == (answered if answered == MAX_UNCOUNTED else None)
