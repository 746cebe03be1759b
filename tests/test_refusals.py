"""One registry of refusal codes (funding_rules.refusals), held to the code base; and
funding_rules kept pure: it imports only the money and error helpers and the standard library."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from funding_rules import checks
from funding_rules.refusals import REFUSALS
from ledger.programme.importer import REFUSAL_COLUMNS

ROOT = Path(__file__).resolve().parent.parent
SCANNED = [*sorted((ROOT / "ledger").rglob("*.py")), *sorted((ROOT / "funding_rules").rglob("*.py")),
           *sorted((ROOT / "reports").rglob("*.py")), *sorted((ROOT / "portal").rglob("*.py")), ROOT / "cli.py"]


def _trees():
    return [(path, ast.parse(path.read_text(encoding="utf-8"))) for path in SCANNED]


def _refusal_classes(trees) -> set[str]:
    """Refusal, every class deriving from it (to any depth), and the Violation makers."""
    bases = {}
    for _, tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                bases[node.name] = {getattr(b, "id", getattr(b, "attr", None)) for b in node.bases}
    found = {"Refusal"}
    while True:
        more = {name for name, parents in bases.items() if parents & found} - found
        if not more:
            return found | {"Violation", "_violation"}
        found |= more


def used_codes() -> tuple[dict[str, list[str]], list[str]]:
    """Codes given as the first argument of Refusal (and subclasses), Violation, _violation and
    a Refusal subclass's ``super().__init__``; and the sites that build a code at run time."""
    trees = _trees()
    makers = _refusal_classes(trees)
    codes: dict[str, list[str]] = {}
    built = []
    for path, tree in trees:
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            f = node.func
            name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else None
            is_super = (isinstance(f, ast.Attribute) and f.attr == "__init__" and isinstance(f.value, ast.Call)
                        and getattr(f.value.func, "id", None) == "super")
            if name not in makers and not is_super:
                continue
            first, where = node.args[0], f"{path.relative_to(ROOT)}:{node.lineno}"
            options = [first.body, first.orelse] if isinstance(first, ast.IfExp) else [first]
            for option in options:
                if isinstance(option, ast.Constant) and isinstance(option.value, str):
                    if is_super and not option.value.isidentifier():
                        continue  # Exception.__init__(message) of a non-refusal class
                    codes.setdefault(option.value, []).append(where)
                elif isinstance(option, (ast.JoinedStr, ast.BinOp)):
                    built.append(where)
                # A name or attribute passes on a code made elsewhere (a re-raise, a helper).
    return codes, built


def test_every_refusal_code_used_is_registered():
    codes, _ = used_codes()
    missing = {code: sites[0] for code, sites in codes.items() if code not in REFUSALS}
    assert missing == {}, "add these codes to funding_rules/refusals.py"


def test_every_registered_code_is_used():
    codes, _ = used_codes()
    assert sorted(set(REFUSALS) - set(codes)) == [], "remove these codes from funding_rules/refusals.py"


def test_refusal_codes_are_literal_predicates():
    _, built = used_codes()
    assert built == [], "write refusal codes as literals so the registry test can see them"
    assert all(code.isidentifier() and code == code.lower() for code in REFUSALS)
    assert all(line and "\n" not in line for line in REFUSALS.values())


def test_the_importer_column_map_names_registered_codes():
    assert sorted(set(REFUSAL_COLUMNS) - set(REFUSALS)) == []


def test_every_check_in_a_registry_is_a_named_module_function():
    for family, registry in checks.REGISTRIES.items():
        assert registry, family
        for check in registry:
            assert getattr(checks, check.__name__) is check, (family, check)
    assert checks.APPROVAL_CHECKS is checks.REGISTRIES["approval"]


ALLOWED_IMPORTS = ("funding_rules", "ledger.core.money", "ledger.core.errors")


@pytest.mark.parametrize("path", sorted((ROOT / "funding_rules").glob("*.py")), ids=lambda p: p.name)
def test_funding_rules_imports_only_money_errors_and_the_standard_library(path):
    stdlib = sys.stdlib_module_names
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                 else [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 else [])
        for name in names:
            ok = name.split(".")[0] in stdlib or name == "__future__" or any(
                name == allowed or name.startswith(allowed + ".") for allowed in ALLOWED_IMPORTS
            )
            assert ok, f"{path.name} imports {name}"


def test_importing_funding_rules_loads_no_database_or_programme_module():
    program = (
        "import sys, funding_rules.checks, funding_rules.loader, funding_rules.uscc, funding_rules.refusals;"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('sqlalchemy', 'alembic', 'click', 'pandas')"
        " or m.startswith('ledger.programme') or m in ('ledger.core.models', 'ledger.core.journal')))"
    )
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, check=True, cwd=ROOT)
    assert result.stdout.strip() == "[]"
