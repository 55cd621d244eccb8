"""Request-scoped Databricks identity.

Every request is wrapped in `set_databricks_auth(...)` / `clear_databricks_auth(...)` (the
names follow databricks-tools-core). The identity lives in a ContextVar, which anyio's worker
threads inherit, so an operation running in a thread calls `get_workspace_client()` and gets
the client of *its* request's identity, never another's.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import inspect
import threading
from collections.abc import Mapping
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Literal, Protocol

from cachetools import TTLCache
from databricks.sdk import WorkspaceClient
from databricks.sdk.config import Config

from gateway import __version__
from gateway.deadlines import bound_by_deadlines
from gateway.errors import GatewayError
from gateway.retry_after import with_sane_retry_after
from gateway.settings import Settings, normalise_host

METADATA_PROBE_SECONDS = 5
USER_TOKEN_HEADER = "x-databricks-token"  # noqa: S105 - a header name
HOST_HEADER = "x-databricks-host"


@dataclass(frozen=True)
class Identity:
    """Who a request runs as. The token never appears in repr or logs."""

    kind: Literal["service", "user"]
    host: str
    token: str | None = field(default=None, repr=False)

    @property
    def cache_key(self) -> tuple[str, str]:
        digest = hashlib.sha256((self.token or "").encode()).hexdigest()
        return (self.host, digest)


class Backend(Protocol):
    """Where clients come from; `enter`/`exit` bracket each request."""

    def enter(self, identity: Identity) -> None: ...
    def exit(self) -> None: ...
    def client(self, identity: Identity) -> WorkspaceClient: ...
    def cached_client(self, identity: Identity) -> WorkspaceClient | None: ...


_current: ContextVar[tuple[Identity, Backend] | None] = ContextVar("databricks_auth", default=None)
AuthToken = Token[tuple[Identity, Backend] | None]


def set_databricks_auth(identity: Identity, backend: Backend) -> AuthToken:
    """Make `identity` the current one; pass the returned token to `clear_databricks_auth`."""
    reset = _current.set((identity, backend))
    try:
        backend.enter(identity)
    except BaseException:
        _current.reset(reset)
        raise
    return reset


def clear_databricks_auth(reset: AuthToken) -> None:
    current = _current.get()
    try:
        if current is not None:
            current[1].exit()
    finally:
        _current.reset(reset)


def current_auth() -> tuple[Identity, Backend]:
    """The current request's identity and the backend its clients come from."""
    current = _current.get()
    if current is None:
        raise RuntimeError("no Databricks identity is set for this context")
    return current


def current_identity() -> Identity:
    return current_auth()[0]


def get_workspace_client() -> WorkspaceClient:
    """The client of the current request's identity (blocking: call from a worker thread),
    whose calls stop once the request's deadline has passed (gateway/deadlines.py)."""
    identity, backend = current_auth()
    return bound_by_deadlines(with_sane_retry_after(backend.client(identity)))


# --- choosing the identity of a request ----------------------------------------------------


def resolve_identity(settings: Settings, headers: Mapping[str, str]) -> Identity:
    """Pick the request's identity from its headers and the auth mode; fail closed."""
    token = headers.get(USER_TOKEN_HEADER)
    host = _request_host(settings, headers.get(HOST_HEADER))
    if settings.auth_mode == "service" and token is not None:
        raise GatewayError(
            400,
            "USER_TOKEN_NOT_ALLOWED",
            "This gateway runs as its service identity (GATEWAY_AUTH_MODE=service); "
            "it does not accept X-Databricks-Token.",
        )
    if token is None and settings.auth_mode == "user":
        raise GatewayError(401, "USER_TOKEN_REQUIRED", "X-Databricks-Token is required.")
    if token is not None:
        if not token.strip():
            raise GatewayError(401, "USER_TOKEN_REQUIRED", "X-Databricks-Token is empty.")
        if host is None:
            raise not_configured()
        return Identity("user", host, token.strip())
    if headers.get(HOST_HEADER) is not None:
        # The service identity's credentials never go to a host a request chose.
        raise GatewayError(
            400, "HOST_NEEDS_USER_TOKEN", "X-Databricks-Host requires X-Databricks-Token."
        )
    if settings.databricks_host is None:
        raise not_configured()
    return Identity("service", settings.databricks_host)


