"""The column path for ledger-shaped CSV files (`jiebang post --file x.csv`).

It must be the draft path (``journal.post_many``) made fast, not a second set of rules: for
random files, posting through ``read_csv_batch`` + ``post_batch`` and posting drafts read by
a plain ``csv.DictReader`` model of the format give the same journal byte for byte (ids,
digests, chain hashes, postings in order, accounts) or the same refusal, and a refusal
leaves nothing behind.
"""

from __future__ import annotations

import csv
import datetime as dt
import shutil
import sqlite3
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.orm import Session

from ledger.core import bulk
from ledger.core.db import make_engine
from ledger.core.errors import Refusal
from ledger.core.journal import AccountSpec, EntryDraft, PostingDraft, open_accounts, post_many
from ledger.core.money import parse_fen
from ledger.core.verify import verify

ACCOUNTS = {
    "Assets:Treasury": "fiscal",
    "Assets:Advances:JM2025-003": "fiscal",
    "Expenses:Grant:JM2025-003:Equipment": "fiscal",
    "Assets:Memo:Obligations": "memo",
    "Equity:Memo:Authority": "memo",
}
DATES = ["2025-01-02", "2025-03-10", "2025-03-11"]
HEADER = ["txn_id", "date", "account", "amount", "book", "memo", "voucher", "kind", "project", "category", "source"]


# --- the model: the CSV format read the plain way, into drafts ------------------------------


def model_read(path: Path, default_kind: str, actor: str) -> tuple[list[EntryDraft], list[AccountSpec]]:
    groups: dict[str, dict] = {}
    first_use: dict[str, AccountSpec] = {}
    with path.open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            row = {k: v or "" for k, v in row.items()}
            txn, date = row["txn_id"].strip(), dt.date.fromisoformat(row["date"].strip())
            group = groups.setdefault(txn, {
                "date": date, "kind": (row.get("kind") or default_kind).strip(), "project": row.get("project") or None,
                "voucher": row.get("voucher") or txn, "memo": row.get("memo", ""), "postings": [],
            })
            account = row["account"].strip()
            group["postings"].append(PostingDraft(account, parse_fen(row["amount"].strip(), allow_negative=True),
                                                  row.get("category") or None, row.get("source") or None))
            spec = first_use.get(account)
            if spec is None or date < spec.opened_on:
                first_use[account] = AccountSpec(account, (row.get("book") or "fiscal").strip(), date, row.get("project") or None)
    drafts = [
        EntryDraft(value_date=g["date"], kind=g["kind"], postings=tuple(g["postings"]), project_code=g["project"],
                   voucher=g["voucher"], memo=g["memo"], actor=actor)
        for g in groups.values()
    ]
    return drafts, list(first_use.values())


# --- random files ------------------------------------------------------------------------------

