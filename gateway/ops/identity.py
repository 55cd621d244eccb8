"""Who the request runs as."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from gateway.answers import built, values_of
from gateway.registry import quick
from gateway.runtime import Runtime


class User(BaseModel):
    id: str | None
    user_name: str | None
    display_name: str | None
    emails: list[str]
    active: bool | None
    groups: list[str]


@quick
async def me(runtime: Runtime) -> User:
    """The user or service principal the request runs as (SCIM Me), asked afresh each time."""
    user = await runtime.upstream.me()  # SCIM's JSON
    return built(
        User,
        id=user.get("id"),
        user_name=user.get("userName"),
        display_name=user.get("displayName"),
        emails=values_of(user.get("emails"), "value", "the user's emails"),
        active=user.get("active"),
        groups=values_of(user.get("groups"), "display", "the user's groups"),
    )


# The ops of this family the gateway serves (gateway/ops/__init__.py gathers every family's).
OPS: list[Callable[..., Any]] = [me]
