"""Gateway errors and the one boundary that translates Databricks SDK errors into them.

    GatewayError                      every error a caller can see, as (status, code, message)
      raised by our own code          request problems (400/401/403/413/415/422) and policy
      from_sdk_error(exc)             DatabricksError subclasses, the SDK's TimeoutError and
                                      connection errors, mapped by *class* never by message text

Anything else is a bug: the HTTP layer logs it and answers 500 INTERNAL_ERROR with a masked
message, so no exception text ever reaches a caller.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx
import requests
import urllib3
from databricks.sdk import errors as sdk_errors
from databricks.sdk.errors import platform


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
        return {"error": error}


def bad_request(code: str, message: str, **details: Any) -> GatewayError:
    return GatewayError(400, code, message, details or None)


def masked_internal_error() -> GatewayError:
    return GatewayError(500, "INTERNAL_ERROR", "The gateway failed unexpectedly; see its log.")


# Ordered most specific first: the first class the exception is an instance of wins.
# (status, code, whether the Databricks message may be shown)
_SDK_TABLE: tuple[tuple[type[sdk_errors.DatabricksError], int, str, bool], ...] = (
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


def mapped_class_for(exc_type: type[BaseException]) -> type[sdk_errors.DatabricksError] | None:
    """The table row an SDK error class falls under (tests assert every class has one)."""
    for cls, *_ in _SDK_TABLE:
        if issubclass(exc_type, cls):
            return cls
    return None


def from_sdk_error(exc: BaseException) -> GatewayError | None:
    """Translate an exception raised by the SDK (or by our raw Databricks calls).

    Returns None for exceptions that are not Databricks' doing: those are bugs.
    """
    if isinstance(exc, sdk_errors.DatabricksError):
        return _from_databricks_error(exc)
    if isinstance(exc, TimeoutError):
        # The SDK raises the builtin TimeoutError `from` the last error once its retry
        # budget is spent; a connection failure underneath means "unreachable".
        cause = exc.__cause__
        if isinstance(cause, requests.ConnectionError):
            return unreachable()
        if isinstance(cause, sdk_errors.TooManyRequests | sdk_errors.TemporarilyUnavailable):
            return _from_databricks_error(cause)  # throttled or unavailable until the end
        return GatewayError(504, "DATABRICKS_TIMEOUT", _GENERIC_MESSAGES[504])
    if isinstance(exc, requests.Timeout | httpx.TimeoutException | urllib3.exceptions.TimeoutError):
        return GatewayError(504, "DATABRICKS_TIMEOUT", _GENERIC_MESSAGES[504])
    if isinstance(
        exc, requests.ConnectionError | httpx.TransportError | urllib3.exceptions.HTTPError
    ):
        return unreachable()
    if isinstance(exc, ValueError) and _raised_in(exc, _SDK_AUTH_MODULES):
        # A failed OAuth token exchange surfaces as a bare ValueError from the SDK.
        return GatewayError(401, "DATABRICKS_UNAUTHENTICATED", _GENERIC_MESSAGES[401])
    return None


_SDK_AUTH_MODULES = ("databricks.sdk.oauth", "databricks.sdk.credentials_provider")


def _raised_in(exc: BaseException, modules: tuple[str, ...]) -> bool:
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_globals.get("__name__", "").startswith(modules):
            return True
        tb = tb.tb_next
    return False


def sdk_error_from_response(
    status: int, body: bytes, retry_after: str | None = None
) -> sdk_errors.DatabricksError:
    """Build the SDK's own error class for a response our raw HTTP calls received.

    Uses the SDK's public code/status tables so raw calls and SDK calls map identically.
    """
    try:
        raw = httpx.Response(status, content=body).json()
    except ValueError:
        raw = None
    if not isinstance(raw, dict):
        raw = {}
    code = raw.get("error_code")
    message = str(raw.get("message") or httpx.codes.get_reason_phrase(status) or "error")
    cls = platform.ERROR_CODE_MAPPING.get(code) or platform.STATUS_CODE_MAPPING.get(status)
    cls = cls or sdk_errors.DatabricksError
    error = cls(message, error_code=str(code) if code is not None else None)
    if retry_after and retry_after.isdigit():
        error.retry_after_secs = int(retry_after)
    return error


def unreachable() -> GatewayError:
    return GatewayError(503, "DATABRICKS_UNREACHABLE", "Databricks could not be reached.")


def _from_databricks_error(exc: sdk_errors.DatabricksError) -> GatewayError:
    status, code, show = 502, "DATABRICKS_ERROR", False
    for cls, row_status, row_code, row_show in _SDK_TABLE:
        if isinstance(exc, cls):
            status, code, show = row_status, row_code, row_show
            break
    message = _public_message(exc) if show else _GENERIC_MESSAGES[status]
    error = GatewayError(status, code, message, databricks_error_code=_error_code(exc))
    retry_after = getattr(exc, "retry_after_secs", None)
    if status == 429:
        error.headers["Retry-After"] = str(int(retry_after or 1))
    return error


def _error_code(exc: sdk_errors.DatabricksError) -> str | None:
    code = exc.error_code
    return str(code) if code is not None else None


def _public_message(exc: sdk_errors.DatabricksError) -> str:
    # The SDK appends ". Config: host=..., token=***, ..." to 401/403 messages; the
    # configuration is ours to log, not the caller's to read.
    message = str(exc).split(". Config:", 1)[0].strip()
    return message or "Databricks refused the request."
