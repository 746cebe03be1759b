"""The beancount export: beancount's own loader and bean-check accept it, and the balances
beancount computes equal `jiebang balances` to the fen, for the whole ledger and as of a date.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
import sys
from collections import defaultdict
from decimal import Decimal
from pathlib import Path

import pytest
from beancount import loader
from beancount.core import data

from ledger.core.journal import (
    AccountSpec,
    EntryDraft,
    PostingDraft,
    close_account,
    open_accounts,
    post,
    reverse,
)

D = dt.date
TREASURY = "Assets:Treasury"
APPROPRIATIONS = "Equity:Appropriations:Y2025"
ADVANCES = "Assets:Advances:JM2025-003"
EQUIPMENT = "Expenses:Subsidy:JM2025-003:Equipment"
SUSPENSE = "Assets:Suspense"
OBLIGATIONS = "Assets:Obligations:JM2025-003"
AUTHORITY = "Equity:BudgetAuthority:Y2025"
PLEDGED = "Assets:Pledged:JM2025-003"
PLEDGE_PROMISES = "Equity:PledgePromises:JM2025-003"

MEMO_TEXT = 'Tranche "1" of JM2025-003 \\ 第一笔拨付（60%），见 乌科发〔2024〕33号'


def _legs(*pairs):
    return tuple(PostingDraft(account, amount) for account, amount in pairs)


def _entry(when, kind, voucher, memo, *pairs, project="JM2025-003"):
    return EntryDraft(when, kind, _legs(*pairs), project_code=project, voucher=voucher, memo=memo, actor="officer-a")


@pytest.fixture
def ledger(session_factory):
    """Entries in both books, a reversal, a closed account, and an account opened mid-year."""
    with session_factory() as session:
        open_accounts(
            session,
            [
                AccountSpec(TREASURY, "fiscal", D(2025, 1, 1)),
                AccountSpec(APPROPRIATIONS, "fiscal", D(2025, 1, 1)),
                AccountSpec(ADVANCES, "fiscal", D(2025, 3, 1), "JM2025-003"),
                AccountSpec(EQUIPMENT, "fiscal", D(2025, 3, 1), "JM2025-003"),
                AccountSpec(SUSPENSE, "fiscal", D(2025, 1, 1)),
                AccountSpec(OBLIGATIONS, "memo", D(2025, 3, 1), "JM2025-003"),
                AccountSpec(AUTHORITY, "memo", D(2025, 1, 1)),
                AccountSpec(PLEDGED, "memo", D(2025, 6, 1), "JM2025-003"),
                AccountSpec(PLEDGE_PROMISES, "memo", D(2025, 6, 1), "JM2025-003"),
            ],
        )
        post(session, _entry(D(2025, 1, 2), "appropriation", "A-2025", "年度预算", (TREASURY, 500_000_000), (APPROPRIATIONS, -500_000_000), project=None))
        post(
            session,
            _entry(
                D(2025, 3, 10), "release", "PV-001", MEMO_TEXT,
                (ADVANCES, 60_000_001), (TREASURY, -60_000_001), (OBLIGATIONS, -60_000_001), (AUTHORITY, 60_000_001),
            ),
        )
        post(session, _entry(D(2025, 4, 1), "transfer", "T-1", "", (SUSPENSE, 10_000), (TREASURY, -10_000), project=None))
        post(session, _entry(D(2025, 4, 2), "transfer", "T-2", "back", (TREASURY, 10_000), (SUSPENSE, -10_000), project=None))
        close_account(session, SUSPENSE, D(2025, 4, 30))
        post(session, _entry(D(2025, 5, 20), "spending", "S-1", "设备费", (EQUIPMENT, 12_345_678), (ADVANCES, -12_345_678)))
    with session_factory() as session:
        reverse(session, 5, reason="amount keyed wrongly", value_date=D(2025, 5, 21))
        post(session, _entry(D(2025, 5, 21), "spending", "S-2", "设备费 (corrected)", (EQUIPMENT, 12_345_687), (ADVANCES, -12_345_687)))
        post(session, _entry(D(2025, 7, 1), "pledge", "P-1", "自投承诺", (PLEDGED, 100_000_000), (PLEDGE_PROMISES, -100_000_000)))


def _fen(number: Decimal) -> int:
    fen = number * 100
    assert fen == fen.to_integral_value(), f"{number} has fractions of a fen"
    return int(fen)


def _beancount_balances(path: Path) -> tuple[dict[str, int], list]:
    """Load a file with beancount's loader and sum each account's postings."""
    entries, errors, _options = loader.load_file(str(path))
    assert [error.message for error in errors] == []
    sums: dict[str, int] = defaultdict(int)
    for entry in entries:
        if isinstance(entry, data.Transaction):
            for posting in entry.postings:
                assert posting.units.currency == "CNY"
                sums[posting.account] += _fen(posting.units.number)
    return {account: amount for account, amount in sums.items() if amount != 0}, entries


def _jiebang_balances(cli, *args: str) -> dict[str, dict[str, int]]:
    rows = json.loads(cli("balances", "--format", "json", *args).stdout)
    by_book: dict[str, dict[str, int]] = {"fiscal": {}, "memo": {}}
    for row in rows:
        by_book[row["book"]][row["account"]] = _fen(Decimal(row["balance"]))
    return by_book


def _bean_check() -> str:
    beside = Path(sys.executable).with_name("bean-check")
    found = str(beside) if beside.exists() else shutil.which("bean-check")
    assert found, "bean-check is installed with beancount; it must be on PATH"
    return found


def test_export_loads_in_beancount_and_matches_balances_to_the_fen(cli, ledger, tmp_path):
    for as_of in (None, "2025-05-20"):
        _check_export_matches(cli, tmp_path / f"export-{as_of}", as_of)


def _check_export_matches(cli, out: Path, as_of: str | None) -> None:
    extra = ["--as-of", as_of] if as_of else []
    result = cli("export", "beancount", "--out", str(out), *extra)
    assert result.stdout == f"wrote {out / 'fiscal.beancount'}\nwrote {out / 'memo.beancount'}\n"
    ours = _jiebang_balances(cli, *extra)
    for book in ("fiscal", "memo"):
        theirs, entries = _beancount_balances(out / f"{book}.beancount")
        assert theirs == ours[book]
        checked = subprocess.run([_bean_check(), str(out / f"{book}.beancount")], capture_output=True, text=True, check=False)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert all(isinstance(e, data.Balance) for e in entries[-len(ours[book]):])

    # The figures themselves, so the comparison cannot pass on two empty sides.
    if as_of is None:
        assert ours == {
            "fiscal": {TREASURY: 439_999_999, APPROPRIATIONS: -500_000_000, ADVANCES: 47_654_314, EQUIPMENT: 12_345_687},
            "memo": {OBLIGATIONS: -60_000_001, AUTHORITY: 60_000_001, PLEDGED: 100_000_000, PLEDGE_PROMISES: -100_000_000},
        }
    else:
        assert ours == {
            "fiscal": {TREASURY: 439_999_999, APPROPRIATIONS: -500_000_000, ADVANCES: 47_654_323, EQUIPMENT: 12_345_678},
            "memo": {OBLIGATIONS: -60_000_001, AUTHORITY: 60_000_001},
        }


def test_export_carries_metadata_and_assertions_exact_to_the_fen(cli, ledger, tmp_path):
    cli("export", "beancount", "--out", str(tmp_path))
    _, fiscal = _beancount_balances(tmp_path / "fiscal.beancount")
    transactions = [e for e in fiscal if isinstance(e, data.Transaction)]
    assert [int(t.meta["entry-id"]) for t in transactions] == [1, 2, 3, 4, 5, 6, 7]
    release = transactions[1]
    assert release.narration == MEMO_TEXT  # quotes, backslash and Chinese survive
    assert (release.payee, release.meta["kind"], release.meta["voucher"], release.meta["project"]) == (
        "release", "release", "PV-001", "JM2025-003",
    )
    reversal = transactions[5]
    assert (int(reversal.meta["reverses"]), reversal.narration) == (5, "amount keyed wrongly")
    closes = [(e.date, e.account) for e in fiscal if isinstance(e, data.Close)]
    assert closes == [(D(2025, 4, 30), SUSPENSE)]
    balances = [e for e in fiscal if isinstance(e, data.Balance)]
    assert {(b.date, b.account, b.amount.number, b.tolerance) for b in balances} == {
        (D(2025, 5, 22), TREASURY, Decimal("4399999.99"), Decimal("0.00")),
        (D(2025, 5, 22), APPROPRIATIONS, Decimal("-5000000.00"), Decimal("0.00")),
        (D(2025, 5, 22), ADVANCES, Decimal("476543.14"), Decimal("0.00")),
        (D(2025, 5, 22), EQUIPMENT, Decimal("123456.87"), Decimal("0.00")),
    }
    _, memo = _beancount_balances(tmp_path / "memo.beancount")
    assert [int(t.meta["entry-id"]) for t in memo if isinstance(t, data.Transaction)] == [2, 8]

    # The assertions carry "~ 0.00": without it beancount would let one fen through.
    path = tmp_path / "fiscal.beancount"
    text = path.read_text(encoding="utf-8")
    line = f"balance {EQUIPMENT} 123456.87 ~ 0.00 CNY"
    assert line in text
    path.write_text(text.replace(line, f"balance {EQUIPMENT} 123456.88 ~ 0.00 CNY"), encoding="utf-8")
    _entries, errors, _ = loader.load_file(str(path))
    assert len(errors) == 1 and "Balance failed" in errors[0].message
    checked = subprocess.run([_bean_check(), str(path)], capture_output=True, text=True, check=False)
    assert checked.returncode == 1


def test_export_of_an_empty_ledger_is_valid(cli, tmp_path):
    cli("export", "beancount", "--out", str(tmp_path))
    for book in ("fiscal", "memo"):
        entries, errors, _ = loader.load_file(str(tmp_path / f"{book}.beancount"))
        assert (entries, errors) == ([], [])


def test_export_opens_in_fava_with_commas_cny_and_a_title_naming_the_book_and_the_cut_off(cli, ledger, tmp_path):
    for as_of, cut_off in ((None, {"fiscal": "2025-05-21", "memo": "2025-07-01"}), ("2025-05-20", {"fiscal": "2025-05-20", "memo": "2025-05-20"})):
        out = tmp_path / f"export-{as_of}"
        cli("export", "beancount", "--out", str(out), *(["--as-of", as_of] if as_of else []))
        for book, name in (("fiscal", "财务账 fiscal book"), ("memo", "备查账 memo book")):
            _entries, errors, options = loader.load_file(str(out / f"{book}.beancount"))
            assert errors == []
            assert options["render_commas"] is True
            assert options["operating_currency"] == ["CNY"]
            # Without --as-of the cut-off is the book's last entry.
            assert options["title"] == f"jiebang {name} 截至 as of {cut_off[book]}"


def test_a_project_extract_is_titled_with_the_project(cli, ledger, tmp_path):
    cli("export", "beancount", "--project", "JM2025-003", "--as-of", "2025-06-30", "--out", str(tmp_path))
    _entries, errors, options = loader.load_file(str(tmp_path / "fiscal-JM2025-003.beancount"))
    assert errors == []
    assert options["title"] == "jiebang 财务账 fiscal book 项目 project JM2025-003 截至 as of 2025-06-30"
