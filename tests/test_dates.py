"""One way to read dates everywhere, the date window on reads, and the far-future refusal.

Every verb, the import and posted files read dates with ``ledger.core.limits.parse_date``:
``2026-03-05``, ``2026/3/5``, ``20260305`` and ``2026年3月5日``. A value date more than
``JIEBANG_FUTURE_DAYS`` (DEFAULT 31) days after today is refused unless ``--allow-future``.
"""

from __future__ import annotations

import datetime as dt
import json

import pytest
from programme_fixtures import (
    JM_DEMAND,
    JM_UNIVERSITY,
    table_counts,
)

from ledger.core.errors import Refusal
from ledger.core.limits import FUTURE_DAYS_DEFAULT, check_not_future, parse_date

FORMS = ("2026-03-05", "2026/3/5", "20260305", "2026年3月5日", "２０２６年３月５日", "2026/03/05", "2026-3-5", " 2026 年 3 月 5 日 ")


@pytest.mark.parametrize("text", FORMS)
def test_every_form_is_the_same_date(text):
    assert parse_date(text) == dt.date(2026, 3, 5)


@pytest.mark.parametrize("text", ["2026-02-30", "2026/13/1", "2026年3月5", "3/5/2026", "", "20261305", "2026030", "2026-03-05T00:00", "二〇二六年三月五日"])
def test_anything_else_is_refused_in_one_line_naming_the_forms(text):
    with pytest.raises(Refusal) as caught:
        parse_date(text, "--date")
    assert caught.value.code == "date_must_be_iso"
    assert caught.value.message == f"--date {text!r} is not a date; write it as 2026-03-05, 2026/3/5, 20260305 or 2026年3月5日."


def test_the_future_bound_is_31_days_by_default_either_side(monkeypatch):
    monkeypatch.delenv("JIEBANG_FUTURE_DAYS", raising=False)
    today = dt.date(2026, 12, 5)
    assert FUTURE_DAYS_DEFAULT == 31
    assert check_not_future(dt.date(2027, 1, 5), today=today) == dt.date(2027, 1, 5)  # 31 days on
    with pytest.raises(Refusal) as caught:
        check_not_future(dt.date(2027, 1, 6), today=today)  # 32 days on
    assert caught.value.code == "date_must_not_be_far_future"
    assert "32 days after today (2026-12-05), more than the 31 allowed (JIEBANG_FUTURE_DAYS)" in caught.value.message
    monkeypatch.setenv("JIEBANG_FUTURE_DAYS", "0")
    assert check_not_future(today, today=today) == today
    with pytest.raises(Refusal):
        check_not_future(today + dt.timedelta(days=1), today=today)


def _world(cli) -> None:
    cli("party", "add", "--uscc", JM_DEMAND, "--name", "江门市某智能装备有限公司", "--revenue", "6亿", "--date", "2025/1/2")
    cli("party", "add", "--uscc", JM_UNIVERSITY, "--name", "五邑某大学", "--kind", "university", "--date", "20250102")
    cli("appropriate", "--year", "2025", "--amount", "5000万", "--date", "2025年1月10日")
    cli("project", "approve", "--code", "JM2025-003", "--name", "控制器", "--city", "jiangmen", "--category", "技术攻关",
        "--mode", "揭榜挂帅", "--demand", JM_DEMAND, "--solver", JM_UNIVERSITY, "--total-investment", "800万",
        "--grant", "300万", "--start", "2025/10/1", "--end", "2028年9月30日", "--date", "20250920")


def test_verbs_and_reads_accept_every_form(cli):
    _world(cli)
    for n, text in enumerate(("2025-10-05", "2025/10/6", "20251007", "2025年10月8日"), start=1):
        cli("pledge", "--project", "JM2025-003", "--amount", f"{n}万", "--date", text, "--voucher", f"CN-{n}")
    rows = json.loads(cli("journal", "--kind", "pledge", "--format", "json").stdout)
    assert sorted({r["date"] for r in rows}) == ["2025-10-05", "2025-10-06", "2025-10-07", "2025-10-08"]
    shown = json.loads(cli("project", "show", "JM2025-003", "--format", "json").stdout)
    assert (shown["start_date"], shown["end_date"], shown["approval_date"]) == ("2025-10-01", "2028-09-30", "2025-09-20")
    outputs = {cli("balances", "--project", "JM2025-003", "--as-of", text).stdout for text in ("2025-10-06", "2025/10/6", "20251006", "2025年10月6日")}
    assert len(outputs) == 1 and "30,000.00" in outputs.pop()  # 1万 + 2万 pledged by 2025-10-06
    since = {cli("journal", "--since", text, "--format", "csv").stdout for text in ("2025-10-07", "2025/10/7", "2025年10月7日")}
    assert len(since) == 1