def _request_host(settings: Settings, requested: str | None) -> str | None:
    if requested is None:
        return settings.databricks_host
    normalised = normalise_host(requested)
    if normalised not in settings.allowed_hosts:
        raise GatewayError(
            403, "HOST_NOT_ALLOWED", "X-Databricks-Host is not listed in GATEWAY_ALLOWED_HOSTS."
        )
    return normalised


def not_configured() -> GatewayError:
    return GatewayError(503, "NOT_CONFIGURED", "DATABRICKS_HOST is not configured.")


# --- the SDK backend -------------------------------------------------------------------------


class SdkBackend:
    """Builds clients with the SDK and keeps them: one service client, a TTL cache of users."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._lock = threading.Lock()
        self._service: WorkspaceClient | None = None
        self._users: TTLCache[tuple[str, str], WorkspaceClient] = TTLCache(
            maxsize=settings.client_cache_size, ttl=settings.client_cache_ttl_seconds
        )

    def enter(self, identity: Identity) -> None:
        """Nothing to do: the ContextVar set by `set_databricks_auth` is the state."""

    def exit(self) -> None:
        """Nothing to undo."""

    def client(self, identity: Identity) -> WorkspaceClient:
        if identity.kind == "service":
            return self.service_client()
        return self._user_client(identity)

    def cached_client(self, identity: Identity) -> WorkspaceClient | None:
        """The identity's client if it is built already (never blocks: safe on the loop)."""
        with self._lock:
            if identity.kind == "service":
                return self._service
            return self._users.get(identity.cache_key)

    @property
    def cached_user_clients(self) -> int:
        with self._lock:
            return len(self._users)

    def service_client(self) -> WorkspaceClient:
        with self._lock:
            if self._service is not None:
                return self._service
        client = WorkspaceClient(config=self._service_config())
        with self._lock:
            self._service = self._service or client
            return self._service

    def _user_client(self, identity: Identity) -> WorkspaceClient:
        key = identity.cache_key
        with self._lock:
            client = self._users.get(key)
        if client is not None:
            return client
        # Built outside the lock: construction makes a network call.
        client = WorkspaceClient(config=self._config(host=identity.host, token=identity.token))
        with self._lock:
            return self._users.setdefault(key, client)

    def _service_config(self) -> Config:
        s = self._settings
        if s.service_auth_type == "oauth-m2m":
            assert s.client_secret is not None
            return self._config(
                host=s.databricks_host,
                client_id=s.client_id,
                client_secret=s.client_secret.get_secret_value(),
                auth_type="oauth-m2m",
            )
        if s.service_auth_type == "pat":
            assert s.databricks_token is not None
            return self._config(host=s.databricks_host, token=s.databricks_token.get_secret_value())
        if s.config_profile:
            return self._config(host=s.databricks_host, profile=s.config_profile, auth_type=None)
        raise GatewayError(
            503,
            "NOT_CONFIGURED",
            "No service identity: set DATABRICKS_TOKEN, DATABRICKS_CLIENT_ID and "
            "DATABRICKS_CLIENT_SECRET, or DATABRICKS_CONFIG_PROFILE.",
        )

    def _config(self, *, auth_type: str | None = "pat", **kwargs: str | None) -> Config:
        budget = self._settings.sdk_retry_timeout_seconds
        # Config takes these as untyped **kwargs; only its explicit parameters are typed.
        given: dict[str, Any] = {k: v for k, v in kwargs.items() if v is not None}
        config = Config(
            **given,
            auth_type=auth_type,
            # Config() probes /.well-known/databricks-config with this budget. The probe only
            # informs, so against an unreachable host it must not spend the whole budget before
            # the first real call spends it again (and the request dies at its deadline).
            retry_timeout_seconds=min(METADATA_PROBE_SECONDS, budget),
            http_timeout_seconds=self._settings.sdk_http_timeout_seconds,
            product="databricks-gateway",
            product_version=__version__,
        )
        config.retry_timeout_seconds = budget  # what the client's API calls then get
        return config


