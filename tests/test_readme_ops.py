"""The README's op table is the registry: the same ops, each with its required and optional params."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gateway.ops import ALL_OPS
from gateway.registry import Registry

README = Path(__file__).resolve().parent.parent / "README.md"
REGISTRY = Registry(ALL_OPS)


def op_table() -> dict[str, str]:
    """op name → its params cell, from the table under "The `/run` contract"."""
    section = README.read_text().split("## The `/run` contract", 1)[1].split("\n## ", 1)[0]
    table = section.split("### Operations", 1)[1]
    rows = re.findall(r"^\| `(\w+)` \| ([^|]*) \|", table, re.MULTILINE)
    return dict(rows)


def parse_params(cell: str) -> dict[str, bool]:
    """`catalog`, `comment?` (default) … → {name: required}; parentheses hold values, not names."""
    names = re.sub(r"\([^)]*\)", "", cell)
    return {name: not optional for name, optional in re.findall(r"`(\w+)(\?)?`", names)}


def test_parse_params():
    cell = (
        "`path`, `encoding?` (`utf-8`), `rows_as?` (`arrays`/`objects`), `statement?` or `query?`"
    )
    assert parse_params(cell) == {
        "path": True,
        "encoding": False,
        "rows_as": False,
        "statement": False,
        "query": False,
    }
    assert parse_params("—") == {}


def test_the_table_lists_every_op_and_no_other():
    assert sorted(op_table()) == REGISTRY.names()


@pytest.mark.parametrize("name", REGISTRY.names())
def test_each_row_has_the_ops_required_and_optional_params(name: str):
    schema = REGISTRY.get(name).describe()["params"]
    required = set(schema.get("required", []))
    expected = {param: param in required for param in schema.get("properties", {})}
    assert parse_params(op_table().get(name, "")) == expected, (
        f"README row of {name}: write required params as `name`, optional ones as `name?`"
    )
