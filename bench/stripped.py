"""The gateway with some of its layers taken away: the bench's ablation section only, to measure
what each layer costs a call, never to serve anything.

    python bench/stripped.py [LAYER ...]   (the gateway's own environment, as `python -m gateway`)

LAYER, each taken away from the shipped gateway by replacing the function that is the layer:
- `typing`: a listing's items are not validated into their result models, and the answer is
  the upstream's JSON as `orjson` writes it (no TypeAdapter);
- `deadline`: the op runs without its `asyncio.timeout` and the worker threads' deadline, and
  without the error mapping around them (the fake answers every call here);
- `context`: POST /run skips the request context (request id, X-Gateway-Secret check, header
  checks, metrics, the log line) and goes straight to its endpoint;
- `dispatch`: POST /run skips everything of its endpoint (body parsing, op and parameter
  validation, identity from headers, admission, rendering) but the service identity's auth
  context and the lean upstream's listing of catalogs (`list_catalogs` is the only op it
  answers): what is left is the lean upstream call itself, in the gateway's server stack.

What stays in every case: uvicorn under the gateway's protocol (serve.py), the app's startup,
and the lean upstream (auth headers from the SDK's Config, retries, the pooled aiohttp session).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import orjson

from gateway import app as app_module
from gateway import middleware, registry
from gateway.auth import clear_databricks_auth, resolve_identity, set_databricks_auth
from gateway.ops import catalog
from gateway.registry import Op
from gateway.runtime import Runtime


def replace(owner: object, name: str, replacement: Any) -> None:
    """`owner.name` replaced; one that is not there (renamed in the gateway) stops the start."""
    if not hasattr(owner, name):
        raise SystemExit(f"stripped.py: {owner!r} has no {name} to replace any more")
    setattr(owner, name, replacement)


def without_typing() -> None:
    replace(catalog, "_from_api", lambda model, raw, **given: raw)
    replace(registry.Op, "dump_json", lambda self, result: orjson.dumps(result))


def without_deadline() -> None:
    async def call(op: Op, params: Any, supplied: dict[type, Any], runtime: Runtime) -> Any:
        return await op.call(params, supplied, runtime.limiter)

    replace(app_module, "_call_with_deadline", call)


def without_context() -> None:
    shipped = middleware.RequestContext.__call__

    async def call(self: middleware.RequestContext, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == "/run" and self.post_run is not None:
            scope["state"] = {"request_id": "-", "log": {"op": None, "identity": None}}
            await self.post_run(scope, receive, send)
            return
        await shipped(self, scope, receive, send)

    replace(middleware.RequestContext, "__call__", call)


def without_dispatch() -> None:
    async def call(self: app_module.RunEndpoint, scope: Any, receive: Any, send: Any) -> None:
        while (await receive()).get("more_body"):
            pass
        identity = resolve_identity(self.runtime.settings, {})
        reset = set_databricks_auth(identity, self.runtime.backend)
        try:
            items = await self.runtime.upstream.catalogs()
        finally:
            clear_databricks_auth(reset)
        await middleware.JsonAnswer(orjson.dumps({"result": items})).send(send)

    replace(app_module.RunEndpoint, "__call__", call)


LAYERS: dict[str, Callable[[], None]] = {
    "typing": without_typing,
    "deadline": without_deadline,
    "context": without_context,
    "dispatch": without_dispatch,
}


def main(layers: list[str]) -> int:
    unknown = set(layers) - set(LAYERS)
    if unknown:
        raise SystemExit(f"unknown layers: {sorted(unknown)}; known: {list(LAYERS)}")
    for layer in layers:
        LAYERS[layer]()
    from gateway.__main__ import main as serve  # after the replacements, as the app is built

    return serve()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
