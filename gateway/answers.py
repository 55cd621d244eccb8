"""The raw JSON answers of Databricks that the gateway reads itself, checked where they arrive.

Statement Execution answers and Files API directory pages are read as JSON, not through the
SDK's dataclasses (which drop fields the gateway needs). A field of another type than the API
sends (a broken proxy, a hostile upstream) is a 502 DATABRICKS_BAD_RESPONSE here, at the door,
not an AttributeError or IndexError deep in the code that reads it (a 500).

The models name only what the code reads. Every field is optional and unknown fields are
ignored: they check, they do not convert, and the answer goes on as it came.
"""

from __future__ import annotations

import re
from typing import Any, TypeVar

import httpx
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeInt,
    ValidationError,
    field_validator,
)

from gateway.errors import UpstreamBadResponse

M = TypeVar("M", bound=BaseModel)


class _Answer(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class _StatementError(_Answer):
    error_code: str | None = None
    message: str | None = None


class _Status(_Answer):
    state: str | None = None
    error: _StatementError | None = None
    sql_state: str | None = None


class _Column(_Answer):
    name: str | None = None
    type_name: str | None = None
    type_text: str | None = None


class _Schema(_Answer):
    columns: list[_Column] | None = None


class _Manifest(_Answer):
    format: str | None = None
    result_schema: _Schema | None = Field(None, alias="schema")
    total_chunk_count: NonNegativeInt | None = None
    truncated: bool | None = None


# What HTTP/1.1 lets a request carry (RFC 9110): a header name is a token, a value visible
# ASCII, spaces and tabs. Anything else is not sent: the HTTP client refuses it (a CR or LF, a
# non-ASCII character), or a server would read it otherwise.
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_HEADER_VALUE = re.compile(r"[\t\x20-\x7e]*")


class _Link(_Answer):
    """A presigned link the gateway itself fetches: one it could not send is a bad answer."""

    external_link: str
    expiration: str | None = None
    http_headers: dict[str, str] | None = None

    @field_validator("external_link")
    @classmethod
    def _an_http_url(cls, value: str) -> str:
        try:
            url = httpx.URL(value)  # the parser of the client that fetches it
        except httpx.InvalidURL:
            raise ValueError("not a URL") from None
        if url.scheme not in ("https", "http") or not url.host:
            raise ValueError("not an http(s) URL")
        return value

    @field_validator("http_headers")
    @classmethod
    def _sendable(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        for name, text in (value or {}).items():
            if not _HEADER_NAME.fullmatch(name) or not _HEADER_VALUE.fullmatch(text):
                raise ValueError("a header that cannot be sent")
        return value


class _Result(_Answer):
    # Each row (a list of strings, or of typed values on some warehouses) is checked where
    # the rows are read, against the manifest's width: not copied here row by row.
    data_array: list[Any] | None = None
    external_links: list[_Link] | None = None
    attachment: str | None = None
    next_chunk_index: NonNegativeInt | None = None


class _Statement(_Answer):
    statement_id: str | None = None
    status: _Status | None = None
    manifest: _Manifest | None = None
    result: _Result | None = None


class _Entry(_Answer):
    name: str | None = None
    path: str | None = None
    is_directory: bool | None = None
    file_size: int | None = None
    # Epoch milliseconds a date can hold (years 1 to 9999): beyond, no time at all.
    last_modified: int | None = Field(None, ge=-62_135_596_800_000, le=253_402_300_799_999)


class _DirectoryPage(_Answer):
    contents: list[_Entry] | None = None
    next_page_token: str | None = None


def statement(value: Any, what: str) -> dict[str, Any]:
    """A statement's answer (submit, poll): status, manifest, first chunk."""
    return _checked(_Statement, value, what)


def submitted(value: Any) -> dict[str, Any]:
    """A submit's answer, which must name the statement: it is what polls and cancels use."""
    answer = statement(value, "a statement submit")
    if not answer.get("statement_id"):
        raise UpstreamBadResponse("a statement submit answered no statement_id")
    return answer


def chunk(value: Any, what: str) -> dict[str, Any]:
    """A result chunk's answer: its rows, links or attachment."""
    return _checked(_Result, value, what)


def directory_page(value: Any, what: str) -> dict[str, Any]:
    return _checked(_DirectoryPage, value, what)


def json_object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise UpstreamBadResponse(f"{what} answered JSON that is not an object")
    return value


def each_object(items: list[Any], what: str) -> list[dict[str, Any]]:
    """`items`, each a JSON object (`what` names them in the error)."""
    if not all(isinstance(item, dict) for item in items):
        raise UpstreamBadResponse(f"{what}: an item that is not a JSON object")
    return items


def values_of(items: Any, key: str, what: str) -> list[Any]:
    """`key`'s value of each object in `items` that has one (SCIM's emails, groups)."""
    if items is None:
        return []
    if not isinstance(items, list):
        raise UpstreamBadResponse(f"{what} are not a list")
    return [value for item in each_object(items, what) if (value := item.get(key))]


def built(model: type[M], /, **fields: Any) -> M:
    """An op's result `model` built from Databricks' answer (the SDK's dataclasses keep any
    type they are given): a value the model does not take is the answer's fault, not ours.
    `model` is positional only: an answer's own keys (any of them) may come as `fields`."""
    try:
        return model(**fields)
    except ValidationError as exc:
        wrong = _where(exc)
        raise UpstreamBadResponse(
            f"an answer that does not fit a {model.__name__} ({wrong})"
        ) from None


def _checked(model: type[_Answer], value: Any, what: str) -> dict[str, Any]:
    answer = json_object(value, what)
    try:
        model.model_validate(answer)
    except ValidationError as exc:
        raise UpstreamBadResponse(f"{what} answered an unexpected shape ({_where(exc)})") from None
    return answer


def _where(exc: ValidationError) -> str:
    """Where and what was wrong, never the values: the log keeps no result data."""
    return "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:3])
