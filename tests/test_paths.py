"""Path confinement: hostile paths never reach Databricks; allowed roots hold."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.errors import GatewayError
from gateway.paths import confine, normalise_roots
from tests.support import run

ROOTS = ["/Volumes/main/app/files"]

HOSTILE = [
    "/Volumes/main/app/files/../../default/landing/x",
    "/Volumes/main/app/files/./x",
    "/Volumes/main/app/files/a/../../files2/x",
    "/Volumes/main/app/files/..",
    "/Volumes/main/app/files//x",
    "/Volumes/main/app/files/a%2e%2e/x",
    "/Volumes/main/app/files/%2e%2e/%2e%2e/x",
    "/Volumes/main/app/files/a%2fb",
    "/Volumes/main/app/files/a%2Fb",
    "/Volumes/main/app/files/a%5cb",
    "/Volumes/main/app/files/a%00b",
    "/Volumes/main/app/files/a%252e%252e/x",
    "/Volumes/main/app/files/a\x00b",
    "/Volumes/main/app/files/a\nb",
    "/Volumes/main/app/files/a\rb",
    "/Volumes/main/app/files/a\tb",
    "/Volumes/main/app/files/a\u202eb",
    "/Volumes/main/app/files/a\u200bb",
    "/Volumes/main/app/files\\..\\x",
    "/Volumes/main/app/files/a\\b",
    "/etc/passwd",
    "/Workspace/Users/x",
    "/dbfs/tmp/x",
    "Volumes/main/app/files/x",
    "../files/x",
    "/volumes/main/app/files/x",
    "/Volumes/main/app",
    "/Volumes/main",
    "/Volumes/",
    "",
    "/Volumes/main/app/files/" + "a" * 4100,
    "/Volumes/main/app/files/ x",
    "/Volumes/main.x/app/files/x",
    "/Volumes/main/app/fil'es/x",
]

OUTSIDE = [
    "/Volumes/main/app/files2/x",
    "/Volumes/main/default/landing/x",
    "/Volumes/finance/reports/exports/x",
    "/Volumes/main/app/filesX",
]


@pytest.mark.parametrize("path", HOSTILE)
def test_hostile_paths_are_invalid(path):
    with pytest.raises(GatewayError) as caught:
        confine(path, ROOTS, None)
    assert caught.value.status == 400


@pytest.mark.parametrize("path", OUTSIDE)
def test_paths_outside_the_roots_are_forbidden(path):
    with pytest.raises(GatewayError) as caught:
        confine(path, ROOTS, None)
    assert (caught.value.status, caught.value.code) == (403, "PATH_FORBIDDEN")


def test_good_paths_pass_unchanged():
    for path in ["/Volumes/main/app/files", "/Volumes/main/app/files/a b/naïve #1?.txt"]:
        assert confine(path, ROOTS, None) == path
    assert confine("/Volumes/main/app/files/dir/", ROOTS, None) == "/Volumes/main/app/files/dir"


def test_relative_paths_resolve_in_the_default_volume():
    assert confine("a/b.txt", ROOTS, "/Volumes/main/app/files") == "/Volumes/main/app/files/a/b.txt"
    with pytest.raises(GatewayError):
        confine("a/b.txt", ROOTS, None)
    with pytest.raises(GatewayError):
        confine("../landing/x", [], "/Volumes/main/app/files")


def test_catalog_and_schema_level_roots():
    assert confine("/Volumes/main/app/other/x", ["/Volumes/main"], None)
    with pytest.raises(GatewayError):
        confine("/Volumes/mainx/app/other/x", ["/Volumes/main"], None)


def test_bad_roots_fail_at_startup():
    with pytest.raises(ValueError):
        normalise_roots(["/tmp"])
    with pytest.raises(ValueError):
        normalise_roots(["/Volumes/main/../x"])


@pytest.mark.parametrize("path", HOSTILE + OUTSIDE)
def test_hostile_paths_never_reach_the_workspace(gateway, workspace, path):
    _, client = gateway(allowed_roots=ROOTS)
    workspace.requests.clear()
    for op in ["file_info", "list_directory", "create_directory", "delete_file", "read_file"]:
        response = run(client, op, path=path)
        assert response.status_code in (400, 403), (op, response.text)
        assert response.json()["error"]["code"] in (
            "PATH_INVALID",
            "PATH_FORBIDDEN",
            "INVALID_PARAMS",
        )
    response = run(client, "write_file", path=path, content="x")
    assert response.status_code in (400, 403)
    assert workspace.paths_seen() == []


segment = st.one_of(
    st.sampled_from(["..", ".", "", "%2e%2e", "%2f", "a%5c", "files", "app", "main", "x y", "ü"]),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=6),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(segment, min_size=0, max_size=8),
    st.sampled_from(["/Volumes/main/app/files/", "/Volumes/", "/", ""]),
)
def test_property_confined_paths_stay_under_the_roots(segments, prefix):
    path = prefix + "/".join(segments)
    try:
        canonical = confine(path, ROOTS, None)
    except GatewayError:
        return
    parts = canonical.split("/")
    assert canonical == ROOTS[0] or canonical.startswith(ROOTS[0] + "/")
    assert ".." not in parts and "." not in parts and "" not in parts[1:]
    assert "\\" not in canonical and "\x00" not in canonical
