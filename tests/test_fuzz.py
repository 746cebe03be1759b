"""Hostile input: every parser either accepts an input correctly or refuses it in one line.

hypothesis throws random and adversarial text, bytes and values at the money and rate
parsers, the date readers, the USCC validator, rules files (written to disk and loaded),
scenario files and the import reader, and runs generated CSV and xlsx files through
`jiebang import`: huge numbers, 10 MB cells, formulas, GBK and UTF-8-BOM text, NaN and
infinity, SQL-looking strings. The only allowed outcomes are a correct value or a Refusal
whose message is one line; an import is written whole or not at all.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import itertools
import math
import re
from decimal import Decimal
from pathlib import Path

import openpyxl
import pytest
from conftest import Cli
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text as sql

from ledger.core.errors import Refusal
from ledger.core.money import AMOUNT_FEN_MAX, format_fen, parse_fen, parse_rate

FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SLOW = settings(max_examples=30, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
RULES_DIR = Path(__file__).resolve().parent.parent / "funding_rules" / "rules"

SQLISH = ["'; DROP TABLE journal_entries; --", "1 OR 1=1", "\" OR \"\"=\"", "Robert'); DELETE FROM postings;--", "%s%s%n"]
# Text that str.format or %-formatting would read as a template: a message that passes user
# data through either crashes (IndexError, KeyError) instead of refusing in one line.
TEMPLATISH = ["PZ{2025}-1", "{0}", "{}", "{entry_id}", "{{", "}", "{0!r:>{1}}", "%", "100%", "%(voucher)s", "%d%%", "PZ%s-1"]
HOSTILE = SQLISH + TEMPLATISH + [
    "nan", "NaN", "inf", "-inf", "Infinity", "1e309", "1E5", "0x10", "１２３", "١٢٣", "1_000", "--1", "+-1", "1..2",
    "=SUM(A1:A9)", "=1+1", "@cmd", "+1", "-0", "0.001", "999999999999999999999999", "9" * 400, "1,23,456", "３００万",
    "", " ", "\x00", "\u202e1", "\ufeff100", "￥100", "100元", "1.5亿", "300万元", "1,234.56", "2025-13-01", "2025-02-30",
    "0000-01-01", "9999-12-31", "2025/1/2", "45000", "true", "是", "None", "null", "\n", "\r\n", "a\"b", "中文" * 50,
]
hostile_text = st.one_of(st.sampled_from(HOSTILE), st.text(max_size=40), st.from_regex(r"[-+]?[\d,，{}%]{0,25}(\.\d{0,4})?(万|亿|%)?元?", fullmatch=True))


def one_line(refusal: Refusal) -> None:
    assert isinstance(refusal.code, str) and refusal.code
    assert refusal.message and "\n" not in refusal.message and "\r" not in refusal.message, repr(refusal.message)


def accepted_or_refused(call, *args, **kwargs):
    """The value, or None after checking the Refusal is one line; any other exception fails."""
    try:
        return call(*args, **kwargs)
    except Refusal as refusal:
        one_line(refusal)
        return None


# --- money, rates, dates, USCC ----------------------------------------------------------


@FAST
@given(hostile_text)
def test_the_money_parser_accepts_exact_amounts_or_refuses_in_one_line(value):
    fen = accepted_or_refused(parse_fen, value)
    if fen is not None:
        assert isinstance(fen, int) and 0 <= fen <= AMOUNT_FEN_MAX
        assert parse_fen(format_fen(fen)) == fen  # what was accepted reads back exactly


@FAST
@given(st.one_of(
    st.floats(allow_nan=True, allow_infinity=True), st.integers(min_value=-(10**30), max_value=10**30),
    st.decimals(allow_nan=True, allow_infinity=True), st.sampled_from([Decimal("sNaN"), Decimal("1E+999999"), Decimal("-0"), True, None, b"1"]),
))
def test_the_money_parser_refuses_floats_nan_infinity_and_absurd_values(value):
    fen = accepted_or_refused(parse_fen, value, allow_negative=True)
    if fen is not None:
        assert not isinstance(value, (float, bool)) and abs(fen) <= AMOUNT_FEN_MAX
        assert Decimal(fen) == Decimal(value) * 100


@FAST
@given(st.integers(min_value=0, max_value=AMOUNT_FEN_MAX))
def test_every_amount_in_range_round_trips_through_its_text(fen):
    assert parse_fen(format_fen(fen)) == fen
    whole, part = divmod(fen, 100)
    assert parse_fen(f"{whole:,}.{part:02d}元") == fen


@FAST
@given(st.one_of(hostile_text, st.decimals(allow_nan=True, allow_infinity=True)))
def test_the_rate_parser_accepts_rates_in_0_1_or_refuses(value):
    rate = accepted_or_refused(parse_rate, value)
    if rate is not None:
        assert isinstance(rate, Decimal) and 0 <= rate <= 1


@FAST
@given(st.one_of(hostile_text, st.dates().map(dt.date.isoformat), st.integers(), st.floats(allow_nan=True)))
def test_dates_are_iso_dates_or_refused(value):
    from cli import parse_date
    from ledger.programme.importer import Column, _read_date

    parsed = accepted_or_refused(parse_date, value)
    if parsed is not None:
        assert isinstance(parsed, dt.date)
    column = Column("date", "date", True, "日期", "Date.", "2025-01-02")
    read = accepted_or_refused(_read_date, value, column)
    if read is not None:
        assert isinstance(read, dt.date)


@FAST
@given(st.one_of(hostile_text, st.text(alphabet="0123456789ABCDEFGHJKLMNPQRTUWXY -　{}%", min_size=16, max_size=20)))
def test_a_uscc_is_valid_or_refused_in_one_line(value):
    from funding_rules.uscc import normalize_uscc, validate_uscc

    assert isinstance(normalize_uscc(value), str)
    result = accepted_or_refused(validate_uscc, value)
    if result is not None:
        assert len(result.code) == 18 and result.valid
    overridden = accepted_or_refused(validate_uscc, value, override_reason="legacy code on the 2015 certificate")
    if overridden is not None:
        assert len(overridden.code) == 18


# --- rules files and scenario files -----------------------------------------------------

_counter = itertools.count()
TOML_VALUES = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1), st.floats(allow_nan=True, allow_infinity=True), st.booleans(),
    st.text(max_size=20), st.sampled_from(HOSTILE), st.dates(), st.lists(st.integers(-5, 200), max_size=4),
    st.lists(st.floats(allow_nan=True), max_size=3),
)


def toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value == math.inf else "-inf" if value == -math.inf else repr(value))
    if isinstance(value, (int, dt.date)):
        return str(value) if isinstance(value, int) else value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r").replace("\x00", "") + '"'


def _rules_lines() -> list[str]:
    return (RULES_DIR / "jiangmen-2023-trial.toml").read_text(encoding="utf-8").splitlines()


@FAST
@given(st.data())
def test_a_mutated_rules_file_loads_or_is_refused_in_one_line(tmp_path_factory, data):
    from funding_rules.loader import load_rules_file

    lines = _rules_lines()
    assignments = [i for i, line in enumerate(lines) if re.match(r"^\s*[A-Za-z_][\w.]*\s*=", line)]
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.sampled_from(assignments))
        action = data.draw(st.sampled_from(["value", "delete", "garbage", "duplicate"]))
        key = lines[i].split("=", 1)[0]
        if action == "value":
            lines[i] = f"{key}= {toml_value(data.draw(TOML_VALUES))}"
        elif action == "delete":
            lines[i] = ""
        elif action == "garbage":
            lines[i] = data.draw(st.sampled_from(HOSTILE + ["[[tranche]]", "[approval", "key = ", "= 1"]))
        else:
            lines.insert(i, lines[i])
    # The version must equal the file name, so every example gets its own folder.
    path = tmp_path_factory.mktemp("rules") / "jiangmen-2023-trial.toml"
    raw = "\n".join(lines).encode("utf-8")
    if data.draw(st.booleans()):
        raw = data.draw(st.sampled_from([b"\xef\xbb\xbf", b"\xff\xfe", b"", b"\x00"])) + raw
    path.write_bytes(raw)
    rules = accepted_or_refused(load_rules_file, path)
    if rules is not None:
        assert rules.version and rules.tranches is not None


@FAST
@given(st.binary(max_size=300))
def test_random_bytes_as_a_rules_file_are_refused_in_one_line(tmp_path_factory, raw):
    from funding_rules.loader import load_rules_file

    path = tmp_path_factory.mktemp("rules") / f"bytes-{next(_counter)}.toml"
    path.write_bytes(raw)
    assert accepted_or_refused(load_rules_file, path) is None


SCENARIO_KEYS = {
    "scenario": ["name", "description"], "schedule": ["contract_offset_days", "acceptance_months_after_end", "subsidy_release", "round_approval"],
    "midterm": ["failure_rate"], "termination": ["rate", "timing"], "saima": ["survivors"], "recoveries": ["collected_share"],
    "delay": ["days", "probabilities"], "bogus": ["key"],
}


@FAST
@given(st.dictionaries(st.sampled_from(sorted(SCENARIO_KEYS)), st.data(), max_size=5), st.data())
def test_a_hostile_scenario_file_loads_or_is_refused_in_one_line(tmp_path_factory, sections, data):
    from reports.forecast import Scenario, load_scenario

    lines = []
    for section in sections:
        lines.append(f"[{section}]")
        for key in data.draw(st.lists(st.sampled_from(SCENARIO_KEYS[section]), unique=True, max_size=3)):
            lines.append(f"{key} = {toml_value(data.draw(TOML_VALUES))}")
    text = "\n".join(lines)
    if data.draw(st.integers(0, 9)) == 0:
        text = data.draw(st.text(max_size=60))
    path = tmp_path_factory.mktemp("scenario") / "cautious.toml"
    path.write_bytes(text.encode("utf-8", "replace"))
    scenario = accepted_or_refused(load_scenario, path)
    if scenario is not None:
        assert isinstance(scenario, Scenario)


# --- the import reader and `jiebang import` ---------------------------------------------


@FAST
@given(st.binary(max_size=2000), st.sampled_from([".csv", ".xlsx", ".xls", ".txt"]))
def test_random_bytes_are_read_or_refused_by_the_import_reader(tmp_path_factory, raw, suffix):
    from ledger.programme.importer import read_file

    path = tmp_path_factory.mktemp("import") / f"file{suffix}"
    path.write_bytes(raw)
    batch = accepted_or_refused(read_file, path, kind="bid_payments" if suffix == ".csv" else None)
    if batch is not None:
        for problem in batch.problems:
            assert "\n" not in str(problem)


CELL = st.one_of(
    st.sampled_from(HOSTILE), st.text(max_size=15), st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=True, allow_infinity=True),
)
# Vouchers come from a small alphabet with braces and percent signs, so the same voucher
# recurs with other amounts, within a file and across files: a conflict refusal names it.
VOUCHERS = st.text(alphabet="PZ{}%-0123456789", min_size=1, max_size=4)
GOOD_ROW = st.builds(
    lambda n, amount, day, voucher: [2025, f"{amount:,}.{n % 100:02d}", (dt.date(2025, 1, 1) + dt.timedelta(days=day)).isoformat(), voucher],
    st.integers(0, 10**6), st.integers(1, 10**7), st.integers(0, 364), st.one_of(st.integers(0, 10**6).map(lambda n: f"FZ-{n}"), VOUCHERS),
)
HOSTILE_ROW = st.lists(CELL, min_size=0, max_size=6)
ROWS = st.lists(st.one_of(GOOD_ROW, GOOD_ROW, HOSTILE_ROW), min_size=1, max_size=6)
HEADER = ["year", "amount", "date", "voucher"]


def _counts(engine) -> tuple[int, int, int]:
    with engine.connect() as conn:
        return tuple(conn.execute(sql(f"SELECT count(*) FROM {t}")).scalar_one() for t in ("journal_entries", "postings", "accounts"))


def _cell_text(value) -> str:
    return value if isinstance(value, str) else repr(value) if isinstance(value, float) else str(value)


def write_csv(path: Path, rows: list[list], encoding: str) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(HEADER)
    for row in rows:
        writer.writerow([_cell_text(v).replace("\x00", "") for v in row])
    path.write_bytes(buffer.getvalue().encode(encoding, errors="replace"))


def write_xlsx(path: Path, rows: list[list]) -> None:
    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

    workbook = openpyxl.Workbook(write_only=True)
    sheet = workbook.create_sheet("appropriations")
    sheet.append(HEADER)
    for row in rows:
        clean = []
        for value in row:
            if isinstance(value, str):
                value = ILLEGAL_CHARACTERS_RE.sub("", value)
            elif isinstance(value, float) and not math.isfinite(value):
                value = str(value)  # Excel cannot hold NaN or infinity as a number
            elif isinstance(value, int) and abs(value) > 2**53:
                value = str(value)
            clean.append(value)
        sheet.append(clean)
    workbook.save(path)


def run_import(cli: Cli, engine, path: Path, *extra: str) -> int:
    """`jiebang import`: exit 0 and every row written, or exit 1 in one line and nothing written."""
    before = _counts(engine)
    result = cli("import", str(path), *extra, expect=None)  # the Cli fixture fails on any traceback
    after = _counts(engine)
    if result.exit_code == 1:
        assert after == before, f"a refused import wrote rows: {before} -> {after}"
        return 1
    assert result.exit_code == 0, result.output
    written = int(re.search(r"(\d+) written", result.stdout.strip().splitlines()[-1]).group(1))
    assert after[0] == before[0] + written
    return 0


def test_generated_csv_and_xlsx_files_import_whole_or_not_at_all(tmp_path, _sqlite_template):
    import shutil

    from ledger.core.db import make_engine

    path_db = tmp_path / "fuzz.db"
    shutil.copyfile(_sqlite_template, path_db)
    cli = Cli(f"sqlite:///{path_db}")
    engine = make_engine(f"sqlite:///{path_db}")
    counter = itertools.count()
    outcomes = []

    @SLOW
    @given(ROWS, st.sampled_from(["utf-8", "utf-8-sig", "gbk", "xlsx"]))
    def one_file(rows, encoding):
        n = next(counter)
        if encoding == "xlsx":
            path = tmp_path / f"f{n}.xlsx"
            write_xlsx(path, rows)
            outcomes.append(run_import(cli, engine, path))
        else:
            path = tmp_path / f"f{n}.csv"
            write_csv(path, rows, encoding)
            outcomes.append(run_import(cli, engine, path, "--kind", "appropriations"))

    try:
        one_file()
        assert cli("verify").stdout.startswith("OK: ")
    finally:
        engine.dispose()
    assert 0 in outcomes and 1 in outcomes, "the generated files should include accepted and refused ones"


@pytest.mark.parametrize("where", ["amount", "voucher"])
@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_a_10_mb_cell_is_refused_in_one_line_and_writes_nothing(tmp_path, _sqlite_template, where, fmt):
    import shutil

    from ledger.core.db import make_engine

    path_db = tmp_path / "big.db"
    shutil.copyfile(_sqlite_template, path_db)
    cli = Cli(f"sqlite:///{path_db}")
    engine = make_engine(f"sqlite:///{path_db}")
    huge = "9" * 10_000_000 if where == "amount" else "V" * 10_000_000
    row = [2025, huge if where == "amount" else "100.00", "2025-01-10", huge if where == "voucher" else "V-1"]
    good = [2025, "5.00", "2025-01-10", "V-2"]
    if fmt == "csv":
        path = tmp_path / "big.csv"
        write_csv(path, [good, row], "utf-8")
        result = cli("import", str(path), "--kind", "appropriations", expect=1)
    else:
        path = tmp_path / "big.xlsx"
        write_xlsx(path, [good, row])
        result = cli("import", str(path), expect=1)
    line = result.stderr.strip()
    assert len(line) < 1000, f"the refusal repeats the cell: {len(line)} characters"
    assert max([0, *(len(out) for out in result.stdout.splitlines())]) < 1000, "a problem line repeats the 10 MB cell"
    assert _counts(engine) == (0, 0, 0)
    engine.dispose()


def test_sql_looking_text_is_stored_as_text_not_run(db_url, cli, tmp_path):
    path = tmp_path / "sql.csv"
    vouchers = SQLISH[:4]
    write_csv(path, [[2025, "1.00", "2025-01-10", v] for v in vouchers], "utf-8")
    cli("import", str(path), "--kind", "appropriations")
    rows = cli("journal", "--format", "json").stdout
    for voucher in vouchers:
        assert voucher.replace("\\", "\\\\").replace('"', '\\"') in rows
    assert cli("verify").stdout.startswith("OK: 4 entries")


# --- vouchers that look like templates ----------------------------------------------------

# Any printable text without whitespace, with braces and percent signs drawn often.
TEMPLATE_VOUCHERS = st.text(
    alphabet=st.one_of(st.sampled_from("{}%"), st.characters(blacklist_categories=("Cs", "Cc", "Zs", "Zl", "Zp"))),
    min_size=1, max_size=30,
)


def _conflict_message(voucher: str) -> str:
    return (f"voucher {voucher} was already used for manual entry 1 with different content; "
            "use a new voucher, or reverse entry 1 first if it was wrong.")


def test_a_voucher_reused_with_other_content_is_refused_whatever_its_text(tmp_path, _sqlite_template):
    """Both posting paths (drafts and CSV columns) refuse the second use in one line naming the voucher."""
    import shutil

    from sqlalchemy.orm import Session

    from ledger.core import bulk
    from ledger.core.db import make_engine
    from ledger.core.journal import AccountSpec, EntryDraft, PostingDraft, open_accounts, post

    path_db = tmp_path / "vouchers.db"
    shutil.copyfile(_sqlite_template, path_db)
    engine = make_engine(f"sqlite:///{path_db}")
    with Session(engine) as session, session.begin():
        open_accounts(session, [AccountSpec("Assets:Treasury", "fiscal", dt.date(2025, 1, 1)),
                                AccountSpec("Equity:Appropriations", "fiscal", dt.date(2025, 1, 1))])
    counter = itertools.count()

    def draft(voucher: str, fen: int) -> EntryDraft:
        legs = (PostingDraft("Assets:Treasury", fen), PostingDraft("Equity:Appropriations", -fen))
        return EntryDraft(dt.date(2025, 1, 2), "manual", legs, voucher=voucher)

    def csv_file(voucher: str, fen: int) -> Path:
        path = tmp_path / f"v{next(counter)}.csv"
        with path.open("w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["txn_id", "date", "account", "amount", "voucher"])
            writer.writerow(["T1", "2025-01-02", "Assets:Treasury", format_fen(fen), voucher])
            writer.writerow(["T1", "2025-01-02", "Equity:Appropriations", format_fen(-fen), voucher])
        return path

    @SLOW
    @given(TEMPLATE_VOUCHERS)
    def reused(voucher):
        # Each example posts into entry 1 and is rolled back, so examples do not meet.
        for second in (lambda s: post(s, draft(voucher, 200)),
                       lambda s: bulk.post_batch(s, bulk.read_csv_batch(csv_file(voucher, 200), default_kind="manual"), actor="x")):
            session = Session(engine)
            session.begin()
            try:
                assert post(session, draft(voucher, 100)).entry_id == 1
                with pytest.raises(Refusal) as refused:
                    second(session)
            finally:
                session.rollback()
                session.close()
            one_line(refused.value)
            assert (refused.value.code, refused.value.message) == ("voucher_must_match_first_use", _conflict_message(voucher))

    try:
        reused()
    finally:
        engine.dispose()


@pytest.mark.parametrize("voucher", ["PZ{2025}-1", "PZ%s-{0}"])
@pytest.mark.parametrize("how", ["csv", "json", "appropriate"])
def test_a_braced_voucher_posted_twice_with_other_content_is_refused_in_one_line(cli, tmp_path, voucher, how):
    """Regression: `PZ{2025}-1` again with other content crashed with IndexError in the refusal's message."""
    import json

    def post_twice(amount: str):
        if how == "appropriate":
            return cli("appropriate", "--year", "2025", "--amount", amount, "--date", "2025-01-02", "--voucher", voucher, expect=None)
        path = tmp_path / f"{amount}.{how}"
        rows = [("Assets:Treasury", amount), ("Equity:Appropriations", f"-{amount}")]
        if how == "csv":
            path.write_text("txn_id,date,account,amount\n" + "".join(f'"{voucher}",2025-01-02,{a},{m}\n' for a, m in rows), encoding="utf-8")
        else:
            entry = {"date": "2025-01-02", "kind": "manual", "voucher": voucher,
                     "postings": [{"account": a, "amount": m} for a, m in rows]}
            path.write_text(json.dumps([entry]), encoding="utf-8")
        return cli("post", "--file", str(path), "--open-accounts", expect=None)

    if how == "json":  # a JSON file is posted to open accounts only (--open-accounts is for CSV)
        for account in ("Assets:Treasury", "Equity:Appropriations"):
            cli("open", account, "--book", "fiscal", "--date", "2025-01-01")
    assert post_twice("100.00").exit_code == 0
    result = post_twice("200.00")  # the Cli fixture fails the test on a traceback
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    kind, content = ("appropriation", "details") if how == "appropriate" else ("manual", "content")
    assert result.stderr == (
        f"error: voucher {voucher} was already used for {kind} entry 1 with different {content}; "
        "use a new voucher, or reverse entry 1 first if it was wrong.\n"
    )
    assert cli("verify").stdout.startswith("OK: 1 entries")
