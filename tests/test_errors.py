"""The one error boundary: every SDK error class is mapped; every fault gets its status."""

from __future__ import annotations

import inspect
import time

import pytest
import requests
from databricks.sdk import errors as sdk_errors
from databricks.sdk.errors import platform, private_link

from gateway.errors import from_sdk_error, mapped_class_for
from gateway.testing import Fault
from tests.support import run


def all_sdk_error_classes() -> list[type]:
    found = {
        cls
        for module in (platform, private_link, sdk_errors)
        for _, cls in inspect.getmembers(module, inspect.isclass)
        if issubclass(cls, sdk_errors.DatabricksError) and cls is not sdk_errors.DatabricksError
    }
    return sorted(found, key=lambda c: c.__name__)


@pytest.mark.parametrize("cls", all_sdk_error_classes(), ids=lambda c: c.__name__)
def test_every_sdk_error_class_is_mapped(cls):
    assert mapped_class_for(cls) is not None, f"{cls.__name__} has no row in errors._SDK_TABLE"
    mapped = from_sdk_error(cls("message", error_code="SOME_CODE"))
    assert mapped is not None and 400 <= mapped.status < 600


def test_status_mapping_matches_the_reference():
    cases = {
        sdk_errors.BadRequest: 400,
        sdk_errors.Unauthenticated: 401,
        sdk_errors.PermissionDenied: 403,
        sdk_errors.NotFound: 404,
        sdk_errors.ResourceConflict: 409,
        sdk_errors.TooManyRequests: 429,
        sdk_errors.InternalError: 502,
        sdk_errors.NotImplemented: 501,
        sdk_errors.TemporarilyUnavailable: 503,
        sdk_errors.DeadlineExceeded: 504,
        sdk_errors.DatabricksError: 502,
    }
    for cls, status in cases.items():
        assert from_sdk_error(cls("m")).status == status, cls


def test_sdk_timeout_maps_by_its_cause():
    def timeout_from(cause: BaseException) -> TimeoutError:
        try:
            raise TimeoutError("Timed out after 0:00:30") from cause
        except TimeoutError as exc:
            return exc

    assert from_sdk_error(timeout_from(requests.ConnectionError())).code == "DATABRICKS_UNREACHABLE"
    assert from_sdk_error(
        timeout_from(sdk_errors.TooManyRequests("x", retry_after_secs=7))
    ).headers == {"Retry-After": "7"}
    assert from_sdk_error(timeout_from(ValueError())).status == 504


def test_auth_error_messages_drop_the_sdk_config_summary():
    exc = sdk_errors.PermissionDenied("No access. Config: host=https://h, token=***, auth_type=pat")
    assert from_sdk_error(exc).message == "No access"


def test_unrelated_exceptions_are_not_mapped():
    assert from_sdk_error(KeyError("x")) is None
    assert from_sdk_error(ValueError("x")) is None


# --- through the real SDK and the fake ----------------------------------------------------


def test_not_found_carries_the_databricks_code(gateway):
    _, client = gateway()
    error = run(client, "list_schemas", catalog="nope").json()["error"]
    assert (error["status"], error["code"]) == (404, "NOT_FOUND")
    assert error["databricks_error_code"] == "CATALOG_DOES_NOT_EXIST"
    assert error["message"] == "Catalog 'nope' does not exist."


@pytest.mark.parametrize(
    ("status", "expected", "code"),
    [
        (429, 429, "RATE_LIMITED"),
        (503, 503, "DATABRICKS_UNAVAILABLE"),
        (500, 502, "DATABRICKS_ERROR"),
        (502, 502, "DATABRICKS_ERROR"),
        (504, 504, "DATABRICKS_TIMEOUT"),
        (501, 501, "NOT_IMPLEMENTED"),
    ],
)
def test_persistent_faults_map_within_the_retry_budget(gateway, workspace, status, expected, code):
    _, client = gateway(sdk_retry_timeout_seconds=2)
    workspace.inject(Fault(path="/catalogs", status=status, times=None))
    started = time.monotonic()
    response = run(client, "list_catalogs")
    assert time.monotonic() - started < 2 + 5  # the SDK's budget, never its 300 s default
    assert response.status_code == expected
    assert response.json()["error"]["code"] == code
    if status == 429:
        assert response.headers["retry-after"] == "1"
    if status >= 500:
        assert "Internal error" not in response.text  # 5xx detail stays in our log


def test_transient_faults_are_retried_by_the_sdk(gateway, workspace):
    _, client = gateway(sdk_retry_timeout_seconds=15)  # the SDK sleeps ~1-3 s between tries
    workspace.inject(Fault(path="/catalogs", status=429, times=1))
    workspace.inject(Fault(path="/catalogs", status=503, times=1))
    workspace.inject(Fault(path="/catalogs", drop=True, times=1))
    assert run(client, "list_catalogs").status_code == 200


def test_dropped_connections_until_the_budget_is_spent_are_503(gateway, workspace):
    _, client = gateway(sdk_retry_timeout_seconds=2)
    workspace.inject(Fault(path="/Me", drop=True, times=None))
    error = run(client, "me").json()["error"]
    assert (error["status"], error["code"]) == (503, "DATABRICKS_UNREACHABLE")


def test_slow_databricks_past_the_deadline_is_504_and_the_gateway_stays_healthy(gateway, workspace):
    _, client = gateway(request_timeout_seconds=1)
    workspace.inject(Fault(path="/Me", delay=2.5, times=1))
    started = time.monotonic()
    error = run(client, "me").json()["error"]
    assert time.monotonic() - started < 2.5
    assert (error["status"], error["code"]) == (504, "GATEWAY_TIMEOUT")
    assert client.get("/health").status_code == 200
    assert run(client, "list_catalogs").status_code == 200


def test_unreachable_host_is_503_within_the_deadline(gateway):
    # Each 2 s budget can overrun by one backoff sleep (the SDK checks its deadline before
    # sleeping), so probe + call take up to ~8 s; the deadline leaves room for both.
    _, client = gateway(
        databricks_host="http://127.0.0.1:9",
        sdk_retry_timeout_seconds=2,
        request_timeout_seconds=15,
    )
    started = time.monotonic()
    error = run(client, "me").json()["error"]
    assert time.monotonic() - started < 15
    # The construction-time metadata probe and the call each get a bounded budget, so the
    # caller learns the truth (unreachable) rather than a generic deadline error.
    assert (error["status"], error["code"]) == (503, "DATABRICKS_UNREACHABLE")


def test_client_calls_keep_the_full_retry_budget(workspace):
    from gateway.auth import Identity, SdkBackend
    from gateway.settings import Settings

    backend = SdkBackend(Settings(databricks_host=workspace.url, sdk_retry_timeout_seconds=40))
    client = backend.client(Identity("user", workspace.url, "dapi-local-alice"))
    assert client.config.retry_timeout_seconds == 40
    assert client.api_client._api_client._retry_timeout_seconds == 40


def test_client_construction_against_an_unreachable_host_spends_only_the_probe_budget():
    from gateway.auth import METADATA_PROBE_SECONDS, Identity, SdkBackend
    from gateway.settings import Settings

    backend = SdkBackend(
        Settings(databricks_host="http://127.0.0.1:9", sdk_retry_timeout_seconds=30)
    )
    started = time.monotonic()
    client = backend.client(Identity("user", "http://127.0.0.1:9", "dapi-x"))
    # Probe budget plus at most one backoff sleep past it; without the cap this takes ~30 s.
    assert time.monotonic() - started < METADATA_PROBE_SECONDS + 5
    assert client.config.retry_timeout_seconds == 30
