"""The README's TypeScript example compiles under `tsc --strict` against the packed types.

The block is written inside clients/node (so it imports the package by its own name through
package.json `exports`, as an app would) and checked with the client's tsconfig settings.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CLIENT = ROOT / "clients" / "node"
TSC = CLIENT / "node_modules" / ".bin" / "tsc"


def readme_typescript() -> list[str]:
    return re.findall(r"^```ts\n(.*?)^```$", (ROOT / "README.md").read_text(), re.M | re.S)


def test_the_readme_has_a_typescript_example():
    assert readme_typescript(), "the README lost its TypeScript example"


@pytest.mark.skipif(not TSC.exists(), reason="clients/node has no typescript (run bootstrap)")
def test_the_readme_typescript_example_compiles_strict(tmp_path):
    name = f".readme-example-{os.getpid()}"
    source = CLIENT / "examples" / f"{name}.ts"
    config = CLIENT / f"{name}.tsconfig.json"
    options = {
        "extends": "./tsconfig.json",
        "compilerOptions": {"strict": True, "noEmit": True},
        "files": ["index.d.ts", "express.d.ts", f"examples/{name}.ts"],
    }
    try:
        source.write_text("\n\n".join(readme_typescript()))
        config.write_text(json.dumps(options))
        result = subprocess.run(
            [str(TSC), "-p", str(config)], cwd=CLIENT, capture_output=True, text=True, timeout=300
        )
    finally:
        source.unlink(missing_ok=True)
        config.unlink(missing_ok=True)
    assert result.returncode == 0, result.stdout + result.stderr
