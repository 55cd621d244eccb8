"""The fake's Unity Catalog endpoints: catalogs, schemas and volumes, filtered by grants."""

from __future__ import annotations

import re
import time
import uuid
from typing import Any
from urllib.parse import unquote

from gateway.testing._http import Handler
from gateway.testing.state import METASTORE_ID, RouteSpec, WorkspaceState, now_ms


class CatalogApi(WorkspaceState):
    def catalog_routes(self) -> list[RouteSpec]:
        return [
            ("GET", r"/api/2\.1/unity-catalog/catalogs", self._list_catalogs),
            ("GET", r"/api/2\.1/unity-catalog/schemas", self._list_schemas),
            ("GET", r"/api/2\.1/unity-catalog/volumes", self._list_volumes),
            ("POST", r"/api/2\.1/unity-catalog/volumes", self._create_volume),
            ("GET", r"/api/2\.1/unity-catalog/volumes/(?P<full>[^/]+)", self._read_volume),
            ("GET", r"/api/2\.1/unity-catalog/tables", self._list_tables),
        ]

    def check_catalog(self, rq: Handler, catalog: str) -> bool:
        """Sends the real 404/403 and returns False when the catalog is missing or hidden."""
        with self.lock:
            exists = catalog in self.catalogs
        if not exists:
            rq.send_error_body(
                404, "CATALOG_DOES_NOT_EXIST", f"Catalog '{catalog}' does not exist."
            )
            return False
        if not self.can_use_catalog(rq.user, catalog):
            rq.send_error_body(
                403,
                "PERMISSION_DENIED",
                f"User does not have USE CATALOG on Catalog '{catalog}'.",
            )
            return False
        return True

    def _page(self, rq: Handler, key: str, items: list[dict[str, Any]]) -> None:
        requested = int(rq.query.get("max_results") or 0)
        size = min(requested, self.page_size) if requested > 0 else self.page_size
        if self.empty_first_page and not rq.query.get("page_token"):
            rq.send_json(200, {key: [], "next_page_token": "0"})
            return
        rq.send_page(key, items, size)

    def _list_catalogs(self, rq: Handler, _: re.Match[str]) -> None:
        with self.lock:
            names = sorted(self.catalogs)
            visible = [self.catalogs[n] for n in names if self.can_use_catalog(rq.user, n)]
        self._page(rq, "catalogs", visible)

    def _list_schemas(self, rq: Handler, _: re.Match[str]) -> None:
        catalog = rq.query.get("catalog_name", "").lower()
        if not self.check_catalog(rq, catalog):
            return
        self._sync_schemas(catalog)
        with self.lock:
            items = [v for (c, _n), v in sorted(self.schemas.items()) if c == catalog]
        self._page(rq, "schemas", items)

    def _sync_schemas(self, catalog: str) -> None:
        """Schemas created through SQL (`CREATE SCHEMA`) are Unity Catalog schemas too."""
        if self.warehouse is None:
            return
        for name in self.warehouse.schemas_of(catalog):
            with self.lock:
                known = (catalog, name) in self.schemas
            if not known:
                self.add_schema(catalog, name)

    def _list_tables(self, rq: Handler, _: re.Match[str]) -> None:
        catalog = rq.query.get("catalog_name", "").lower()
        schema = rq.query.get("schema_name", "").lower()
        if catalog in self.catalogs:
            self._sync_schemas(catalog)
        if not self._schema_exists(rq, catalog, schema):
            return
        tables = self.warehouse.tables_of(catalog, schema) if self.warehouse else []
        self._page(rq, "tables", tables)

    def _schema_exists(self, rq: Handler, catalog: str, schema: str) -> bool:
        if not self.check_catalog(rq, catalog):
            return False
        with self.lock:
            if (catalog, schema) in self.schemas:
                return True
        rq.send_error_body(
            404, "SCHEMA_DOES_NOT_EXIST", f"Schema '{catalog}.{schema}' does not exist."
        )
        return False

    def _list_volumes(self, rq: Handler, _: re.Match[str]) -> None:
        catalog = rq.query.get("catalog_name", "").lower()
        schema = rq.query.get("schema_name", "").lower()
        if not self._schema_exists(rq, catalog, schema):
            return
        with self.lock:
            items = [
                v for (c, s, _n), v in sorted(self.volumes.items()) if (c, s) == (catalog, schema)
            ]
        self._page(rq, "volumes", items)

    def _read_volume(self, rq: Handler, match: re.Match[str]) -> None:
        parts = unquote(match["full"]).lower().split(".")
        if len(parts) != 3:
            rq.send_error_body(400, "INVALID_PARAMETER_VALUE", "Invalid volume name.")
            return
        if not self._schema_exists(rq, parts[0], parts[1]):
            return
        with self.lock:
            info = self.volumes.get((parts[0], parts[1], parts[2]))
        if info is None:
            rq.send_error_body(
                404, "RESOURCE_DOES_NOT_EXIST", f"Volume '{'.'.join(parts)}' does not exist."
            )
            return
        rq.send_json(200, info)

    def _create_volume(self, rq: Handler, _: re.Match[str]) -> None:
        body = rq.json_body()
        catalog, schema = (
            str(body.get("catalog_name", "")).lower(),
            str(body.get("schema_name", "")).lower(),
        )
        name = str(body.get("name", "")).lower()
        if not self._schema_exists(rq, catalog, schema):
            return
        if body.get("volume_type") == "EXTERNAL" and not body.get("storage_location"):
            rq.send_error_body(
                400, "INVALID_PARAMETER_VALUE", "Storage location is required for external volumes."
            )
            return
        time.sleep(self.create_volume_delay)  # widens the window tests race in
        user = rq.user
        assert user is not None  # /api/ routes run for known tokens only
        with self.lock:
            if (catalog, schema, name) in self.volumes:
                rq.send_error_body(
                    409,
                    "RESOURCE_ALREADY_EXISTS",
                    f"Volume '{catalog}.{schema}.{name}' already exists.",
                )
                return
            self.add_volume(catalog, schema, name, owner=user.user_name)
            info = self.volumes[(catalog, schema, name)]
            if body.get("comment"):
                info["comment"] = body["comment"]
        rq.send_json(200, info)


def volume_info(catalog: str, schema: str, name: str, owner: str) -> dict[str, Any]:
    volume_id = str(uuid.uuid4())
    return {
        "catalog_name": catalog,
        "schema_name": schema,
        "name": name,
        "full_name": f"{catalog}.{schema}.{name}",
        "volume_type": "MANAGED",
        "volume_id": volume_id,
        "storage_location": f"s3://fake-bucket/metastore/volumes/{volume_id}",
        "owner": owner,
        "metastore_id": METASTORE_ID,
        "created_at": now_ms(),
        "created_by": owner,
    }