def _yuan(fen: int, style: int) -> str:
    sign, fen = ("-" if fen < 0 else ""), abs(fen)
    text = f"{fen // 100}.{fen % 100:02d}"
    if style == 1 and fen % 100 == 0:
        text = str(fen // 100)  # no decimals
    elif style == 2:
        text = f"{fen // 100:,}.{fen % 100:02d}"  # thousands separators
    elif style == 3 and fen % 100000 == 0:
        text = f"{fen // 1000000}万" if fen % 1000000 == 0 else text
    return sign + text


@st.composite
def csv_files(draw):
    names = list(ACCOUNTS)
    n_txn = draw(st.integers(1, 6))
    rows = []
    for t in range(n_txn):
        date = draw(st.sampled_from(DATES))
        legs = []
        for _ in range(draw(st.integers(1, 3))):
            account = draw(st.sampled_from(names))
            fen = draw(st.sampled_from([0, 1, 100, 12345, 5_000_000_00, 300_000_000])) * draw(st.sampled_from([1, -1]))
            legs.append([account, fen])
        if draw(st.integers(0, 9)) < 8:  # most entries balance in each book
            for book in ("fiscal", "memo"):
                total = sum(f for a, f in legs if ACCOUNTS[a] == book)
                if total:
                    other = next(a for a in names if ACCOUNTS[a] == book and a not in [x for x, _ in legs]) if any(
                        a not in [x for x, _ in legs] and ACCOUNTS[a] == book for a in names) else None
                    if other:
                        legs.append([other, -total])
        txn = f"T{t}" if draw(st.booleans()) else f" T{t} "
        # Braces and percent signs in vouchers and memos: messages must not read them as templates.
        voucher = draw(st.sampled_from(["", "", "V{1}-%s", f"V-{t}", "PZ{2025}-1"]))
        kind = draw(st.sampled_from(["", "release", "Bad Kind"] if draw(st.integers(0, 20)) == 0 else ["", "release"]))
        for k, (account, fen) in enumerate(legs):
            rows.append([
                txn, f" {date}" if draw(st.integers(0, 5)) == 0 else date,
                f"{account} " if draw(st.integers(0, 5)) == 0 else account,
                _yuan(fen, draw(st.integers(0, 3))), draw(st.sampled_from(["", ACCOUNTS[account], "fiscal"])),
                draw(st.sampled_from(["", "首笔拨付", 'a "quoted", memo', "{0} 100%"])) if k == 0 else "",
                voucher if k == 0 else "", kind if k == 0 else "",
                draw(st.sampled_from(["", "JM2025-003"])) if k == 0 else "",
                draw(st.sampled_from(["", "", "equipment", "labour"])), draw(st.sampled_from(["", "city_fiscal"])),
            ])
    order = draw(st.permutations(range(len(rows))))
    return [rows[i] for i in order]


def _write(path: Path, rows) -> Path:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        writer.writerows(rows)
    return path


def _journal(db: Path) -> tuple:
    with sqlite3.connect(db) as c:
        return (
            c.execute("SELECT id, value_date, kind, project_code, voucher, memo, actor, rules_version, trace, "
                      "reverses_id, content_hash, prev_hash, hash FROM journal_entries ORDER BY id").fetchall(),
            c.execute("SELECT p.entry_id, a.name, p.value_date, p.book, p.amount_fen, p.budget_category, p.fund_source "
                      "FROM postings p JOIN accounts a ON a.id = p.account_id ORDER BY p.id").fetchall(),
            c.execute("SELECT id, name, book, project_code, opened_on FROM accounts ORDER BY id").fetchall(),
            c.execute("SELECT last_entry_id, last_hash FROM chain_head").fetchall(),
        )


def _run(db: Path, post) -> str:
    engine = make_engine(f"sqlite:///{db}")
    try:
        with Session(engine) as session, session.begin():
            return str(post(session))
    except Refusal as refusal:
        return f"refused: {refusal.message}"
    finally:
        engine.dispose()


def _column_path(path: Path):
    def post(session):
        batch = bulk.read_csv_batch(path, default_kind="manual")
        open_accounts(session, batch.specs)
        result = bulk.post_batch(session, batch, actor="officer")
        return (result.created, result.present)
    return post


def _model_path(path: Path):
    def post(session):
        drafts, specs = model_read(path, "manual", "officer")
        open_accounts(session, specs)
        results = post_many(session, drafts)
        created = sum(r.created for r in results)
        return (created, len(results) - created)
    return post


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(first=csv_files(), second=csv_files())
def test_column_path_equals_draft_path(first, second, tmp_path_factory, _sqlite_template):
    work = tmp_path_factory.mktemp("bulk")
    a, b = work / "columns.db", work / "drafts.db"
    shutil.copyfile(_sqlite_template, a)
    shutil.copyfile(_sqlite_template, b)
    # Two files in turn: the second meets the first one's vouchers (present or conflicting).
    for n, rows in enumerate((first, second)):
        path = _write(work / f"f{n}.csv", rows)
        assert _run(a, _column_path(path)) == _run(b, _model_path(path))
        assert _journal(a) == _journal(b)
    # The same file again: everything is recognised, nothing is written.
    before = _journal(a)
    outcome = _run(a, _column_path(path))
    assert _journal(a) == before
    assert outcome.startswith(("refused", "(0, "))


# --- on both backends, through the CLI ----------------------------------------------------------


def test_refused_file_writes_nothing_and_a_good_one_verifies(cli, db_url, engine, tmp_path):
    rows = [["T1", "2025-01-02", "Assets:Treasury", "100.00", "fiscal"],
            ["T1", "2025-01-02", "Equity:Appropriations", "-100.00", "fiscal"],
            ["T2", "2025-01-03", "Assets:Treasury", "-0.01", "fiscal"],
            ["T2", "2025-01-03", "Equity:Appropriations", "0.02", "fiscal"]]
    path = tmp_path / "p.csv"
    path.write_text("txn_id,date,account,amount,book\n" + "".join(",".join(r) + "\n" for r in rows), encoding="utf-8")
    result = cli("post", "--file", str(path), "--open-accounts", expect=1)
    assert result.stderr == (
        "error: entry manual T2 does not balance in the fiscal book: postings sum to 0.01, not 0.00; "
        "fix the amounts so debits equal credits.\n"
    )
    assert cli("accounts", "--format", "csv").stdout.count("\n") == 1  # the header: nothing written
    rows[3][3] = "0.01"
    path.write_text("txn_id,date,account,amount,book\n" + "".join(",".join(r) + "\n" for r in rows), encoding="utf-8")
    assert cli("post", "--file", str(path), "--open-accounts").stdout == "posted 2 entries; 0 already present.\n"
    with Session(engine) as session, session.begin():
        assert verify(session).ok


@pytest.mark.parametrize("text, message", [
    ("T1,2025-01-02,Assets:A,1.00\nT1,2025-01-03,Assets:B,-1.00\n", "line 3: txn T1 has rows with different dates."),
    ("T1,2025-13-02,Assets:A,1.00\nT1,2025-13-02,Assets:B,-1.00\n", "line 2: date '2025-13-02' is not a date; write it as 2026-03-05, 2026/3/5, 20260305 or 2026年3月5日."),
    (",2025-01-02,Assets:A,1.00\n", "line 2: txn_id is empty."),
    ("T1,2025-01-02,Assets:A,1.005\nT1,2025-01-02,Assets:B,-1.005\n", "line 2 amount '1.005' has more than two decimals (fen); round it to 0.01 yuan and retry."),
    ("T1,2025-01-02,Assets:A,1,234.00\n", "line 2 has more cells than the header"),
    ("T1,2025-01-02,Assets:A,1,234,567.00\n", "line 2 has more cells than the header"),
    ("T1,2025-01-02,Assets:A,1.00\nT1,2025-01-02,Assets:B,-1,234,567.00\n", "line 3 has more cells than the header"),
    ("T1,2025-01-02,Assets:A,1.00\nT1,2025-01-02," + "x" * 200_000 + ",-1.00\n", "line 3 is not well-formed CSV: field larger than field limit"),
])
def test_malformed_rows_are_named_by_line(tmp_path, text, message):
    path = tmp_path / "bad.csv"
    path.write_text("txn_id,date,account,amount\n" + text, encoding="utf-8")
    with pytest.raises(Refusal) as refusal:
        bulk.read_csv_batch(path, default_kind="manual")
    assert message in refusal.value.message
    assert "\n" not in refusal.value.message


def test_blank_and_short_rows(tmp_path):
    path = tmp_path / "short.csv"
    path.write_text("txn_id,date,account,amount,memo\nT1,2025-01-02,Assets:A,1.00\n\nT1,2025-01-02,Assets:B,-1.00,x\n", encoding="utf-8")
    batch = bulk.read_csv_batch(path, default_kind="manual")
    assert batch.txn == ["T1"] and batch.memo == [""]
    assert batch.amount_fen.tolist() == [100, -100]
    # The blank line still counts: a bad amount after it is named by its own line.
    path.write_text("txn_id,date,account,amount\nT1,2025-01-02,Assets:A,1.00\n\nT1,2025-01-02,Assets:B,-1.001\n", encoding="utf-8")
    with pytest.raises(Refusal) as refusal:
        bulk.read_csv_batch(path, default_kind="manual")
    assert f"{path} line 4 amount '-1.001'" in refusal.value.message


def test_large_load_rebuilds_the_balance_index_and_a_failed_one_keeps_it(cli, db_url, tmp_path, monkeypatch):
    if not db_url.startswith("sqlite"):
        pytest.skip("the index rebuild is SQLite's bulk path")
    from ledger.core import journal

    db = Path(db_url.removeprefix("sqlite:///"))

    def index_sql():
        with sqlite3.connect(db) as c:
            return c.execute("SELECT sql FROM sqlite_master WHERE name = 'ix_postings_account_date'").fetchone()

    def counts():
        with sqlite3.connect(db) as c:
            return c.execute("SELECT (SELECT COUNT(*) FROM journal_entries), (SELECT COUNT(*) FROM postings)").fetchone()

    original = index_sql()
    assert original is not None
    path = tmp_path / "load.csv"
    path.write_text("txn_id,date,account,amount\n" + "".join(
        f"T{i},2025-01-02,Assets:A{i % 7},1.00\nT{i},2025-01-02,Equity:B,-1.00\n" for i in range(50)))
    # A failure in the middle of the write (here: the disk fills after the first chunk)
    # rolls back the rows written so far and the dropped index with them.
    monkeypatch.setattr(journal, "BULK_CHUNK", 10)
    real, calls = journal.insert_rows, []

    def failing(*args):
        calls.append(1)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        real(*args)

    monkeypatch.setattr(journal, "insert_rows", failing)
    cli("post", "--file", str(path), "--open-accounts", expect=1)
    assert (index_sql(), counts()) == (original, (0, 0))
    monkeypatch.setattr(journal, "insert_rows", real)
    assert cli("post", "--file", str(path), "--open-accounts").stdout == "posted 50 entries; 0 already present.\n"
    assert (index_sql(), counts()) == (original, (50, 100))
    with sqlite3.connect(db) as c:
        plan = c.execute("EXPLAIN QUERY PLAN SELECT account_id, SUM(amount_fen) FROM postings "
                         "WHERE value_date <= '2025-12-31' GROUP BY account_id").fetchall()
    assert "ix_postings_account_date" in str(plan)


def test_a_large_load_leaves_postgresql_vacuumed_and_analysed(cli, db_url, engine, tmp_path):
    """After the load commits, VACUUM (ANALYZE) gives the planner statistics and the trial
    balance an index-only scan (the visibility map); a small post into a large journal doesn't."""
    if not db_url.startswith("postgresql"):
        pytest.skip("VACUUM and the planner's statistics are PostgreSQL's")
    from sqlalchemy import text

    def vacuumed() -> int:
        with engine.connect() as conn:
            return conn.execute(text(
                "SELECT vacuum_count FROM pg_stat_user_tables WHERE relname = 'postings' AND schemaname = current_schema()"
            )).scalar()

    path = tmp_path / "load.csv"
    path.write_text("txn_id,date,account,amount\n" + "".join(
        f"T{i},2025-01-02,Assets:A{i % 7},1.00\nT{i},2025-01-02,Equity:B,-1.00\n" for i in range(50)))
    assert cli("post", "--file", str(path), "--open-accounts").stderr == ""
    assert vacuumed() == 1
    small = tmp_path / "small.csv"
    small.write_text("txn_id,date,account,amount\nS1,2025-01-03,Assets:A1,1.00\nS1,2025-01-03,Equity:B,-1.00\n")
    cli("post", "--file", str(small))
    assert vacuumed() == 1
