"""Volume path confinement: every file op's path passes through `confine` before any I/O.

A path is accepted only if it is a plain `/Volumes/<catalog>/<schema>/<volume>[/...]` path with
no traversal, no encoded separators, no control characters, and lies under an allowed root.
"""

from __future__ import annotations

import re
import unicodedata

from gateway.errors import GatewayError

MAX_PATH_CHARS = 4096
_ENCODED_DANGER = re.compile(r"%(2e|2f|5c|00|25)", re.IGNORECASE)


def _invalid(reason: str) -> GatewayError:
    return GatewayError(400, "PATH_INVALID", f"Invalid path: {reason}.")


def normalise_roots(roots: list[str]) -> list[str]:
    """Validate the configured roots with the same rules; a bad root is a startup error."""
    checked = []
    for root in roots:
        try:
            checked.append(_parse(root.rstrip("/"), minimum_depth=2))
        except GatewayError as exc:
            raise ValueError(f"GATEWAY_ALLOWED_ROOTS entry {root!r}: {exc.message}") from None
    return checked


def confine(path: object, allowed_roots: list[str], default_volume: str | None = None) -> str:
    """Return the canonical volume path, or raise 400 (malformed) / 403 (outside the roots)."""
    if not isinstance(path, str) or not path:
        raise _invalid("a non-empty string is required")
    if len(path) > MAX_PATH_CHARS:
        raise _invalid(f"longer than {MAX_PATH_CHARS} characters")
    if not path.startswith("/"):
        if default_volume is None:
            raise _invalid("relative paths need GATEWAY_DEFAULT_VOLUME")
        path = f"{default_volume.rstrip('/')}/{path}"
    if path.endswith("/"):
        path = path[:-1]  # one trailing slash names the same directory
    canonical = _parse(path, minimum_depth=4)
    if allowed_roots and not any(_within(canonical, root) for root in allowed_roots):
        raise GatewayError(403, "PATH_FORBIDDEN", "The path is outside the allowed volumes.")
    return canonical


def _parse(path: str, minimum_depth: int) -> str:
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Zl", "Zp") for ch in path):
        raise _invalid("control or invisible characters are not allowed")
    if "\\" in path:
        raise _invalid("backslashes are not allowed")
    if _ENCODED_DANGER.search(path):
        raise _invalid("percent-encoded dots, slashes or NULs are not allowed")
    if not path.startswith("/Volumes/"):
        raise _invalid("only /Volumes/<catalog>/<schema>/<volume>/... paths are allowed")
    segments = path.split("/")[1:]
    for segment in segments:
        if segment in ("", ".", ".."):
            raise _invalid("empty, '.' and '..' segments are not allowed")
        if segment != segment.strip():
            raise _invalid("segments may not start or end with white space")
    if len(segments) < minimum_depth:
        raise _invalid("a path names at least /Volumes/<catalog>/<schema>/<volume>")
    if any(ch in seg for seg in segments[1:4] for ch in ".'\"`"):
        raise _invalid("catalog, schema and volume names may not hold dots or quotes")
    return path


def _within(path: str, root: str) -> bool:
    return path == root or path.startswith(root + "/")
