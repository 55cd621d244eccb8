"""Unity Catalog: catalogs, schemas and volumes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal, TypeVar

from databricks.sdk.errors import NotFound, ResourceConflict
from databricks.sdk.service.catalog import VolumeType
from pydantic import BaseModel, Field

from gateway.answers import built, each_object
from gateway.auth import get_workspace_client
from gateway.errors import bad_request
from gateway.registry import quick
from gateway.runtime import Runtime

M = TypeVar("M", bound=BaseModel)

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
        _from_api(Catalog, c)
        for c in each_object(await runtime.upstream.catalogs(), "the catalogs")
    ]


@quick
async def list_schemas(runtime: Runtime, catalog: Name) -> list[Schema]:
    """Schemas of a catalog (every page)."""
    schemas = each_object(await runtime.upstream.schemas(catalog), "the schemas")
    return [_from_api(Schema, s) for s in schemas]


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
        _volume(v)
        for v in each_object(await runtime.upstream.volumes(catalog, schema), "the volumes")
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
    """A volume from its REST JSON (a VolumeInfo's `as_dict`), with its /Volumes path."""
    catalog, schema, name = v.get("catalog_name"), v.get("schema_name"), v.get("name")
    path = f"/Volumes/{catalog}/{schema}/{name}" if catalog and schema and name else None
    return _from_api(Volume, v, path=path)


def _from_api(model: type[M], raw: dict[str, Any], **given: Any) -> M:
    """`model` from Unity Catalog's JSON, whose keys are the model's field names (a missing
    name is ""); `given` are the fields the API does not send. The JSON goes in as it is, its
    other keys ignored by the model: a third of the cost of picking the fields out first."""
    if given or not raw.get("name"):
        raw = {**raw, "name": raw.get("name") or "", **given}
    return built(model, **raw)


# The ops of this family the gateway serves (gateway/ops/__init__.py gathers every family's).
OPS: list[Callable[..., Any]] = [
    list_catalogs,
    list_schemas,
    list_volumes,
    list_tables,
    ensure_volume,
]
