"""The Node client's generated op types and methods: fresh, faithful to GET /ops, stable."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway import codegen
from gateway.codegen import OpSpec, ts_type


def test_the_generated_client_files_are_fresh():
    stale = [str(path.relative_to(codegen.ROOT)) for path in codegen.stale()]
    assert not stale, f"{stale} differ from the registry: run python -m gateway.codegen"


def test_check_fails_on_a_stale_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys):
    monkeypatch.setattr(codegen, "ROOT", tmp_path)
    monkeypatch.setattr(codegen, "TYPES", tmp_path / "ops.generated.d.ts")
    monkeypatch.setattr(codegen, "METHODS", tmp_path / "ops.generated.js")
    readme = tmp_path / "README.md"
    readme.write_text(f"# Ops\n\n{codegen.TABLE_BEGIN}\nold rows\n{codegen.TABLE_END}\n\nMore.\n")
    monkeypatch.setattr(codegen, "README", readme)
    assert codegen.main(["--check"]) == 1  # missing, and an old table
    assert codegen.main([]) == 0
    assert codegen.main(["--check"]) == 0
    assert "| `me` | — |" in readme.read_text() and readme.read_text().endswith("\n\nMore.\n")
    codegen.TYPES.write_text(codegen.TYPES.read_text().replace("me: MeParams;", ""))
    readme.write_text(readme.read_text().replace("| `me` |", "| `you` |"))
    assert codegen.main(["--check"]) == 1
    err = capsys.readouterr().err
    assert "stale: ops.generated.d.ts" in err and "stale: README.md" in err


def test_a_readme_without_the_table_markers_is_a_clear_error():
    with pytest.raises(ValueError, match="op table markers"):
        codegen.readme(codegen.specs(), "# no table here\n")


def test_the_generator_reads_what_get_ops_serves(gateway):
    _, client = gateway()
    served = [OpSpec(**op) for op in client.get("/ops").json()["ops"]]
    assert served == codegen.specs()


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        ({"type": "integer"}, "number"),
        ({"anyOf": [{"type": "string"}, {"type": "null"}]}, "string | null"),
        ({"enum": ["MANAGED", "EXTERNAL"], "type": "string"}, "'MANAGED' | 'EXTERNAL'"),
        ({"const": "it's"}, "'it\\'s'"),
        ({"items": {"$ref": "#/$defs/Entry"}, "type": "array"}, "Entry[]"),
        (
            {"items": {"anyOf": [{"type": "integer"}, {"type": "null"}]}, "type": "array"},
            "(number | null)[]",
        ),
        ({"items": {}, "type": "array"}, "unknown[]"),
        (
            {"type": "object", "additionalProperties": {"type": "boolean"}},
            "Record<string, boolean>",
        ),
        ({"type": "object", "additionalProperties": True}, "Record<string, unknown>"),
        (
            {
                "type": "object",
                "properties": {"a-b": {"type": "string"}, "c": {}},
                "required": ["c"],
            },
            "{ 'a-b'?: string; c: unknown; }",
        ),
        # A byte or NDJSON stream is not a JSON result: the streaming helpers type it.
        (
            {"anyOf": [{"$ref": "#/$defs/TextContent"}, {"type": "string", "format": "binary"}]},
            "TextContent",
        ),
    ],
)
def test_json_schema_to_typescript(schema, expected):
    assert ts_type(schema) == expected


def test_every_op_gets_a_method_unless_it_is_hand_written():
    ops = codegen.specs()
    assert set(codegen.HAND_WRITTEN) <= {op.name for op in ops}, "HAND_WRITTEN names a gone op"
    assert set(codegen.METHOD_NAMES) <= {op.name for op in ops}, "METHOD_NAMES names a gone op"
    methods = {op.method for op in codegen.generated(ops)}
    assert {op.name for op in ops} - set(codegen.HAND_WRITTEN) == {
        op.name for op in codegen.generated(ops)
    }
    # The names callers already use stay what they were.
    assert methods >= {
        "me",
        "listCatalogs",
        "listSchemas",
        "listVolumes",
        "ensureVolume",
        "createDirectory",
        "listDirectory",
        "fileInfo",
        "deleteFile",
        "query",
    }


def test_up_to_two_required_params_are_positional_then_options():
    js = codegen.javascript(codegen.specs())
    assert (
        "listVolumes: (catalog, schema, call) => run('list_volumes', { catalog, schema }, call)"
        in js
    )
    assert (
        "listDirectory: (path, opts = {}, call) => run('list_directory', { path, ...opts }, call)"
        in js
    )
    assert "ensureVolume: (params, call) => run('ensure_volume', params, call)" in js
    assert "query: (params = {}, call) => run('run_query', params, call)" in js
    assert "me: (call) => run('me', {}, call)" in js
    dts = codegen.typescript(codegen.specs())
    assert (
        "listDirectory(path: string, opts?: Omit<ListDirectoryParams, 'path'>, call?: CallOptions)"
        in dts
    )


def test_a_reserved_word_is_never_a_positional_argument():
    op = OpSpec(
        name="tag_thing",
        description="",
        params={"properties": {"class": {"type": "string"}}, "required": ["class"]},
        result={},
    )
    assert op.positional == []
    assert "(params, call) => run('tag_thing', params, call)" in codegen.javascript([op])


def test_two_different_models_with_one_name_are_refused():
    def op(name: str, kind: str) -> OpSpec:
        result = {"$defs": {"Thing": {"type": kind}}, "$ref": "#/$defs/Thing"}
        return OpSpec(name=name, description="", params={}, result=result)

    with pytest.raises(ValueError, match="'Thing'"):
        codegen.models([op("a", "string"), op("b", "integer")])
