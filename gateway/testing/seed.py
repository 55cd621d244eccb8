"""Demo data for local mode and tests: users, catalogs, a volume with files, SQL tables."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.testing.warehouse import WAREHOUSE_ID
from gateway.testing.workspace import FakeWorkspace, iter_demo_files


@dataclass(frozen=True)
class DemoIdentities:
    service_token: str = "dapi-local-service"
    alice_token: str = "dapi-local-alice"
    bob_token: str = "dapi-local-bob"
    client_id: str = "local-gateway-sp"
    client_secret: str = "local-sp-secret"
    warehouse_id: str = WAREHOUSE_ID


DEMO = DemoIdentities()


def seed_demo(ws: FakeWorkspace, trips: int = 5000) -> DemoIdentities:
    ws.add_user(DEMO.service_token, "gateway-service@example.com", "Gateway Service")
    ws.add_user(DEMO.alice_token, "alice@example.com", "Alice Example")
    ws.add_user(DEMO.bob_token, "bob@example.com", "Bob Example")
    ws.add_service_principal(DEMO.client_id, DEMO.client_secret, "Local Gateway SP")
    ws.add_catalog("main", comment="Everyone's catalog")
    ws.add_catalog("samples", comment="Sample data")
    ws.add_catalog("finance", readers={"alice@example.com"}, comment="Alice only")
    for catalog, schema in [
        ("main", "default"),
        ("main", "app"),
        ("samples", "nyctaxi"),
        ("finance", "reports"),
        ("demo", "shop"),
    ]:
        if catalog == "demo" and "demo" not in ws.catalogs:
            ws.add_catalog("demo", comment="SQL demo tables")
        ws.add_schema(catalog, schema)
    ws.add_volume("main", "app", "files")
    ws.add_volume("main", "default", "landing")
    ws.add_volume("finance", "reports", "exports")
    root = ws.files_root / "main" / "app" / "files"
    for name, content in iter_demo_files():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(content)
    if ws.warehouse is not None:
        _seed_tables(ws, trips)
    return DEMO


def _seed_tables(ws: FakeWorkspace, trips: int) -> None:
    assert ws.warehouse is not None
    for statement in (
        f"""CREATE TABLE samples.nyctaxi.trips AS SELECT
              TIMESTAMP '2016-01-01 00:00:00' + INTERVAL (range * 7) MINUTE AS tpep_pickup_datetime,
              TIMESTAMP '2016-01-01 00:00:00' + INTERVAL (range * 7 + 5 + range % 30) MINUTE
                  AS tpep_dropoff_datetime,
              round(0.5 + (range % 97) / 7.0, 2)::DOUBLE AS trip_distance,
              (2.5 + (range % 211) / 4.0)::DECIMAL(10,2) AS fare_amount,
              (10001 + range % 90)::INTEGER AS pickup_zip,
              (10001 + (range * 7) % 90)::INTEGER AS dropoff_zip
            FROM range({trips})""",
        """CREATE TABLE demo.shop.sales (id BIGINT, region VARCHAR, amount DECIMAL(10,2),
              sold_on DATE, paid BOOLEAN)""",
        """INSERT INTO demo.shop.sales VALUES
              (1, 'north', 120.50, DATE '2024-01-03', true),
              (2, 'south', 98.10, DATE '2024-01-05', false),
              (3, 'north', 130.00, DATE '2024-02-01', true),
              (4, 'east', NULL, DATE '2024-02-11', NULL),
              (5, 'west', 75.25, DATE '2024-03-15', true)""",
    ):
        ws.warehouse.execute_setup(statement)
