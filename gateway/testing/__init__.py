"""A faithful fake Databricks workspace, for tests and local mode."""

from gateway.testing.seed import DEMO, DemoIdentities, seed_demo
from gateway.testing.state import Fault, Recorded
from gateway.testing.users import FakeUser
from gateway.testing.warehouse import WAREHOUSE_ID
from gateway.testing.workspace import FakeWorkspace

__all__ = [
    "DEMO",
    "WAREHOUSE_ID",
    "DemoIdentities",
    "FakeUser",
    "FakeWorkspace",
    "Fault",
    "Recorded",
    "seed_demo",
]
