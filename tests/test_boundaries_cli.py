"""cli.py stays one thin module: it parses, opens a session, calls a service or a view,
renders and maps errors. It holds no query: no ``select``, no SQL text, no ``execute`` or
``scalars``, no ``get`` on a session, no models, and imports nothing of SQLAlchemy but the
one exception type it maps to a one-line error.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CLI = ROOT / "cli.py"

# The only SQLAlchemy import allowed: the exception JiebangGroup maps to "the database
# refused the operation" (exit 1) in _database_problem.
ALLOWED_SQLALCHEMY_IMPORTS = {("sqlalchemy.exc", "DBAPIError")}

QUERY_BUILDERS = {"select", "text", "insert", "update", "delete"}  # called by name
QUERY_METHODS = {"execute", "scalars", "scalar", "exec_driver_sql", "query"}  # on any receiver
SESSION_METHODS = QUERY_METHODS | {"get", "get_one", "connection", "merge", "add", "add_all"}
MODEL_MODULES = {"ledger.core.models", "ledger.programme.models"}
# Context managers and functions whose result is a session in cli.py.
SESSION_SOURCES = {"read", "write", "open_session", "read_session", "write_session", "Session"}
SQL_TEXT = re.compile(r"\b(SELECT|INSERT\s+INTO|UPDATE|DELETE\s+FROM)\b[^\n]*\b(FROM|VALUES|SET|WHERE)\b")


def _callee_name(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def _session_names(tree: ast.AST) -> set[str]:
    """Names that hold a session: ``with obj.read() as session`` and the like, and any
    parameter called ``session``."""
    names = {"session"}
    for node in ast.walk(tree):
        if isinstance(node, (ast.With, ast.AsyncWith)):
            for item in node.items:
                call = item.context_expr
                if (isinstance(call, ast.Call) and _callee_name(call.func) in SESSION_SOURCES
                        and isinstance(item.optional_vars, ast.Name)):
                    names.add(item.optional_vars.id)
    return names


def query_problems(source: str) -> list[str]:
    """Every place the source queries the database or imports SQLAlchemy, as 'line: what'."""
    tree = ast.parse(source)
    sessions = _session_names(tree)
    problems = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "sqlalchemy":
                    problems.append(f"{node.lineno}: import {alias.name}")
                if alias.name in MODEL_MODULES:
                    problems.append(f"{node.lineno}: import {alias.name}")
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if module.split(".")[0] == "sqlalchemy":
                for alias in node.names:
                    if (module, alias.name) not in ALLOWED_SQLALCHEMY_IMPORTS:
                        problems.append(f"{node.lineno}: from {module} import {alias.name}")
            if module in MODEL_MODULES or any(f"{module}.{a.name}" in MODEL_MODULES for a in node.names):
                problems.append(f"{node.lineno}: models imported from {module}")
        elif isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name) and func.id in QUERY_BUILDERS:
                problems.append(f"{node.lineno}: {func.id}(...)")
            elif isinstance(func, ast.Name) and func.id in {"__import__", "import_module"}:
                problems.append(f"{node.lineno}: {func.id}(...) hides an import")
            elif isinstance(func, ast.Attribute):
                receiver = func.value.id if isinstance(func.value, ast.Name) else None
                if func.attr in QUERY_METHODS:
                    problems.append(f"{node.lineno}: .{func.attr}(...)")
                elif ((func.attr in QUERY_BUILDERS and receiver in {"sa", "sqlalchemy"})
                      or (func.attr in SESSION_METHODS and receiver in sessions)):
                    problems.append(f"{node.lineno}: {receiver}.{func.attr}(...)")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and SQL_TEXT.search(node.value):
            problems.append(f"{node.lineno}: SQL text {node.value[:40]!r}")
    return sorted(set(problems), key=lambda p: int(p.split(":")[0]))


def test_cli_holds_no_query_and_no_sqlalchemy_import():
    assert query_problems(CLI.read_text(encoding="utf-8")) == []


def test_the_one_allowed_sqlalchemy_import_is_the_mapped_exception():
    """If cli.py stops mapping DBAPIError the allowance goes too; it must not linger."""
    tree = ast.parse(CLI.read_text(encoding="utf-8"))
    found = {
        (node.module, alias.name)
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sqlalchemy")
        for alias in node.names
    }
    assert found == ALLOWED_SQLALCHEMY_IMPORTS


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from sqlalchemy import select\n", "1: from sqlalchemy import select"),
        ("def f():\n    import sqlalchemy.orm\n", "2: import sqlalchemy.orm"),
        ("def f():\n    from sqlalchemy.orm import Session\n", "2: from sqlalchemy.orm import Session"),
        ("from sqlalchemy.exc import IntegrityError\n", "1: from sqlalchemy.exc import IntegrityError"),
        ("from ledger.programme.models import Party\n", "1: models imported from ledger.programme.models"),
        ("from ledger.core import models\n", "1: models imported from ledger.core"),
        ("q = select(Party)\n", "1: select(...)"),
        ("q = sa.text('x')\n", "1: sa.text(...)"),
        ("rows = text('x')\n", "1: text(...)"),
        ("rows = conn.execute(q)\n", "1: .execute(...)"),
        ("rows = s.scalars(q)\n", "1: .scalars(...)"),
        ("with obj.read() as s:\n    p = s.get(Party, 1)\n", "2: s.get(...)"),
        ("def f(session):\n    return session.get(Party, 1)\n", "2: session.get(...)"),
        ("x = 'SELECT code FROM projects WHERE city = ?'\n", "1: SQL text 'SELECT code FROM projects WHERE city = ?'"),
        ("m = __import__('sqlalchemy')\n", "1: __import__(...) hides an import"),
    ],
)
def test_the_checker_catches_each_kind_of_query(source, expected):
    assert expected in query_problems(source)


@pytest.mark.parametrize(
    "source",
    [
        "from sqlalchemy.exc import DBAPIError\n",
        "value = row.get('column', '')\n",  # a dict, not a session
        "user = os.environ.get('JIEBANG_USER')\n",
        "with obj.read() as session:\n    rows = views.party_list(session)\n",
        "help_text = 'Select the rows you want from the sheet.'\n",
    ],
)
def test_the_checker_lets_rendering_be(source):
    assert query_problems(source) == []
