"""What a request leaves to do once its caller has the answer (its metrics, the write of its log
line): done a moment later, in one go for every request answered meanwhile.

Not at once: the answer's write wakes the caller, and what the gateway's thread did right after
it delayed the caller's next step, on this 2-CPU machine at least. Interleaved A/B against
doing it at once, fresh servers for each of 16 rounds (`list_catalogs` sequential from undici;
`me` at c = 64 from bench/load.py, 8 rounds):
- fake at 20 ms, as when Databricks takes its time and the CPUs idle in between: p50 0.131 ms
  lower (lower in 15 of 16 rounds), the gateway's CPU per call 17 µs lower;
- fake at 0 ms: the same p50 (0.996x, lower in 9 of 16), CPU per call 4 µs higher;
- c = 64: 1.001x the req/s at 0.991x the CPU per request.
A cause that fits, not shown: Linux often wakes a socket's reader on the CPU that wrote to it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

AFTER_ANSWER_SECONDS = 0.002


class Afterwards:
    """Calls `work` once, `AFTER_ANSWER_SECONDS` after the first `soon()` since it last ran
    (later calls join that run); at once where no event loop runs (a worker thread, a test)."""

    def __init__(self, work: Callable[[], None]) -> None:
        self.work = work
        self._due: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def soon(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.work()
            return
        # A run due on another loop (one that ended before it came) will not come.
        if self._due is not None and self._loop is loop:
            return
        self._loop = loop
        self._due = loop.call_later(AFTER_ANSWER_SECONDS, self._run)

    def now(self) -> None:
        """What is due runs now (a scrape, a shutdown): nothing is left for the timer."""
        if self._due is not None:
            self._due.cancel()
        self._run()

    def _run(self) -> None:
        self._due = None
        self.work()
