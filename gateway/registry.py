"""Operations: typed functions registered once, their schemas derived from their signatures.

An op is a plain function (sync ones run in a worker thread, async ones on the loop). Its
parameters become a pydantic model (unknown fields forbidden), its docstring the description,
its return annotation the result schema. Parameters annotated with one of the *injected* types
(subclasses of `Injected`: `Runtime`, `Upload`, `Delivery`) are supplied by the gateway, not
by the caller. The registry knows nothing else of the gateway: it imports no runtime.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Annotated, Any, Literal, TypeVar, Union, get_type_hints

import anyio
import anyio.to_thread
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, create_model
from pydantic_core import core_schema

from gateway.errors import GatewayError, bad_request


class Injected:
    """Marks a type the gateway supplies to ops (the runtime, an upload, the delivery wanted):
    a parameter annotated with one is no caller parameter and has no schema."""


class Stream:
    """Base of results (and inputs) that are byte or row streams rather than JSON values."""

    schema: dict[str, Any] = {"type": "string", "format": "binary"}

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> core_schema.CoreSchema:
        return core_schema.any_schema()

    @classmethod
    def __get_pydantic_json_schema__(cls, schema: Any, handler: Any) -> dict[str, Any]:
        return dict(cls.schema)


class Upload(Stream, Injected):
    """A request body streamed in chunks (injected into ops that accept raw uploads)."""

    def __init__(
        self, chunks: AsyncIterator[bytes], declared_size: int | None, present: bool = True
    ) -> None:
        self.chunks = chunks
        self.declared_size = declared_size
        self.present = present  # False when the request was JSON, not a raw body


# A streamed body's pieces: a memoryview forwards part of a buffer without copying it.
Piece = bytes | memoryview


class ByteStream(Stream):
    """A streamed response: raw bytes (files), NDJSON lines or Arrow messages (queries).

    `chunks` is an async generator: the gateway closes it as soon as the response ends, so its
    upstream socket or statement never outlives the caller."""

    def __init__(
        self,
        chunks: AsyncGenerator[Piece, None],
        media_type: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.chunks = chunks
        self.media_type = media_type
        self.headers = headers or {}


NDJSON = "application/x-ndjson"
ARROW_STREAM = "application/vnd.apache.arrow.stream"


@dataclass(frozen=True)
class Delivery(Injected):
    """How the caller wants the result (from its Accept header): `stream` asks for NDJSON,
    `arrow` for one Arrow IPC stream."""

    stream: bool = False
    arrow: bool = False


F = TypeVar("F", bound=Callable[..., Any])


def quick(fn: F) -> F:
    """Mark an async op as a short upstream read: not worth a task watching for the caller's
    disconnect (its deadline still bounds it, and nothing on Databricks outlives it)."""
    fn.__gateway_quick__ = True  # type: ignore[attr-defined]
    return fn


@dataclass(frozen=True)
class Op:
    name: str
    description: str
    fn: Callable[..., Any]
    params: type[BaseModel]
    result: TypeAdapter[Any]
    injected: dict[str, type]
    is_async: bool
    quick: bool  # see `quick`
    # model field name -> function parameter name (they differ where a name shadows BaseModel's)
    arguments: dict[str, str]

    @property
    def streams_input(self) -> bool:
        """Ops fed a request body stream run under the stream budget instead of the request
        deadline (a large upload legitimately takes long), with an idle limit per chunk."""
        return Upload in self.injected.values()

    def parse(self, raw: dict[str, Any]) -> BaseModel:
        try:
            return self.params.model_validate(raw)
        except ValidationError as exc:
            raise _invalid_params(exc, raw) from None

    async def call(self, params: BaseModel, supplied: dict[type, Any], limiter: Any) -> Any:
        kwargs = {arg: getattr(params, field) for field, arg in self.arguments.items()}
        for name, kind in self.injected.items():
            kwargs[name] = supplied.get(kind)
        if self.is_async:
            return await self.fn(**kwargs)
        # The worker thread inherits this task's contextvars (the request identity). If the
        # deadline passes, the thread is abandoned; the SDK's own timeouts end it soon after.
        return await anyio.to_thread.run_sync(
            partial(self.fn, **kwargs), limiter=limiter, abandon_on_cancel=True
        )

    def dump_json(self, result: Any) -> bytes:
        return self.result.dump_json(result, by_alias=True)

    def describe(self) -> dict[str, Any]:
        params_schema = self.params.model_json_schema()
        params_schema.get("properties", {}).pop("op", None)
        if "op" in params_schema.get("required", []):
            params_schema["required"].remove("op")
        return {
            "name": self.name,
            "description": self.description,
            "params": params_schema,
            "result": self.result.json_schema(),
        }


class Registry:
    """A plain name → Op mapping with a clear error for unknown names."""

    def __init__(self, fns: list[Callable[..., Any]]) -> None:
        self._ops: dict[str, Op] = {}
        for fn in fns:
            op = _build(fn)
            if op.name in self._ops:
                raise ValueError(f"duplicate op {op.name!r}")
            self._ops[op.name] = op

    def names(self) -> list[str]:
        return sorted(self._ops)

    def __iter__(self) -> Iterator[Op]:
        return iter(self._ops[name] for name in self.names())

    def get(self, name: object) -> Op:
        if not isinstance(name, str) or name not in self._ops:
            raise GatewayError(
                400,
                "UNKNOWN_OP",
                f"Unknown op {name!r}; known ops: {', '.join(self.names())}.",
                {"known_ops": self.names()},
            )
        return self._ops[name]

    def request_union(self) -> Any:
        """The /run body as a discriminated union of every op's parameters (for OpenAPI)."""
        models = tuple(op.params for op in self)
        return Annotated[Union[models], Field(discriminator="op")]  # noqa: UP007