def test_the_date_window_applies_to_reads(cli, monkeypatch):
    _world(cli)
    line = cli("balances", "--as-of", "1999/12/31", expect=1).stderr
    assert line == ("error: --as-of 1999-12-31 is outside the ledger's dates 2000-01-01..2099-12-31; correct the date "
                    "(the window is set by JIEBANG_DATE_MIN / JIEBANG_DATE_MAX).\n")
    monkeypatch.setenv("JIEBANG_DATE_MAX", "2030-12-31")
    assert "outside the ledger's dates 2000-01-01..2030-12-31" in cli("journal", "--since", "20310101", expect=1).stderr
    bad = cli("project", "show", "JM2025-003", "--as-of", "2025-02-30", expect=2).stderr
    assert "Invalid value for '--as-of': '2025-02-30' is not a date; write it as 2026-03-05, 2026/3/5, 20260305 or 2026年3月5日." in bad


def test_a_far_future_value_date_is_refused_unless_allowed(cli, engine, monkeypatch):
    _world(cli)
    monkeypatch.delenv("JIEBANG_FUTURE_DAYS", raising=False)
    today = dt.date.today()
    ahead = today + dt.timedelta(days=32)
    before = table_counts(engine)
    line = cli("pledge", "--project", "JM2025-003", "--amount", "1万", "--date", ahead.strftime("%Y/%m/%d"), expect=1).stderr
    assert line == (f"error: --date {ahead.isoformat()} is 32 days after today ({today.isoformat()}), more than the 31 allowed "
                    "(JIEBANG_FUTURE_DAYS); correct the date, or add --allow-future if it is right.\n")
    assert table_counts(engine) == before
    within = today + dt.timedelta(days=31)
    assert "，分录" in cli("pledge", "--project", "JM2025-003", "--amount", "1万", "--date", within.isoformat()).stdout
    allowed = cli("pledge", "--project", "JM2025-003", "--amount", "2万", "--date", ahead.isoformat(), "--allow-future").stdout
    assert allowed.startswith("自筹承诺 JM2025-003：20,000.00，")
    monkeypatch.setenv("JIEBANG_FUTURE_DAYS", "40")
    cli("pledge", "--project", "JM2025-003", "--amount", "3万", "--date", ahead.isoformat())


def test_import_and_posted_files_read_the_same_forms(cli, tmp_path):
    _world(cli)
    pledges = tmp_path / "pledges.csv"
    pledges.write_text("project,amount,date,voucher\nJM2025-003,1万,2025年10月5日,CN-A\nJM2025-003,2万,20251006,CN-B\n"
                       "JM2025-003,3万,2025/10/7,CN-C\n", encoding="utf-8")
    assert cli("import", str(pledges), "--kind", "pledges").output.splitlines()[-1] == "3 written, 0 already present."
    rows = json.loads(cli("journal", "--kind", "pledge", "--format", "json").stdout)
    assert sorted({r["date"] for r in rows}) == ["2025-10-05", "2025-10-06", "2025-10-07"]
    posted = tmp_path / "entries.csv"
    posted.write_text("txn_id,date,account,amount\nT1,2025年3月5日,Assets:A,1.00\nT1,2025年3月5日,Assets:B,-1.00\n", encoding="utf-8")
    assert cli("post", "--file", str(posted), "--open-accounts").stdout == "posted 1 entry; 0 already present.\n"
    assert "2025-03-05" in cli("journal", "--kind", "manual").stdout


def test_an_import_row_dated_far_in_the_future_is_a_problem_unless_allowed(cli, engine, tmp_path, monkeypatch):
    _world(cli)
    monkeypatch.delenv("JIEBANG_FUTURE_DAYS", raising=False)
    today = dt.date.today()
    ahead, within = today + dt.timedelta(days=32), today + dt.timedelta(days=31)
    pledges = tmp_path / "pledges.csv"
    pledges.write_text(f"project,amount,date,voucher\nJM2025-003,1万,{within:%Y/%m/%d},CN-F1\nJM2025-003,2万,{ahead:%Y/%m/%d},CN-F2\n",
                       encoding="utf-8")
    before = table_counts(engine)
    refused = cli("import", str(pledges), "--kind", "pledges", expect=1).output
    assert f"date {ahead.isoformat()} is 32 days after today ({today.isoformat()}), more than the 31 allowed" in refused
    assert f"{within.isoformat()} is" not in refused  # one day less is no problem
    assert table_counts(engine) == before
    allowed = cli("import", str(pledges), "--kind", "pledges", "--allow-future").output
    assert allowed.splitlines()[-1] == "2 written, 0 already present."
