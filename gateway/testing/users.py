"""The fake's users and service principals (no imports from the fake: everything uses them)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field


@dataclass
class FakeUser:
    user_name: str
    display_name: str
    groups: list[str] = field(default_factory=lambda: ["users"])
    id: str = field(default_factory=lambda: str(secrets.randbelow(10**16)).zfill(16))
