"""Gateway errors, the table of every code a caller can see, and the one translation boundary.

Every failure reaches a caller as one envelope, `{"error": {code, message, status,
request_id}}`, with a code from `CODES`. `translate(exc)` is the only place an upstream
exception becomes one of those errors, by *class* (never by message text):

    BaseException
     ├── GatewayError                          raised by our own code (CODES gives its status)
     ├── databricks.sdk.errors.DatabricksError by the SDK's class table (_SDK_TABLE)
     ├── TimeoutError (the SDK's spent retry budget)   by its __cause__
     ├── requests.RequestException
     │    ├── JSONDecodeError                   502 DATABRICKS_BAD_RESPONSE (an HTML/proxy page)
     │    ├── ConnectTimeout, ConnectionError   503 DATABRICKS_UNREACHABLE
     │    ├── Timeout                           504 DATABRICKS_TIMEOUT
     │    └── everything else                   502 DATABRICKS_BAD_RESPONSE
     ├── urllib3.exceptions.HTTPError
     │    ├── MaxRetryError                     by its .reason
     │    ├── NewConnectionError, ConnectTimeoutError, ProxyError, SSLError   503 UNREACHABLE
     │    │   (NewConnectionError subclasses ConnectTimeoutError: checked before timeouts)
     │    ├── TimeoutError (read)               504 DATABRICKS_TIMEOUT
     │    ├── IncompleteRead, DecodeError, …    502 DATABRICKS_BAD_RESPONSE
     │    └── ProtocolError (reset, refused)    503 DATABRICKS_UNREACHABLE
     ├── httpx.HTTPError
     │    ├── HTTPStatusError                   by status, through the SDK's own status table
     │    ├── ConnectError, ConnectTimeout, ProxyError, NetworkError   503 UNREACHABLE
     │    ├── TimeoutException                  504 DATABRICKS_TIMEOUT
     │    └── everything else                   502 DATABRICKS_BAD_RESPONSE
     ├── aiohttp.ClientError (the lean path, gateway/upstream.py)
     │    ├── ConnectionTimeoutError            503 DATABRICKS_UNREACHABLE
     │    ├── ServerTimeoutError (a read)       504 DATABRICKS_TIMEOUT
     │    ├── ClientConnectionError (refused, reset, DNS, TLS)   503 DATABRICKS_UNREACHABLE
     │    └── everything else (a cut body, a broken response)   502 DATABRICKS_BAD_RESPONSE
     ├── UpstreamBadResponse                    502 DATABRICKS_BAD_RESPONSE (our own checks:
     │                                          wrong status or content type on a raw call)
     ├── ValueError raised inside the SDK's OAuth code   401 DATABRICKS_UNAUTHENTICATED
     └── ValueError/KeyError/TypeError/AttributeError raised inside the SDK while reading a
         response it did not expect             502 DATABRICKS_BAD_RESPONSE

Anything else is a bug of ours: `translate` returns None, the HTTP layer logs the traceback and
answers 500 INTERNAL_ERROR with a masked message. `python -m gateway.errors` prints the
README's error table from `CODES`; a test keeps the two equal.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import aiohttp
import httpx
import requests
import urllib3
from databricks.sdk import errors as sdk_errors
from databricks.sdk.errors import platform

# databricks.sdk.errors imports DatabricksError without re-exporting it (no __all__, no `as`), so
# under mypy's no_implicit_reexport it is only a public name in the module that defines it.
from databricks.sdk.errors.base import DatabricksError


class Code(NamedTuple):
    status: int
    when: str


CODES: dict[str, Code] = {
    "INVALID_JSON": Code(400, "the body is not a JSON object"),
    "UNKNOWN_OP": Code(400, "no such op (`details.known_ops` lists them)"),
    "INVALID_PARAMS": Code(
        400, "a parameter is missing, mistyped or unknown (the message names it)"
    ),
    "INVALID_CONTENT_LENGTH": Code(400, "a non-numeric Content-Length"),
    "DUPLICATE_HEADER": Code(400, "a security header (secret, token, host) sent more than once"),
    "USER_TOKEN_NOT_ALLOWED": Code(400, "a user token sent to a `service`-mode gateway"),
    "HOST_NEEDS_USER_TOKEN": Code(400, "`X-Databricks-Host` without a user token"),
    "PATH_INVALID": Code(400, "a malformed or hostile path"),
    "PARAMETER_MISMATCH": Code(400, "named-query parameters differ from its markers"),
    "WAREHOUSE_REQUIRED": Code(400, "no `warehouse_id` and no `DATABRICKS_WAREHOUSE_ID`"),
    "SQL_ERROR": Code(400, "the statement FAILED (`details.sql_state`, `details.statement_id`)"),
    "DATABRICKS_BAD_REQUEST": Code(400, "Databricks rejected the request"),
    "GATEWAY_UNAUTHORIZED": Code(401, "missing or wrong `X-Gateway-Secret`"),
    "USER_TOKEN_REQUIRED": Code(401, "`user` mode without a token, or an empty token"),
    "DATABRICKS_UNAUTHENTICATED": Code(401, "Databricks rejected the credentials"),
    "DATABRICKS_PERMISSION_DENIED": Code(
        403,
        "no privilege (or an invalid token: Databricks answers 403; or a Private Link "
        "workspace called from outside its network, which redirects to its login page)",
    ),
    "HOST_NOT_ALLOWED": Code(403, "`X-Databricks-Host` not in `GATEWAY_ALLOWED_HOSTS`"),
    "PATH_FORBIDDEN": Code(403, "a path outside `GATEWAY_ALLOWED_ROOTS`"),
    "RAW_SQL_DISABLED": Code(403, "`statement` while `GATEWAY_ALLOW_RAW_SQL=false`"),
    "NOT_FOUND": Code(404, "the Databricks object does not exist"),
    "QUERY_NOT_FOUND": Code(404, "no such named query"),
    "ROUTE_NOT_FOUND": Code(404, "no such route"),
    "STATEMENT_NOT_FOUND": Code(404, "no statement of that id submitted by this identity"),
    "METHOD_NOT_ALLOWED": Code(405, "wrong HTTP method"),
    "UPLOAD_IDLE": Code(408, "an upload body stalled longer than `GATEWAY_UPLOAD_IDLE_SECONDS`"),
    "ALREADY_EXISTS": Code(409, "the object exists (a file with `overwrite: false`)"),
    "CONFLICT": Code(409, "another conflict reported by Databricks"),
    "DIRECTORY_NOT_EMPTY": Code(409, "deleting a non-empty directory without `recursive`"),
    "QUERY_CANCELED": Code(409, "the statement was cancelled"),
    "CANCELLED": Code(409, "Databricks cancelled the request"),
    "QUERY_RUNNING": Code(
        409, "`fetch_result` before the statement finished (poll `query_status`)"
    ),
    "QUERY_CLOSED": Code(410, "the statement's result is gone"),
    "BODY_TOO_LARGE": Code(413, "the JSON body is over `GATEWAY_MAX_JSON_BODY_BYTES`"),
    "UPLOAD_TOO_LARGE": Code(413, "the upload is over `GATEWAY_MAX_UPLOAD_BYTES`"),
    "TEXT_TOO_LARGE": Code(413, "a text read over `GATEWAY_MAX_TEXT_READ_BYTES`"),
    "TOO_MANY_ENTRIES": Code(413, "a recursive delete over 10,000 entries"),
    "UNSUPPORTED_MEDIA_TYPE": Code(415, "neither JSON nor an octet-stream upload"),
    "RANGE_NOT_SATISFIABLE": Code(416, "`offset` is past the end of the file"),
    "INVALID_UTF8": Code(422, '`encoding: "utf-8"` on a file that is not UTF-8'),
    "RATE_LIMITED": Code(
        429, "Databricks throttled past the retry budget (`Retry-After` passed on)"
    ),
    "HEADERS_TOO_LARGE": Code(431, "request headers over 32 KiB"),
    "CLIENT_DISCONNECTED": Code(
        499, "logged only: the caller left (mid-body uploads store nothing)"
    ),
    "INTERNAL_ERROR": Code(500, "a gateway bug; details only in the gateway's log"),
    "NOT_IMPLEMENTED": Code(501, "Databricks does not implement it"),
    "DATABRICKS_ERROR": Code(502, "Databricks failed (5xx); details only in the gateway's log"),
    "DATABRICKS_BAD_RESPONSE": Code(
        502,
        "Databricks (or a proxy before it) answered something that is not its API (a "
        "redirect to a login page included), or an answer over `GATEWAY_MAX_CHUNK_BYTES`",
    ),
    "DATABRICKS_UNAVAILABLE": Code(503, "Databricks is temporarily unavailable"),
    "DATABRICKS_UNREACHABLE": Code(503, "Databricks could not be reached"),
    "NOT_CONFIGURED": Code(503, "no host or identity configured"),
    "BUSY": Code(503, "too many requests of this op in flight (`Retry-After` given)"),
    "SHUTTING_DOWN": Code(503, "the gateway is stopping; retry on the next one"),
    "DATABRICKS_TIMEOUT": Code(504, "Databricks did not answer within the SDK's budget"),
    "GATEWAY_TIMEOUT": Code(504, "the request passed `GATEWAY_REQUEST_TIMEOUT_SECONDS`"),
    "QUERY_TIMEOUT": Code(504, "the query passed its deadline (the statement is cancelled)"),
}


@dataclass
class GatewayError(Exception):
    """An error with a stable code, an HTTP status and a message safe to show a caller."""

    status: int
    code: str
    message: str
    details: dict[str, Any] | None = None
    databricks_error_code: str | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.code} ({self.status}): {self.message}"

    def body(self, request_id: str) -> dict[str, Any]:
        return {"error": self.fields(request_id)}

    def fields(self, request_id: str) -> dict[str, Any]:
        """The envelope's inside: what an NDJSON stream's `{"error": ...}` line carries."""
        error: dict[str, Any] = {
            "code": self.code,
            "message": self.message,
            "status": self.status,
            "request_id": request_id,
        }
        if self.details:
            error["details"] = self.details
        if self.databricks_error_code:
            error["databricks_error_code"] = self.databricks_error_code
        return error


def error(code: str, message: str, **details: Any) -> GatewayError:
    """A GatewayError whose status comes from the table (a KeyError here is a bug in a test)."""
    return GatewayError(CODES[code].status, code, message, details or None)


def bad_request(code: str, message: str, **details: Any) -> GatewayError:
    return GatewayError(400, code, message, details or None)


def masked_internal_error() -> GatewayError:
    return GatewayError(500, "INTERNAL_ERROR", "The gateway failed unexpectedly; see its log.")


def unreachable() -> GatewayError:
    return GatewayError(503, "DATABRICKS_UNREACHABLE", "Databricks could not be reached.")


def bad_response() -> GatewayError:
    return GatewayError(
        502,
        "DATABRICKS_BAD_RESPONSE",
        "Databricks answered with something that is not its API (a proxy or login page?); "
        "see the gateway log.",
    )


def upstream_timeout() -> GatewayError:
    return GatewayError(504, "DATABRICKS_TIMEOUT", "Databricks did not answer in time.")


class UpstreamBadResponse(Exception):
    """Our own raw calls met a status or content type the API never sends (logged, then 502)."""


# --- the SDK's error classes ----------------------------------------------------------------

# Ordered most specific first: the first class the exception is an instance of wins.
# (class, status, code, whether the Databricks message may be shown)
_SDK_TABLE: tuple[tuple[type[DatabricksError], int, str, bool], ...] = (
    (sdk_errors.BadRequest, 400, "DATABRICKS_BAD_REQUEST", True),
    (sdk_errors.Unauthenticated, 401, "DATABRICKS_UNAUTHENTICATED", False),
    (sdk_errors.PermissionDenied, 403, "DATABRICKS_PERMISSION_DENIED", True),
    (sdk_errors.NotFound, 404, "NOT_FOUND", True),
    (sdk_errors.AlreadyExists, 409, "ALREADY_EXISTS", True),
    (sdk_errors.ResourceAlreadyExists, 409, "ALREADY_EXISTS", True),
    (sdk_errors.ResourceConflict, 409, "CONFLICT", True),
    (sdk_errors.TooManyRequests, 429, "RATE_LIMITED", True),
    (sdk_errors.Cancelled, 409, "CANCELLED", True),
    (sdk_errors.NotImplemented, 501, "NOT_IMPLEMENTED", True),
    (sdk_errors.TemporarilyUnavailable, 503, "DATABRICKS_UNAVAILABLE", False),
    (sdk_errors.DeadlineExceeded, 504, "DATABRICKS_TIMEOUT", False),
    (sdk_errors.InternalError, 502, "DATABRICKS_ERROR", False),
)

_GENERIC_MESSAGES = {
    401: "Databricks rejected the credentials of this identity.",
    502: "Databricks answered with an error; see the gateway log.",
    503: "Databricks is temporarily unavailable.",
    504: "Databricks did not answer in time.",
}


def mapped_class_for(exc_type: type[BaseException]) -> type[DatabricksError] | None:
    """The table row an SDK error class falls under (tests assert every class has one)."""
    for cls, *_ in _SDK_TABLE:
        if issubclass(exc_type, cls):
            return cls
    return None


def _from_databricks_error(exc: DatabricksError) -> GatewayError:
    status, code, show = 502, "DATABRICKS_ERROR", False
    for cls, row_status, row_code, row_show in _SDK_TABLE:
        if isinstance(exc, cls):
            status, code, show = row_status, row_code, row_show
            break
    message = _public_message(exc) if show else _GENERIC_MESSAGES[status]
    code_from_databricks = str(exc.error_code) if exc.error_code is not None else None
    mapped = GatewayError(status, code, message, databricks_error_code=code_from_databricks)
    if status == 429:
        mapped.headers["Retry-After"] = str(
            max(1, int(getattr(exc, "retry_after_secs", None) or 1))
        )
    return mapped


def _public_message(exc: DatabricksError) -> str:
    # The SDK appends ". Config: host=..., token=***, ..." to 401/403 messages; the
    # configuration is ours to log, not the caller's to read.
    message = str(exc).split(". Config:", 1)[0].strip()
    return message or "Databricks refused the request."


def error_from_response(
    status: int, body: bytes = b"", retry_after: str | None = None
) -> DatabricksError:
    """The SDK's own error class for an error response our raw calls received.

    Uses the SDK's public code/status tables so raw calls and SDK calls map identically.
    """
    try:
        raw = json.loads(body) if body else None
    except ValueError:
        raw = None
    if not isinstance(raw, dict):
        raw = {}
    code = raw.get("error_code")
    message = str(raw.get("message") or httpx.codes.get_reason_phrase(status) or "error")
    by_code = platform.ERROR_CODE_MAPPING.get(code) if isinstance(code, str) else None
    cls = by_code or platform.STATUS_CODE_MAPPING.get(status)
    exc = (cls or DatabricksError)(message, error_code=str(code) if code is not None else None)
    if retry_after and retry_after.isdigit():
        exc.retry_after_secs = int(retry_after)
    return exc


# --- transport errors ------------------------------------------------------------------------

_URLLIB3_UNREACHABLE = (
    urllib3.exceptions.NewConnectionError,  # before timeouts: it subclasses ConnectTimeoutError
    urllib3.exceptions.ConnectTimeoutError,
    urllib3.exceptions.ProxyError,
    urllib3.exceptions.SSLError,
)
_URLLIB3_BAD_RESPONSE = (
    urllib3.exceptions.IncompleteRead,  # before ProtocolError, which it subclasses
    urllib3.exceptions.InvalidChunkLength,
    urllib3.exceptions.DecodeError,
    urllib3.exceptions.ResponseError,
    urllib3.exceptions.HeaderParsingError,
    urllib3.exceptions.InvalidHeader,
    urllib3.exceptions.ResponseNotChunked,
    urllib3.exceptions.BodyNotHttplibCompatible,
)


def _from_urllib3(exc: urllib3.exceptions.HTTPError) -> GatewayError:
    reason = getattr(exc, "reason", None)  # MaxRetryError: what the last try met
    if isinstance(exc, urllib3.exceptions.MaxRetryError) and isinstance(
        reason, urllib3.exceptions.HTTPError
    ):
        return _from_urllib3(reason)
    if isinstance(exc, _URLLIB3_UNREACHABLE):
        return unreachable()
    if isinstance(exc, urllib3.exceptions.TimeoutError):
        return upstream_timeout()
    if isinstance(exc, _URLLIB3_BAD_RESPONSE):
        return bad_response()
    if isinstance(exc, urllib3.exceptions.ProtocolError | urllib3.exceptions.PoolError):
        return unreachable()
    return bad_response()


def _from_requests(exc: requests.RequestException) -> GatewayError:
    if isinstance(exc, requests.JSONDecodeError):
        return bad_response()
    if isinstance(exc, requests.ConnectTimeout | requests.ConnectionError):
        return unreachable()  # ConnectTimeout is both a ConnectionError and a Timeout
    if isinstance(exc, requests.Timeout):
        return upstream_timeout()
    return bad_response()


def _from_httpx(exc: httpx.HTTPError) -> GatewayError:
    if isinstance(exc, httpx.HTTPStatusError):
        response = exc.response
        return _from_databricks_error(
            error_from_response(response.status_code, b"", response.headers.get("retry-after"))
        )
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.ProxyError):
        return unreachable()
    if isinstance(exc, httpx.TimeoutException):
        return upstream_timeout()
    if isinstance(exc, httpx.NetworkError):
        return unreachable()
    return bad_response()


def _from_aiohttp(exc: aiohttp.ClientError) -> GatewayError:
    # Its timeouts are ClientConnectionErrors too: the connect one first, then a read's.
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return unreachable()
    if isinstance(exc, aiohttp.ServerTimeoutError):
        return upstream_timeout()
    if isinstance(exc, aiohttp.ClientConnectionError):
        return unreachable()
    return bad_response()


# --- the boundary ----------------------------------------------------------------------------

_SDK_AUTH_MODULES = ("databricks.sdk.oauth", "databricks.sdk.credentials_provider")
_SDK_MODULES = ("databricks.sdk",)
_RESPONSE_SHAPE_ERRORS = (ValueError, KeyError, TypeError, AttributeError)


def translate(exc: BaseException) -> GatewayError | None:
    """The caller-facing error for an upstream failure, or None when the failure is ours."""
    if isinstance(exc, GatewayError):
        return exc
    if isinstance(exc, DatabricksError):
        return _from_databricks_error(exc)
    if isinstance(exc, UpstreamBadResponse):
        return bad_response()
    if isinstance(exc, requests.RequestException):
        return _from_requests(exc)
    if isinstance(exc, urllib3.exceptions.HTTPError):
        return _from_urllib3(exc)
    if isinstance(exc, httpx.HTTPError):
        return _from_httpx(exc)
    if isinstance(exc, aiohttp.ClientError):  # before TimeoutError: its timeouts are both
        return _from_aiohttp(exc)
    if isinstance(exc, TimeoutError):
        return _from_spent_budget(exc)
    if isinstance(exc, ValueError) and _innermost_sdk_module(exc).startswith(_SDK_AUTH_MODULES):
        # A failed OAuth token exchange surfaces as a bare ValueError from the SDK.
        return GatewayError(401, "DATABRICKS_UNAUTHENTICATED", _GENERIC_MESSAGES[401])
    if isinstance(exc, _RESPONSE_SHAPE_ERRORS) and _innermost_sdk_module(exc):
        return bad_response()  # the SDK choked on a response body it did not expect
    return None


# What `requests` calls a ConnectionError (the connect timeout and a peer hanging up included).
_HTTPX_CONNECTION_ERRORS = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.NetworkError,
    httpx.RemoteProtocolError,
    httpx.ProxyError,
)


def _from_spent_budget(exc: TimeoutError) -> GatewayError:
    # The SDK raises the builtin TimeoutError `from` the last error once its retry budget is
    # spent: the cause says what kept failing.
    cause = exc.__cause__
    if isinstance(cause, requests.ConnectionError | urllib3.exceptions.HTTPError):
        return unreachable()
    if isinstance(cause, _HTTPX_CONNECTION_ERRORS):  # as requests would name them
        return unreachable()
    if isinstance(cause, aiohttp.ClientError):  # the lean path's last failure
        return _from_aiohttp(cause)
    if isinstance(cause, sdk_errors.TooManyRequests | sdk_errors.TemporarilyUnavailable):
        return _from_databricks_error(cause)  # throttled or unavailable until the end
    return upstream_timeout()


def _innermost_sdk_module(exc: BaseException) -> str:
    """The module of the deepest SDK frame the exception passed through, or ''."""
    found = ""
    tb = exc.__traceback__
    while tb is not None:
        module = tb.tb_frame.f_globals.get("__name__", "")
        if module.startswith(_SDK_MODULES):
            found = module
        tb = tb.tb_next
    return found


def markdown_table() -> str:
    """The README's error table, one row per code, in the table's order."""
    rows = ["| status | code | when |", "|---|---|---|"]
    rows += [f"| {c.status} | `{name}` | {c.when} |" for name, c in CODES.items()]
    return "\n".join(rows)


if __name__ == "__main__":
    print(markdown_table())