# --- the optional databricks-tools-core backend -------------------------------------------


class ToolsCoreBackend:
    """Delegates user identities to databricks_tools_core.auth.

    The service identity keeps the gateway's own cached client: tools-core would build it from
    environment M2M credentials anyway, and rebuilding it on every call costs a round trip.
    """

    def __init__(self, settings: Settings, module_name: str = "databricks_tools_core.auth"):
        try:
            self._module = importlib.import_module(module_name)
        except ImportError as exc:
            raise RuntimeError(
                "GATEWAY_AUTH_BACKEND=tools-core but databricks-tools-core is not installed; "
                "see README 'Optional tools-core backend'."
            ) from exc
        check_tools_core_contract(self._module)
        self._service = SdkBackend(settings)

    def enter(self, identity: Identity) -> None:
        if identity.kind == "user":
            # force_token: without it tools-core prefers env M2M and ignores the user token.
            self._module.set_databricks_auth(identity.host, identity.token, force_token=True)

    def exit(self) -> None:
        self._module.clear_databricks_auth()

    def client(self, identity: Identity) -> WorkspaceClient:
        if identity.kind == "service":
            return self._service.service_client()
        # A module imported by name is untyped; check_tools_core_contract vetted this function.
        client: WorkspaceClient = self._module.get_workspace_client()
        return client

    def service_client(self) -> WorkspaceClient:
        return self._service.service_client()

    def cached_client(self, identity: Identity) -> WorkspaceClient | None:
        # tools-core hands out user clients per call (in the request's thread), never cached.
        return self._service.cached_client(identity) if identity.kind == "service" else None

    @property
    def cached_user_clients(self) -> int:
        return 0


TOOLS_CORE_NEEDED = (
    "databricks-tools-core from its main branch at commit b253942 (2026-02-25) or later, "
    "whose set_databricks_auth(host, token, *, force_token=False) takes force_token "
    "(pinned: d2806ce)"
)


def check_tools_core_contract(module: ModuleType) -> None:
    """Refuse to start on a tools-core whose auth functions differ from what we call.

    Without `force_token` every user request would fail with a TypeError at call time (or,
    worse, tools-core would prefer the environment's service identity over the user's token).
    """
    problems = []
    for name, parameters in {
        "set_databricks_auth": ("host", "token", "force_token"),
        "clear_databricks_auth": (),
        "get_workspace_client": (),
    }.items():
        function = getattr(module, name, None)
        if not callable(function):
            problems.append(f"{name} is missing")
            continue
        signature = inspect.signature(function)
        missing = [p for p in parameters if p not in signature.parameters]
        required = [
            p.name
            for p in signature.parameters.values()
            if p.default is p.empty
            and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
            and p.name not in parameters
        ]
        if missing or required:
            problems.append(f"{name}{signature} does not fit")
    if problems:
        version = _installed_version("databricks-tools-core")
        raise RuntimeError(
            f"GATEWAY_AUTH_BACKEND=tools-core needs {TOOLS_CORE_NEEDED}; the installed one "
            f"({version}) does not fit: {'; '.join(problems)}."
        )


def _installed_version(distribution: str) -> str:
    try:
        return f"version {importlib.metadata.version(distribution)}"
    except importlib.metadata.PackageNotFoundError:
        return "version unknown"


def make_backend(settings: Settings) -> SdkBackend | ToolsCoreBackend:
    if settings.auth_backend == "tools-core":
        return ToolsCoreBackend(settings)
    return SdkBackend(settings)
