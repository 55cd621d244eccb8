"""Who the request runs as."""

from __future__ import annotations

from pydantic import BaseModel

from gateway.auth import get_workspace_client


class User(BaseModel):
    id: str | None
    user_name: str | None
    display_name: str | None
    emails: list[str]
    active: bool | None
    groups: list[str]


def me() -> User:
    """The user or service principal the request runs as (SCIM Me), asked afresh each time."""
    user = get_workspace_client().current_user.me()
    return User(
        id=user.id,
        user_name=user.user_name,
        display_name=user.display_name,
        emails=[e.value for e in user.emails or [] if e.value],
        active=user.active,
        groups=[g.display for g in user.groups or [] if g.display],
    )
