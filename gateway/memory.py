"""The garbage collector's policy: startup's objects frozen, the youngest generation collected
less often under load, and the garbage an aborted transfer leaves collected soon after it.
"""

from __future__ import annotations

import asyncio
import gc
import time

# Container objects allocated (net of those freed) between two collections of the youngest
# generation; CPython's default is 700. See `freeze_startup_objects`.
YOUNG_GENERATION_THRESHOLD = 5_000


def freeze_startup_objects() -> None:
    """Take what startup built (modules, the SDK, schemas, the app) out of the collector's view,
    and collect the youngest generation less often.

    Startup's objects live as long as the process, yet every full collection walked them all: at
    c = 64 that showed as a p99 three to four times the p50 (~95 ms against ~25 ms here); with
    them frozen the p99 was ~32 ms.

    Under load the live objects of the requests in flight (coroutines, futures, dicts) pass 700
    many times a second, and each collection walks them to free next to nothing: reference
    counting frees a request's objects when it ends. `me` at c = 64 against the fake, 30,000
    requests: at 700, 2,540 young collections took 0.42 s of 8.4 s; at 2,000, 642 took 0.25 s;
    at 5,000, 106 took 0.08 s; at 10,000, one.

    What waits longer is garbage in reference cycles, and an aborted transfer leaves some: see
    `collect_soon`. Before it, after 150 aborted uploads and 150 aborted downloads the gateway's
    peak RSS was 134.5-138.4 MiB at 700 (five runs), 140.3-141.2 at 2,000, 141.8-149.1 at 5,000
    and 155.2-166.1 at 10,000 (two or three runs each). Interleaved A/B against 700 (6 pairs,
    twice), 5,000 took gateway CPU per request at c = 64 to 0.92x and 0.96x, req/s to 1.11x and
    1.06x.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_GENERATION_THRESHOLD)


# An aborted request has ended, and its exception become garbage, well within this.
COLLECT_AFTER_SECONDS = 0.1
_next_collection = 0.0  # when the collection last scheduled is due (time.monotonic)


def collect_soon() -> None:
    """A full collection shortly after an aborted transfer; the aborts in that time share it.

    An exception's traceback keeps the frames of the streaming generators it passed through,
    in reference cycles, each frame with the piece it last handed on (the 2 MiB upload piece is
    held by our frames and by httpx's and aiohttp's alike): only the collector frees them, and
    by then they may sit in the oldest generation. Before this, 150 aborted uploads (4 MiB
    sent of 64) and 150 aborted downloads took the gateway's peak RSS to 192-196 MiB (three
    runs), against 146-150 MiB with ~256 KiB upload pieces; with it, 165-170 MiB (4 runs). A full
    collection walks only what startup did not freeze, and an abort flood gets ten a second.
    """
    global _next_collection
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # a generator finalized with no loop running: the process is ending
        return
    # A time, not a flag: a collection whose loop stopped before it ran blocks no later one.
    now = time.monotonic()
    if _next_collection < now:
        _next_collection = now + COLLECT_AFTER_SECONDS
        loop.call_later(COLLECT_AFTER_SECONDS, gc.collect)
