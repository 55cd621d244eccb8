"""The fake's identity endpoints: host metadata, OAuth M2M (OIDC) and SCIM Me."""

from __future__ import annotations

import base64
import re
import secrets
from urllib.parse import unquote

from gateway.testing._http import Handler
from gateway.testing.state import WORKSPACE_ID, RouteSpec, WorkspaceState


class IdentityApi(WorkspaceState):
    def identity_routes(self) -> list[RouteSpec]:
        return [
            ("GET", r"/\.well-known/databricks-config", self._well_known),
            ("GET", r"/oidc/\.well-known/oauth-authorization-server", self._oidc_discovery),
            ("POST", r"/oidc/v1/token", self._oidc_token),
            ("GET", r"/api/2\.0/preview/scim/v2/Me", self._me),
        ]

    def _well_known(self, rq: Handler, _: re.Match[str]) -> None:
        rq.send_json(
            200,
            {"oidc_endpoint": f"{self.url}/oidc", "workspace_id": WORKSPACE_ID, "cloud": "aws"},
        )

    def _oidc_discovery(self, rq: Handler, _: re.Match[str]) -> None:
        rq.send_json(
            200,
            {
                "issuer": f"{self.url}/oidc",
                "authorization_endpoint": f"{self.url}/oidc/v1/authorize",
                "token_endpoint": f"{self.url}/oidc/v1/token",
            },
        )

    def _oidc_token(self, rq: Handler, _match: re.Match[str]) -> None:
        form = dict(
            pair.split("=", 1) for pair in rq.read_body().decode().split("&") if "=" in pair
        )
        client_id, client_secret = (
            unquote(form.get("client_id", "")),
            unquote(form.get("client_secret", "")),
        )
        basic = rq.headers.get("Authorization", "")
        if basic.startswith("Basic "):
            decoded = base64.b64decode(basic.removeprefix("Basic ")).decode()
            client_id, _, client_secret = decoded.partition(":")
        with self.lock:
            known = self.service_principals.get(client_id)
        if form.get("grant_type") != "client_credentials" or not known or known[0] != client_secret:
            rq.send_json(
                401,
                {"error": "invalid_client", "error_description": "Client authentication failed"},
            )
            return
        token = f"m2m-{secrets.token_hex(16)}"
        with self.lock:
            self.users[token] = known[1]
        rq.send_json(
            200,
            {
                "access_token": token,
                "token_type": "Bearer",
                "expires_in": 3600,
                "scope": "all-apis",
            },
        )

    # --- SCIM ---------------------------------------------------------------------------------

    def _me(self, rq: Handler, _match: re.Match[str]) -> None:
        user = rq.user
        assert user is not None  # /api/ routes run for known tokens only
        given, _, family = user.display_name.partition(" ")
        rq.send_json(
            200,
            {
                "id": user.id,
                "userName": user.user_name,
                "displayName": user.display_name,
                "active": True,
                "name": {"givenName": given, "familyName": family},
                "emails": [{"value": user.user_name, "type": "work", "primary": True}],
                "groups": [
                    {"value": str(i), "display": g, "type": "direct", "$ref": f"Groups/{i}"}
                    for i, g in enumerate(user.groups, start=100)
                ],
                "entitlements": [{"value": "workspace-access"}],
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            },
            {"X-Databricks-Org-Id": WORKSPACE_ID},
        )
