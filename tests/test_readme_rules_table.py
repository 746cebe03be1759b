"""The README's rules table is kept true: every parameter of the packaged rules files has a
row, and every test a row cites exists."""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_every_parameter_of_the_packaged_rules_has_a_row():
    missing = []
    for path in sorted((ROOT / "funding_rules" / "rules").glob("*.toml")):
        document = tomllib.loads(path.read_text(encoding="utf-8"))
        for section, values in document.items():
            if section == "rules" or not isinstance(values, dict):
                continue  # [rules] names the document; [[tranches]] has its own row
            missing += [f"{path.name}: {section}.{key}" for key in values if f"`{section}.{key}`" not in README]
    assert missing == []


def test_every_test_the_readme_cites_exists():
    cited = set(re.findall(r"(test_[a-z0-9_]+\.py)::(test_[a-z0-9_]+)", README))
    assert len(cited) > 50
    absent = []
    for file, name in sorted(cited):
        path = ROOT / "tests" / file
        names = {n.name for n in ast.walk(ast.parse(path.read_text(encoding="utf-8"))) if isinstance(n, ast.FunctionDef)} if path.exists() else set()
        if name not in names:
            absent.append(f"{file}::{name}")
    assert absent == []
