"""Configuration, read once from the environment (and `.env` when present)."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from gateway.paths import normalise_roots

CommaList = Annotated[list[str], NoDecode]
MiB = 1024 * 1024
GiB = 1024 * MiB


def normalise_host(url: str) -> str:
    """One spelling per workspace URL, so configured and requested hosts compare equal."""
    url = url.rstrip("/")
    return url if "://" in url else f"https://{url}"


def _env(name: str) -> AliasChoices:
    return AliasChoices(name)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    # --- where the gateway listens -------------------------------------------------------
    host: str = Field("127.0.0.1", validation_alias=_env("GATEWAY_HOST"))
    port: int = Field(8765, ge=1, le=65535, validation_alias=_env("GATEWAY_PORT"))
    secret: SecretStr | None = Field(None, validation_alias=_env("GATEWAY_SECRET"))
    # A unix-domain socket path to listen on instead of TCP (the Node client's `socketPath`).
    uds: str | None = Field(None, validation_alias=_env("GATEWAY_UDS"))
    # Server processes sharing the listening socket; 1 suits a sidecar (see README).
    workers: int = Field(1, ge=1, le=64, validation_alias=_env("GATEWAY_WORKERS"))
    max_json_body_bytes: int = Field(
        16 * MiB, gt=0, validation_alias=_env("GATEWAY_MAX_JSON_BODY_BYTES")
    )
    request_timeout_seconds: float = Field(
        60.0, gt=0, le=600, validation_alias=_env("GATEWAY_REQUEST_TIMEOUT_SECONDS")
    )
    stream_timeout_seconds: float = Field(
        300.0, gt=0, le=3600, validation_alias=_env("GATEWAY_STREAM_TIMEOUT_SECONDS")
    )
    upload_idle_seconds: float = Field(
        30.0, gt=0, le=600, validation_alias=_env("GATEWAY_UPLOAD_IDLE_SECONDS")
    )
    header_timeout_seconds: float = Field(
        5.0, gt=0, le=120, validation_alias=_env("GATEWAY_HEADER_TIMEOUT_SECONDS")
    )
    max_concurrent_transfers: int = Field(
        16, ge=1, le=1024, validation_alias=_env("GATEWAY_MAX_CONCURRENT_TRANSFERS")
    )
    max_concurrent_per_op: int = Field(
        256, ge=1, le=100_000, validation_alias=_env("GATEWAY_MAX_CONCURRENT_PER_OP")
    )
    thread_limit: int = Field(32, ge=1, le=512, validation_alias=_env("GATEWAY_THREAD_LIMIT"))
    # The lean upstream path for simple JSON reads (gateway/upstream.py, on aiohttp): no worker
    # thread, no `requests` layers. `false` sends them through the SDK's own methods instead.
    lean_upstream: bool = Field(True, validation_alias=_env("GATEWAY_LEAN_UPSTREAM"))
    log_level: str = Field("INFO", validation_alias=_env("GATEWAY_LOG_LEVEL"))
    log_format: Literal["json", "text"] = Field("json", validation_alias=_env("GATEWAY_LOG_FORMAT"))
    # OpenTelemetry spans per op (the `otel` extra; gateway/telemetry.py); OTEL_* say where.
    otel: bool = Field(False, validation_alias=_env("GATEWAY_OTEL"))

    # --- identities ---------------------------------------------------------------------
    auth_mode: Literal["service", "user", "auto"] = Field(
        "service", validation_alias=_env("GATEWAY_AUTH_MODE")
    )
    auth_backend: Literal["sdk", "tools-core"] = Field(
        "sdk", validation_alias=_env("GATEWAY_AUTH_BACKEND")
    )
    allowed_hosts: CommaList = Field(
        default_factory=list, validation_alias=_env("GATEWAY_ALLOWED_HOSTS")
    )
    databricks_host: str | None = Field(None, validation_alias=_env("DATABRICKS_HOST"))
    databricks_token: SecretStr | None = Field(None, validation_alias=_env("DATABRICKS_TOKEN"))
    client_id: str | None = Field(None, validation_alias=_env("DATABRICKS_CLIENT_ID"))
    client_secret: SecretStr | None = Field(None, validation_alias=_env("DATABRICKS_CLIENT_SECRET"))
    config_profile: str | None = Field(None, validation_alias=_env("DATABRICKS_CONFIG_PROFILE"))
    client_cache_size: int = Field(
        256, ge=1, le=100_000, validation_alias=_env("GATEWAY_CLIENT_CACHE_SIZE")
    )
    client_cache_ttl_seconds: float = Field(
        900, gt=0, validation_alias=_env("GATEWAY_CLIENT_CACHE_TTL_SECONDS")
    )
    # Well under the Databricks Apps proxy's ~120 s cut and the SDK's 300 s default.
    sdk_retry_timeout_seconds: int = Field(
        30, ge=1, le=110, validation_alias=_env("GATEWAY_SDK_RETRY_TIMEOUT_SECONDS")
    )
    sdk_http_timeout_seconds: int = Field(
        20, ge=1, le=110, validation_alias=_env("GATEWAY_SDK_HTTP_TIMEOUT_SECONDS")
    )

    # --- files ----------------------------------------------------------------------------
    allowed_roots: CommaList = Field(
        default_factory=list, validation_alias=_env("GATEWAY_ALLOWED_ROOTS")
    )
    default_volume: str | None = Field(None, validation_alias=_env("GATEWAY_DEFAULT_VOLUME"))
    max_upload_bytes: int = Field(5 * GiB, gt=0, validation_alias=_env("GATEWAY_MAX_UPLOAD_BYTES"))
    max_text_read_bytes: int = Field(
        10 * MiB, gt=0, validation_alias=_env("GATEWAY_MAX_TEXT_READ_BYTES")
    )

    # --- SQL ------------------------------------------------------------------------------
    warehouse_id: str | None = Field(None, validation_alias=_env("DATABRICKS_WAREHOUSE_ID"))
    queries_dir: Path | None = Field(None, validation_alias=_env("GATEWAY_QUERIES_DIR"))
    allow_raw_sql: bool = Field(True, validation_alias=_env("GATEWAY_ALLOW_RAW_SQL"))
    max_inline_rows: int = Field(10_000, ge=1, validation_alias=_env("GATEWAY_MAX_INLINE_ROWS"))
    max_inline_bytes: int = Field(
        16 * MiB, ge=1024, validation_alias=_env("GATEWAY_MAX_INLINE_BYTES")
    )
    prefetch_chunks: int = Field(4, ge=1, le=32, validation_alias=_env("GATEWAY_PREFETCH_CHUNKS"))
    # The most the gateway holds of one answer it reads whole: a result chunk behind an external
    # link, or a JSON answer of the lean path. Bounds a query's memory at prefetch_chunks times
    # this, whatever length a broken or hostile upstream announces.
    max_chunk_bytes: int = Field(
        1 * GiB, ge=1 * MiB, validation_alias=_env("GATEWAY_MAX_CHUNK_BYTES")
    )
    query_timeout_seconds: float = Field(
        50.0, gt=0, le=110, validation_alias=_env("GATEWAY_QUERY_TIMEOUT_SECONDS")
    )

    @field_validator(
        "secret",
        "databricks_token",
        "client_secret",
        "client_id",
        "databricks_host",
        "config_profile",
        "warehouse_id",
        "default_volume",
        "queries_dir",
        "uds",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # `GATEWAY_SECRET=` in an env file means "no secret", never "the empty secret".
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("allowed_hosts", "allowed_roots", mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("allowed_roots", mode="after")
    @classmethod
    def _check_roots(cls, value: list[str]) -> list[str]:
        return normalise_roots(value)

    @field_validator("default_volume", mode="after")
    @classmethod
    def _check_default_volume(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if len(normalise_roots([value])[0].split("/")) < 5:
            raise ValueError("GATEWAY_DEFAULT_VOLUME must be /Volumes/<catalog>/<schema>/<volume>")
        return value.rstrip("/")

    @field_validator("databricks_host", mode="after")
    @classmethod
    def _normalise_host(cls, value: str | None) -> str | None:
        return normalise_host(value) if value else None

    @field_validator("allowed_hosts", mode="after")
    @classmethod
    def _normalise_hosts(cls, value: list[str]) -> list[str]:
        return [normalise_host(h) for h in value]

    @model_validator(mode="after")
    def _secret_required_off_loopback(self) -> Settings:
        if not self.is_loopback and self.secret is None:
            raise ValueError(
                f"GATEWAY_SECRET is required when binding to the non-loopback host {self.host!r}"
            )
        return self

    @property
    def is_loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    @property
    def service_auth_type(self) -> str | None:
        """The SDK auth type the service identity pins, or None for a config profile."""
        if self.client_id and self.client_secret:
            return "oauth-m2m"
        if self.databricks_token:
            return "pat"
        return None