def _build(fn: Callable[..., Any]) -> Op:
    name = fn.__name__
    hints = get_type_hints(fn, include_extras=True)
    fields: dict[str, Any] = {"op": (Literal[name], ...)}
    injected: dict[str, type] = {}
    arguments: dict[str, str] = {}
    for pname, param in inspect.signature(fn).parameters.items():
        annotation = hints[pname]
        if isinstance(annotation, type) and issubclass(annotation, Injected):
            injected[pname] = annotation
            continue
        default = ... if param.default is inspect.Parameter.empty else param.default
        field_name = f"{pname}_" if hasattr(BaseModel, pname) else pname
        if field_name != pname:
            annotation = Annotated[annotation, Field(alias=pname)]
        fields[field_name] = (annotation, default)
        arguments[field_name] = pname
    model_name = "".join(part.title() for part in name.split("_")) + "Request"
    params = create_model(model_name, __config__=ConfigDict(extra="forbid"), **fields)
    doc = inspect.getdoc(fn) or name
    return Op(
        name=name,
        description=doc,
        fn=fn,
        params=params,
        result=TypeAdapter(hints.get("return", Any)),
        injected=injected,
        is_async=inspect.iscoroutinefunction(fn),
        quick=getattr(fn, "__gateway_quick__", False),
        arguments=arguments,
    )


def _invalid_params(exc: ValidationError, raw: dict[str, Any]) -> GatewayError:
    """400 naming the parameter as the caller wrote it. A value no member of a union takes gets
    an error per member, each under a tag pydantic adds to its place (`parameters.dict[str,...]
    .a.bool`): the tags go, the deepest place (the member the value's shape chose) is the one
    reported, and what each member there wanted is said in one sentence."""
    problems = [
        {"field": _field_in(raw, err["loc"], err["type"] == "missing"), "message": err["msg"]}
        for err in exc.errors(include_url=False, include_input=False)
    ]
    problems.sort(key=lambda p: -p["field"].count("."))  # stable: pydantic's order otherwise
    first = problems[0]["field"]
    wanted = list(dict.fromkeys(p["message"] for p in problems if p["field"] == first))
    return bad_request(
        "INVALID_PARAMS",
        f"Invalid parameter '{first}': {_one_of(wanted)}.",
        problems=problems,
    )


def _field_in(raw: Any, loc: tuple[int | str, ...], missing: bool) -> str:
    """`loc` as a dotted path into the caller's JSON: the parts that address no key or index
    of it (pydantic's union member tags) are left out, but for the field a caller left out."""
    parts: list[str] = []
    value = raw
    for i, part in enumerate(loc):
        key_of_an_object = isinstance(value, dict) and part in value
        index_of_a_list = (
            isinstance(value, list) and isinstance(part, int) and 0 <= part < len(value)
        )
        if key_of_an_object or index_of_a_list:
            value = value[part]
        elif not (missing and i == len(loc) - 1):
            continue
        parts.append(str(part))
    return ".".join(parts) or "(body)"


_SHOULD = "Input should be "


def _one_of(messages: list[str]) -> str:
    if len(messages) > 1 and all(m.startswith(_SHOULD) for m in messages):
        wanted = [m.removeprefix(_SHOULD) for m in messages]
        return _SHOULD + ", ".join(wanted[:-1]) + " or " + wanted[-1]
    return "; ".join(messages)
