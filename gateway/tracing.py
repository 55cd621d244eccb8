"""W3C Trace Context: the caller's `traceparent`, accepted only when well formed."""

from __future__ import annotations

import re

# version-trace_id-parent_id-flags, lowercase hex; a later version may append fields.
_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$")
HEADER = b"traceparent"


def traceparent_from(raw_headers: list[tuple[bytes, bytes]]) -> tuple[str, str] | None:
    """(the header, its trace id) when the request carries exactly one valid traceparent.

    Invalid, repeated or all-zero ids are ignored, as the spec asks (never an error)."""
    values = [value for name, value in raw_headers if name == HEADER]
    if len(values) != 1:
        return None
    try:
        header = values[0].decode("ascii").strip()
    except UnicodeDecodeError:
        return None
    match = _TRACEPARENT.match(header)
    if match is None:
        return None
    version, trace_id, parent_id, _, rest = match.groups()
    if version == "ff" or (version == "00" and rest is not None):
        return None
    if trace_id == "0" * 32 or parent_id == "0" * 16:
        return None
    return header, trace_id
