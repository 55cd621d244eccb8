"""Unity Catalog: catalogs, schemas and volumes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

from databricks.sdk.errors import NotFound, ResourceConflict
from databricks.sdk.service.catalog import VolumeType
from pydantic import BaseModel, Field

from gateway.answers import built, each_object
from gateway.auth import get_workspace_client
from gateway.errors import bad_request
from gateway.registry import quick
from gateway.runtime import Runtime

# No dots, quotes, slashes, backslashes or control characters: a name is one identifier part.
Name = Annotated[
    str,
    Field(min_length=1, max_length=255, pattern=r"^[^.\s/\\'\"`\x00-\x1f\x7f]+$"),
]


class Catalog(BaseModel):
    name: str
    comment: str | None = None
    owner: str | None = None
    catalog_type: str | None = None
    created_at: int | None = Field(None, description="epoch milliseconds")


class Schema(BaseModel):
    name: str
    full_name: str | None = None
    catalog_name: str | None = None
    comment: str | None = None
    owner: str | None = None
    created_at: int | None = Field(None, description="epoch milliseconds")


class Volume(BaseModel):
    name: str
    full_name: str | None = None
    catalog_name: str | None = None
    schema_name: str | None = None
    volume_type: str | None = None
    storage_location: str | None = None
    owner: str | None = None
    comment: str | None = None
    created_at: int | None = Field(None, description="epoch milliseconds")
    path: str | None = Field(None, description="the volume's /Volumes/... path")


class EnsuredVolume(BaseModel):
    volume: Volume
    created: bool


@quick
async def list_catalogs(runtime: Runtime) -> list[Catalog]:
    """Catalogs the identity can see (every page)."""
    return [
        built(
            Catalog,
            name=c.get("name") or "",
            comment=c.get("comment"),
            owner=c.get("owner"),
            catalog_type=c.get("catalog_type"),
            created_at=c.get("created_at"),
        )
        for c in each_object(await runtime.upstream.catalogs(), "a catalog")
    ]


@quick
async def list_schemas(runtime: Runtime, catalog: Name) -> list[Schema]:
    """Schemas of a catalog (every page)."""
    return [
        built(
            Schema,
            name=s.get("name") or "",
            full_name=s.get("full_name"),
            catalog_name=s.get("catalog_name"),
            comment=s.get("comment"),
            owner=s.get("owner"),
            created_at=s.get("created_at"),
        )
        for s in each_object(await runtime.upstream.schemas(catalog), "a schema")
    ]


class TableColumn(BaseModel):
    name: str
    type_text: str | None = None
    nullable: bool | None = None


class Table(BaseModel):
    name: str
    full_name: str | None = None
    table_type: str | None = None
    columns: list[TableColumn] = []


def list_tables(catalog: Name, schema: Name) -> list[Table]:
    """Tables and views of a schema with their columns (every page)."""
    return [
        built(
            Table,
            name=t.name or "",
            full_name=t.full_name,
            table_type=t.table_type.value if t.table_type else None,
            columns=[
                {"name": c.name or "", "type_text": c.type_text, "nullable": c.nullable}
                for c in t.columns or []
            ],
        )
        for t in get_workspace_client().tables.list(catalog_name=catalog, schema_name=schema)
    ]


@quick
async def list_volumes(runtime: Runtime, catalog: Name, schema: Name) -> list[Volume]:
    """Volumes of a schema (every page)."""
    return [
        _volume(v) for v in each_object(await runtime.upstream.volumes(catalog, schema), "a volume")
    ]


def ensure_volume(
    catalog: Name,
    schema: Name,
    name: Name,
    comment: str | None = None,
    volume_type: Literal["MANAGED", "EXTERNAL"] = "MANAGED",
    storage_location: str | None = None,
) -> EnsuredVolume:
    """Return the volume, creating it if it does not exist; `created` says which.

    Safe under races: a conflict on create means another caller won, so it is read back.
    """
    if (volume_type == "EXTERNAL") != (storage_location is not None):
        raise bad_request(
            "INVALID_PARAMS", "storage_location is required for EXTERNAL volumes only."
        )
    w = get_workspace_client()
    full_name = f"{catalog}.{schema}.{name}"
    try:
        return EnsuredVolume(volume=_volume(w.volumes.read(full_name).as_dict()), created=False)
    except NotFound:
        pass
    try:
        created = w.volumes.create(
            catalog_name=catalog,
            schema_name=schema,
            name=name,
            volume_type=VolumeType(volume_type),
            comment=comment,
            storage_location=storage_location,
        )
    except ResourceConflict:
        return EnsuredVolume(volume=_volume(w.volumes.read(full_name).as_dict()), created=False)
    return EnsuredVolume(volume=_volume(created.as_dict()), created=True)


def _volume(v: dict[str, Any]) -> Volume:
    """A volume from its REST JSON (a VolumeInfo's `as_dict`)."""
    catalog, schema, name = v.get("catalog_name"), v.get("schema_name"), v.get("name")
    volume = built(
        Volume,
        name=name or "",
        full_name=v.get("full_name"),
        catalog_name=catalog,
        schema_name=schema,
        volume_type=v.get("volume_type"),
        storage_location=v.get("storage_location"),
        owner=v.get("owner"),
        comment=v.get("comment"),
        created_at=v.get("created_at"),
    )
    if catalog and schema and name:  # strings by now: the model took them
        volume.path = f"/Volumes/{catalog}/{schema}/{name}"
    return volume


# The ops of this family the gateway serves (gateway/ops/__init__.py gathers every family's).
OPS: list[Callable[..., Any]] = [
    list_catalogs,
    list_schemas,
    list_volumes,
    list_tables,
    ensure_volume,
]
