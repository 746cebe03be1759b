"""The layout shows the architecture, and this test keeps it so.

Every import in the tree (module level and inside functions) is read with ``ast`` and held
to the boundaries the README describes:

* ``ledger/core`` (the journal core) never imports the programme, the rules, the reports,
  the migrations or the CLI;
* ``funding_rules`` is pure policy: the standard library and the core's money and error
  helpers only, never SQLAlchemy;
* ``ledger/programme`` never imports the reports or the CLI;
* ``reports`` read: they never import a service that writes, and never fold events
  themselves (they ask ``ledger.programme.state``);
* ``migrations`` never import the ledger's storage code (only the table definitions alembic
  compares, and the pure rules loader to pin existing projects);
* nothing imports ``cli``.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def imports_of(path: Path) -> list[tuple[int, str]]:
    """(line, module or module.name) for every import in the file, at any depth."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def files(*parts: str) -> list[Path]:
    base = ROOT.joinpath(*parts)
    return [base] if base.is_file() else sorted(base.rglob("*.py"))


def _under(module: str, *prefixes: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def violations(paths: list[Path], forbidden) -> list[str]:
    out = []
    for path in paths:
        for line, module in imports_of(path):
            reason = forbidden(module)
            if reason:
                out.append(f"{path.relative_to(ROOT)}:{line} imports {module}: {reason}")
    return out


def test_the_journal_core_imports_nothing_of_the_programme_rules_reports_or_migrations():
    def forbidden(module: str) -> str | None:
        if _under(module, "ledger.programme", "funding_rules", "reports", "migrations", "cli"):
            return "the journal core must not depend on the programme, the rules, the reports or the migrations"
        return None

    assert violations(files("ledger", "core"), forbidden) == []




def test_funding_rules_import_only_the_standard_library_and_the_money_and_error_helpers():
    def forbidden(module: str) -> str | None:
        root = module.split(".")[0]
        if _under(module, "ledger.core.money", "ledger.core.errors", "funding_rules"):
            return None
        if root in sys.stdlib_module_names:
            return None
        return "funding_rules is pure policy: standard library, ledger.core.money and ledger.core.errors only"

    assert violations(files("funding_rules"), forbidden) == []


def test_the_programme_never_imports_the_reports_or_the_cli():
    def forbidden(module: str) -> str | None:
        return "the domain must not depend on its readers" if _under(module, "reports", "cli") else None

    assert violations(files("ledger", "programme"), forbidden) == []


# What a report may use of the programme: reads, views and the state the one fold gives.
READS = {
    "ledger.programme", "ledger.programme.BALANCE_KEYS", "ledger.programme.condition_hint",
    "ledger.programme.ProjectState", "ledger.programme.load_project", "ledger.programme.tranche_views",
    "ledger.programme.project_balances", "ledger.programme.project_folds", "ledger.programme.project_state",
    "ledger.programme.pinned_rules", "ledger.programme.chart", "ledger.programme.reads",
    "ledger.programme.models", "ledger.programme.state", "ledger.programme.balances", "ledger.programme.views",
    "ledger.programme.projection.verify_ledger", "ledger.programme.projection",
    "ledger.programme.projection.verify_since_checkpoint",  # verify_ledger from a checkpoint: reads only "ledger.programme.fold.STAGES",
    "ledger.programme.fold.ProjectFold",  # the type of what state gives, for annotations
    "ledger.programme.fold.RecordedFacts",  # the type of what recorded.project_facts gives
    "ledger.programme.recorded.project_facts",  # the facts auditors read, folded by the one fold: reads only
    # The Chinese names of the programme's codes: plain data, the words documents are written in.
    "ledger.programme.words",
    # The demo's parties and the record of what it recorded: data, read by reports.demo.
    "ledger.programme.demo", "ledger.programme.demo.PARTIES", "ledger.programme.demo.STATUS_PARTIES",
    "ledger.programme.demo.DemoLedger",
}
WRITERS = {"post", "post_many", "reverse", "open_accounts", "close_account", "insert_rows"}


def test_reports_only_read():
    def forbidden(module: str) -> str | None:
        if _under(module, "ledger.programme"):
            if module in READS or any(module.startswith(r + ".") for r in READS if r.endswith(("models", "words"))):
                return None
            if _under(module, "ledger.programme.fold"):
                return "reports never fold events themselves; use ledger.programme.state"
            return "reports only read: use the programme's reads, views and state, not its services"
        if _under(module, "ledger.core.journal", "ledger.core.bulk") and module.rsplit(".", 1)[-1] in WRITERS:
            return "reports never post"
        if _under(module, "cli"):
            return "reports never import the CLI"
        return None

    assert violations(files("reports"), forbidden) == []


def test_reports_never_write_rows():
    calls = []
    for path in files("reports"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("insert", "update", "delete"):
                calls.append(f"{path.relative_to(ROOT)}:{node.lineno} calls {node.func.id}()")
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in ("add", "commit", "flush")
                    and isinstance(node.func.value, ast.Name) and node.func.value.id in ("session", "s")):
                calls.append(f"{path.relative_to(ROOT)}:{node.lineno} calls session.{node.func.attr}()")
    assert calls == []


def test_migrations_never_import_the_storage_code():
    def forbidden(module: str) -> str | None:
        if _under(module, "ledger.core.models", "ledger.programme.models", "funding_rules.loader"):
            return None
        if _under(module, "ledger", "reports", "cli", "funding_rules"):
            return "migrations read their revision through alembic and never import the storage code"
        return None

    assert violations(files("migrations"), forbidden) == []


@pytest.mark.parametrize("top", ["ledger", "funding_rules", "reports", "migrations"])
def test_nothing_imports_the_cli(top):
    def forbidden(module: str) -> str | None:
        return "cli.py is the outermost layer" if _under(module, "cli") else None

    assert violations(files(top), forbidden) == []


def test_the_boundary_check_catches_a_crossing(tmp_path):
    """The checker itself: a core module importing the programme is reported."""
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from ledger.programme import release\n", encoding="utf-8")
    found = [m for _, m in imports_of(bad)]
    assert found == ["ledger.programme.release"]
