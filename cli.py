"""The jiebang command line: one click group, flat verbs, thin bodies.

Each command parses, opens a session, calls a service or a view, renders, and maps
refusals to exit code 1 (usage errors are click's exit code 2). There are no queries here:
lists come from views (``ledger.core.views``, ``ledger.programme.views``), balances from
``ledger.core.reads`` and ``ledger.programme.reads``, sessions from ``ledger.core.db``;
tests/test_boundaries_cli.py keeps it so.

Imports. At the top: the standard library, click, and the project modules that import
nothing but the standard library and cost under a millisecond (``ledger.core.errors``,
``ledger.core.progress``, ``migrations`` for ``HEAD``). Inside the commands, on purpose:

- everything that imports SQLAlchemy or alembic: ``ledger.core.db`` and the other core
  modules with models, every ``ledger.programme`` service and view, ``reports.*``
  (pandas, openpyxl, reportlab, beancount). ``jiebang --help`` would take 0.3 s more, and
  ``jiebang balances`` on SQLite must not import SQLAlchemy at all (tests/test_reads.py);
- ``ledger.core.reads`` (sqlite3) and ``ledger.core.money`` (decimal): standard library
  only, but 3 ms and 5 ms that ``jiebang --help`` does not need.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import datetime as dt
import io
import json
import os
import shlex
import sys
import unicodedata
from pathlib import Path

import click

from ledger.core.errors import Refusal
from ledger.core.progress import progress_bar
from migrations import HEAD

FORMATS = ("table", "json", "csv")
# An export of fewer postings takes well under two seconds: no bar flashes by.
PROGRESS_MIN_POSTINGS = 20_000


# --- plumbing ---------------------------------------------------------------------------


class JiebangGroup(click.Group):
    """A click group that turns refusals and database trouble into one line and exit 1."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except Refusal as refusal:
            from reports.text import table_text

            # A message may quote what the user typed: escaped, it stays one line and no
            # control sequence reaches the terminal.
            click.echo(f"error: {table_text(refusal.message)}", err=True)
            ctx.exit(1)
        except click.exceptions.Exit:
            raise
        except Exception as exc:
            message = _database_problem(exc)
            if message is None:
                raise
            click.echo(f"error: {message}", err=True)
            ctx.exit(1)


def _database_problem(exc: Exception) -> str | None:
    """A one-line message for database errors a user can cause; None for real bugs."""
    try:
        from sqlalchemy.exc import DBAPIError  # the one SQLAlchemy name here: an exception to map
    except ImportError:  # pragma: no cover
        return None
    if isinstance(exc, DBAPIError):
        detail = str(exc.orig).strip().splitlines()[0] if exc.orig is not None else str(exc)
        return f"the database refused the operation: {detail}; nothing was written."
    if isinstance(exc, BrokenPipeError):
        return None  # the reader went away (`| head`): click closes quietly, as a pipe expects
    if isinstance(exc, OSError):
        return f"{exc.strerror or exc}: {getattr(exc, 'filename', '') or ''}".strip(": ")
    return None


class Context:
    def __init__(self, db: str | None, user: str | None):
        from ledger.core.reads import (
            normalize_url,  # not ledger.core.db: it would import SQLAlchemy
        )

        self.url = normalize_url(db)
        self.user = user or os.environ.get("JIEBANG_USER") or _login_name()
        self._engine = None
        # ``--db X `` when the ledger was named on the command line: hints that name a
        # command repeat it, so that they work when pasted.
        self.db_option = ""

    def engine(self, *, must_exist: bool = True, check_head: bool = True):
        from ledger.core.db import make_engine, require_head

        if self._engine is None:
            self._engine = make_engine(self.url, must_exist=must_exist)
        if check_head:
            require_head(self._engine, HEAD)
        return self._engine

    @contextlib.contextmanager
    def write(self, *, dry_run: bool = False):
        """A session in one transaction that commits when the block ends without error;
        with ``dry_run`` it always rolls back (and money out is not held for approval)."""
        from ledger.core.db import trial_session, write_session

        if dry_run:
            from ledger.programme.common import requesting

            with trial_session(self.engine()) as session, requesting():
                yield session
            return
        with write_session(self.engine()) as session:
            yield session

    @contextlib.contextmanager
    def read(self):
        """A session in one read-only transaction: one snapshot, no write lock."""
        from ledger.core.db import read_session

        with read_session(self.engine()) as session:
            yield session


def _login_name() -> str:
    try:
        return os.getlogin()
    except OSError:
        return os.environ.get("USER", "officer")


pass_context = click.make_pass_decorator(Context)


def format_option(func):
    return click.option(
        "--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True, help="Output format."
    )(func)


def font_option(func):
    return click.option(
        "--font", "font_path", type=click.Path(dir_okay=False, path_type=Path),
        help="TrueType font file (.ttf/.ttc) to set and embed the PDF in; one that cannot be used is said on "
             "stderr and the packaged Noto Sans CJK SC is used. [env JIEBANG_FONT]",
    )(func)


class DateType(click.ParamType):
    """A date in any of the forms every verb accepts (``ledger.core.limits.parse_date``),
    within the ledger's date window; a bad one is the one-line refusal."""

    name = "date"

    def convert(self, value, param, ctx):
        from ledger.core.limits import check_date, parse_date

        where = f"--{param.name.replace('_', '-')}" if param is not None else "date"
        try:
            day = parse_date(value, where)
        except Refusal as refusal:
            self.fail(refusal.message.removeprefix(f"{where} "), param, ctx)  # a usage error: exit 2
        return check_date(day, where)  # outside the window: a refusal, exit 1


DATE = DateType()


def as_of_option(func):
    return click.option("--as-of", type=DATE, help="Balances as of this date (inclusive).")(func)


def _allow_future(ctx: click.Context, _param, value: bool) -> bool:
    ctx.meta["jiebang.allow_future"] = value
    return value


def money_options(func):
    """``--dry-run`` and ``--format`` of every verb that posts an entry."""
    func = click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
                        help="text: one line an officer can check; json: the entry, its postings and its trace.")(func)
    func = click.option("--allow-future", is_flag=True, expose_value=False, callback=_allow_future,
                        help="Accept a --date more than JIEBANG_FUTURE_DAYS (default 31) days after today.")(func)
    return click.option("--dry-run", is_flag=True,
                        help="Run every rule and print the entry it would post; write nothing.")(func)


def _answer(session, posted, dry_run: bool):
    """What was posted, read back inside the transaction (``ledger.programme.answers``)."""
    from ledger.programme.answers import answer

    return answer(session, posted, dry_run=dry_run)


def _say(said, fmt: str) -> None:
    """Print an answer: its line and details, or its JSON."""
    if fmt == "json":
        click.echo(json.dumps(said.as_json(), ensure_ascii=False, indent=2))
    else:
        echo_lines(said.lines())


def emit(rows: list[dict], columns: list[str], fmt: str, *, right: tuple[str, ...] = (), amounts: tuple[str, ...] = ()) -> None:
    """Print rows as an aligned table, a JSON array or CSV, with columns in the given order.

    ``amounts`` names the columns that hold plain amounts ("1234567.50"): the table shows them
    with thousands separators, JSON and CSV keep them plain. Table cells are escaped so that
    one value stays on one line and no control sequence reaches the terminal; CSV cells that
    a spreadsheet would take for a formula are prefixed with a quote (reports/text.py).
    """
    from reports.text import csv_row, grouped_amount, table_text

    if fmt == "json":
        click.echo(json.dumps(rows, ensure_ascii=False, indent=2, default=str))
        return
    if fmt == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(columns)
        for row in rows:
            writer.writerow(csv_row(row.get(c, "") for c in columns))
        return
    if not rows:
        click.echo("(nothing)")
        return
    cells = [[table_text(grouped_amount(row.get(c)) if c in amounts else row.get(c)) for c in columns] for row in rows]
    widths = [max(_width(c), *(_width(r[i]) for r in cells)) for i, c in enumerate(columns)]

    def line(values):
        parts = []
        for i, value in enumerate(values):
            pad = " " * (widths[i] - _width(value))
            parts.append(pad + value if columns[i] in right else value + pad)
        return "  ".join(parts).rstrip()

    click.echo(line(columns))
    click.echo(line(["-" * w for w in widths]))
    for row in cells:
        click.echo(line(row))


def echo_lines(lines) -> None:
    """Print a report's table lines, each escaped so it stays one line (reports/text.py)."""
    from reports.text import table_text

    for text in lines:
        click.echo(table_text(text))


def _width(text: str) -> int:
    """Display width: CJK characters take two columns in a terminal."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def parse_date(value, name: str = "date") -> dt.date:
    """A date in any accepted form (2026-03-05, 2026/3/5, 20260305, 2026年3月5日), in the window."""
    from ledger.core.limits import read_date

    return read_date(value, name)


def _date_or_none(value) -> dt.date | None:
    return None if value is None else parse_date(value)


# --- the group --------------------------------------------------------------------------


@click.group(cls=JiebangGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--db", envvar="JIEBANG_DB", help="Database: a SQLite file path or a PostgreSQL URL. [env JIEBANG_DB; default ./jiebang.db]")
@click.option("--user", envvar="JIEBANG_USER", help="Who is recording (SQLite: an honour system). [env JIEBANG_USER]")
@click.version_option(package_name="jiebang-ledger")
@click.pass_context
def main(ctx: click.Context, db: str | None, user: str | None) -> None:
    """jiebang: the fiscal funding and disbursement ledger for 揭榜挂帅 / 赛马 projects.

    \b
    Start here:
      jiebang demo                 build a two-city example ledger and write every report
      jiebang init                 create (or upgrade) ./jiebang.db
      jiebang verify               check the hash chain and that every entry balances
    """
    ctx.obj = Context(db, user)
    if db and ctx.get_parameter_source("db") is click.core.ParameterSource.COMMANDLINE:
        ctx.obj.db_option = f"--db {shlex.quote(db)} "


@main.command()
@pass_context
def init(obj: Context) -> None:
    """Create the ledger database, or upgrade it to the current schema.

    \b
    Example:
      jiebang init
      jiebang --db postgresql://postgres@127.0.0.1/jiebang init
    """
    from ledger.core.db import current_revision
    from migrations import upgrade_to_head

    engine = obj.engine(must_exist=False, check_head=False)
    before = current_revision(engine)
    if before == HEAD:
        click.echo(f"ledger at {_where(obj)} is already at schema {HEAD}.")
        _snapshot_if_needed(obj)
        return
    from alembic.util import CommandError

    try:
        upgrade_to_head(engine)
    except CommandError:
        # alembic cannot find a path from a revision it does not know (a newer jiebang's).
        raise Refusal(
            "database_schema_must_be_known",
            f"the ledger database is at schema {before}, which this jiebang does not know; "
            "use the jiebang version that wrote it.",
        ) from None
    action = "created" if before is None else f"upgraded from {before}"
    click.echo(f"ledger {action} at {_where(obj)} (schema {HEAD}).")
    _snapshot_if_needed(obj)


def _snapshot_if_needed(obj: Context) -> None:
    """A ledger made before facts existed gets its programme state recorded as one hashed entry."""
    from ledger.programme import projection

    with obj.write() as session:
        if not projection.needs_snapshot(session):
            return
        posted = projection.record_snapshot(session, actor=obj.user, revision=HEAD)
    click.echo(f"recorded the programme data as it stood as snapshot entry {posted.entry_id}; "
               "from here on every programme fact is in the hash chain.")


def _where(obj: Context) -> str:
    from ledger.core.db import display_url

    return display_url(obj.url)


@main.command("open")
@click.argument("account")
@click.option("--book", type=click.Choice(["fiscal", "memo"]), required=True, help="The book the account belongs to.")
@click.option("--date", "opened", required=True, help="Opening date, YYYY-MM-DD.")
@click.option("--project", help="Project code the account belongs to.")
@click.option("--lane", help="Solver lane (USCC) the account belongs to.")
@pass_context
def open_account(obj: Context, account: str, book: str, opened: str, project: str | None, lane: str | None) -> None:
    """Open an account by hand (event commands open theirs automatically).

    \b
    Example:
      jiebang open Assets:Fiscal:Treasury --book fiscal --date 2025-01-01
    """
    from ledger.core.journal import AccountSpec, open_accounts

    with obj.write() as session:
        open_accounts(session, [AccountSpec(account, book, parse_date(opened, f"account {account} opening date"), project, lane)])
    click.echo(f"opened {account} in the {book} book on {opened}.")


@main.command()
@click.option("--book", type=click.Choice(["fiscal", "memo"]), help="Only this book.")
@click.option("--project", help="Only this project's accounts.")
@format_option
@pass_context
def accounts(obj: Context, book: str | None, project: str | None, fmt: str) -> None:
    """List accounts with their book, project, lane and dates.

    \b
    Example:
      jiebang accounts --book memo --format csv
    """
    from ledger.core.views import ACCOUNT_COLUMNS, account_list

    with obj.read() as session:
        rows = account_list(session, book=book, project_code=project)
    emit(rows, list(ACCOUNT_COLUMNS), fmt)


@main.command()
@click.option("--file", "path", type=click.Path(dir_okay=False, path_type=Path), required=True, help="JSON or CSV file of entries.")
@click.option("--open-accounts", is_flag=True, help="Open unknown accounts at their first date (book from the 'book' column, else fiscal).")
@click.option("--kind", default="manual", show_default=True, help="Entry kind for CSV rows without a 'kind' column.")
@pass_context
def post(obj: Context, path: Path, open_accounts: bool, kind: str) -> None:
    """Post balanced entries from a JSON or CSV file, all or nothing.

    \b
    CSV: header txn_id,date,account,amount (yuan, two decimals); optional book, memo,
    voucher, kind, project, category, source. Rows sharing a txn_id make one entry.
    JSON: an object or a list of {"date", "kind", "voucher", "memo", "project",
    "postings": [{"account", "amount", "category", "source"}]}.
    \b
    Example:
      jiebang post --file corrections.json
      jiebang post --file postings.csv --open-accounts
    """
    if path.suffix.lower() == ".json":
        from ledger.core.bulk import read_json_entries

        _post_drafts(obj, read_json_entries(path, default_kind=kind, actor=obj.user))
        return
    _post_csv(obj, path, open_accounts, kind)


def _post_drafts(obj: Context, drafts) -> None:
    from ledger.core.journal import post_many
    from ledger.programme.guards import check_drafts

    with obj.write() as session, progress_bar(len(drafts), "posting", enabled=len(drafts) >= 10_000) as advance:
        check_drafts(session, drafts)  # money out by accounts; a lane's advances within its releases
        results = post_many(session, drafts, progress=advance)
    created = sum(1 for r in results if r.created)
    _posted(obj, created, len(results) - created)


def _post_csv(obj: Context, path: Path, open_accounts: bool, kind: str) -> None:
    """A ledger-shaped CSV goes the column path (ledger.core.bulk): the same checks and bytes, faster."""
    from ledger.core.bulk import post_batch, read_csv_batch
    from ledger.core.journal import open_accounts as open_specs
    from ledger.programme.guards import check_batch

    batch = read_csv_batch(path, default_kind=kind)
    with obj.write() as session:
        check_batch(session, batch)  # money out by accounts; a lane's advances within its releases
        if open_accounts:
            open_specs(session, batch.specs)
        with progress_bar(len(batch), "posting", enabled=len(batch) >= 10_000) as advance:
            result = post_batch(session, batch, actor=obj.user, progress=advance)
    _posted(obj, result.created, result.present)


def _posted(obj: Context, created: int, present: int) -> None:
    """Say what was posted; on PostgreSQL tidy the tables after a large load (committed first)."""
    from ledger.core.pg_write import vacuum_after_bulk_post

    click.echo(f"posted {created} entr{'y' if created == 1 else 'ies'}; {present} already present.")
    note = vacuum_after_bulk_post(obj.engine(), created)
    if note:
        click.echo(f"note: {note}", err=True)


@main.command()
@click.argument("entry_id", type=int)
@click.option("--reason", required=True, help="Why the entry is reversed (kept in the journal).")
@click.option("--date", "when", help="Value date of the reversal (default: the original's date).")
@money_options
@pass_context
def reverse(obj: Context, entry_id: int, reason: str, when: str | None, dry_run, fmt) -> None:
    """Reverse an entry with its mirror image, linked to it; at most once.

    \b
    Example:
      jiebang reverse 42 --reason "voucher keyed twice" --date 2025-06-30
    """
    from ledger.programme import reverse_event

    with obj.write(dry_run=dry_run) as session:
        posted = reverse_event(session, entry_id, reason=reason, actor=obj.user, value_date=_today_or(when) if when else None)
        said = _answer(session, posted, dry_run)
    _say(said, fmt)


@main.command()
@as_of_option
@click.option("--book", type=click.Choice(["fiscal", "memo"]), help="Only this book.")
@click.option("--account", "prefix", help="Only this account and its sub-accounts, e.g. Assets:Fiscal.")
@click.option("--project", help="One project's balances contract (pledged, contributed, bid, subsidy, grant, advances, clawback).")
@click.option("--lane", help="With --project: one solver lane (USCC or L1, L2 ...).")
@click.option("--accounts", "by_account", is_flag=True, help="With --project: list the project's accounts instead.")
@format_option
@pass_context
def balances(obj: Context, as_of, book, prefix, project, lane, by_account, fmt) -> None:
    """Balances as of a date: accounts (debits positive), or one project's contract.

    \b
    Example:
      jiebang balances --as-of 2025-12-31 --book fiscal
      jiebang balances --project JM2025-003 --as-of 2026-06-30 --format json
    """
    from ledger.core import reads
    from ledger.core.money import format_fen
    from ledger.programme import reads as programme_reads

    if lane and not project:
        raise click.UsageError("--lane needs --project.")
    contract = bool(project) and not by_account
    with _reader(obj) as run:
        if contract:
            values = programme_reads.project_balances(run, project, as_of=_date_or_none(as_of), lane=lane)
        else:
            rows = reads.account_rows(run, as_of=_date_or_none(as_of), book=book, prefix=prefix, project_code=project)
    if not contract:
        _emit_account_rows(rows, fmt)
        return
    data = {key: format_fen(value) for key, value in values.items()}
    if fmt == "json":
        click.echo(json.dumps(data, ensure_ascii=False, indent=2))
    else:
        emit([{"balance": k, "amount": v} for k, v in data.items()], ["balance", "amount"], fmt, right=("amount",), amounts=("amount",))


@contextlib.contextmanager
def _reader(obj: Context):
    """A ``ledger.reads`` executor: the stdlib sqlite3 for a SQLite file, psycopg for a
    PostgreSQL URL, a session for anything else SQLAlchemy must interpret.

    Importing SQLAlchemy costs 0.2 s, most of what a balances read may take.
    """
    from ledger.core import reads

    if (path := reads.sqlite_file(obj.url)) is not None:
        with reads.sqlite_reader(path, head=HEAD) as run:
            yield run
    elif (conninfo := reads.postgres_conninfo(obj.url)) is not None:
        with reads.postgres_reader(conninfo, head=HEAD) as run:
            yield run
    else:
        with obj.read() as session:
            yield reads.session_runner(session)


def _emit_account_rows(rows, fmt: str) -> None:
    """Account balances out. A trial balance is 30,000 rows, so CSV goes straight from the
    tuples into one buffer and one write: row by row, an unbuffered stdout costs a system call each.
    """
    from ledger.core.money import format_fen
    from reports.text import csv_cell

    columns = ["account", "book", "project", "lane", "balance"]
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows((csv_cell(name), book, csv_cell(code), csv_cell(lane), format_fen(fen)) for name, book, code, lane, fen in rows)
        sys.stdout.write(buffer.getvalue())
        return
    emit(
        [{"account": name, "book": book, "project": code, "lane": lane, "balance": format_fen(fen)} for name, book, code, lane, fen in rows],
        columns,
        fmt,
        right=("balance",),
        amounts=("balance",),
    )


@main.command()
@as_of_option
@click.option("--since", type=DATE, help="Only entries on or after this date.")
@click.option("--project", help="Only this project's entries.")
@click.option("--kind", help="Only entries of this kind.")
@click.option("--limit", type=click.IntRange(1), help="Only the last N entries.")
@format_option
@pass_context
def journal(obj: Context, as_of, since, project, kind, limit, fmt) -> None:
    """List entries and their postings in chain order.

    \b
    Example:
      jiebang journal --project JM2025-003 --limit 20
    """
    from ledger.core.views import JOURNAL_COLUMNS, journal_listing

    with obj.read() as session:
        rows = journal_listing(
            session, as_of=_date_or_none(as_of), since=_date_or_none(since), project_code=project, kind=kind, limit=limit
        )
    emit(rows, list(JOURNAL_COLUMNS), fmt, right=("amount",), amounts=("amount",))


@main.command()
@format_option
@click.option("--anchor", "anchor_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Also check the ledger still holds the chain head recorded in this file (written by `jiebang anchor`).")
@click.option("--checkpoint", "checkpoint", is_flag=True,
              help="When the ledger verifies, record its chain head as a checkpoint: audit packs then check only the entries after it.")
@pass_context
def verify(obj: Context, fmt: str, anchor_path: Path | None, checkpoint: bool) -> None:
    """Recompute the hash chain and every entry's per-book balance.

    Prints OK with the chain head, or names the first entry that fails (exit 1). With
    --anchor FILE it also checks that the entry at the anchored position still has the
    anchored hash, which catches even a consistent rewrite of the whole chain. With
    --checkpoint a passed verification records the chain head it ended at; `report audit`
    then verifies only the entries after the latest checkpoint (a full `verify` still
    checks everything).

    \b
    Example:
      jiebang verify
      jiebang verify --checkpoint
      jiebang verify --anchor anchors/2025-12-31.json
    """
    from ledger.core.anchor import check_anchor, read_anchor
    from ledger.core.verify import entry_count, record_checkpoint
    from ledger.programme.projection import verify_ledger

    anchor = read_anchor(anchor_path) if anchor_path is not None else None
    with obj.read() as session:
        total = entry_count(session)
        with progress_bar(total, "verifying", enabled=total >= 50_000) as advance:
            result = verify_ledger(session, progress=advance)
        if anchor is not None and result.ok:
            mismatch = check_anchor(session, anchor)
            if mismatch is not None:
                result = dataclasses.replace(result, ok=False, first_bad_entry=mismatch[0], problem=mismatch[1])
    recorded = None
    if checkpoint and result.ok and result.entries:
        with obj.write() as session:
            recorded = record_checkpoint(session, result, actor=obj.user)
    if fmt == "json":
        click.echo(json.dumps({
            "ok": result.ok, "entries": result.entries, "head_id": result.head_id, "head_hash": result.head_hash,
            "first_bad_entry": result.first_bad_entry, "problem": result.problem,
            **({"anchor": {"head_id": anchor.head_id, "head_hash": anchor.head_hash}} if anchor is not None else {}),
            **({"checkpoint": {"entry_id": recorded.entry_id, "hash": recorded.hash}} if recorded is not None else {}),
        }, ensure_ascii=False))
    elif result.ok:
        anchored = f"; anchor entry {anchor.head_id} matches" if anchor is not None else ""
        noted = f"; checkpoint recorded at entry {recorded.entry_id}" if recorded is not None else ""
        click.echo(f"OK: {result.entries} entries verified; chain head {result.head_id} {result.head_hash}{anchored}{noted}")
    else:
        where = f" at entry {result.first_bad_entry}" if result.first_bad_entry is not None else ""
        click.echo(f"FAILED{where}: {result.problem}", err=fmt != "json")
    if not result.ok:
        sys.exit(1)


@main.command()
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The anchor file to write (JSON); keep it outside the database, e.g. with the auditor.")
@click.option("--force", is_flag=True, help="Overwrite the file if it exists.")
@pass_context
def anchor(obj: Context, out_path: Path, force: bool) -> None:
    """Verify the ledger and write its chain head (entry id, hash, entry count, latest value date) to a small file.

    An auditor keeps the file; `jiebang verify --anchor FILE` later proves the ledger still
    holds that exact head at that position, so no entry up to it was changed, removed or
    re-hashed since. Refused when the ledger does not verify.

    \b
    Example:
      jiebang anchor --out anchors/2025-12-31.json
      jiebang verify --anchor anchors/2025-12-31.json
    """
    from ledger.core.anchor import take_anchor, write_anchor
    from ledger.programme.projection import verify_ledger

    with obj.read() as session:
        result = verify_ledger(session)
        if not result.ok:
            raise Refusal("ledger_must_verify_before_anchoring",
                          f"the ledger does not verify (entry {result.first_bad_entry}: {result.problem}); nothing anchored.")
        taken = take_anchor(session, result.head_id, result.head_hash, result.entries)
    write_anchor(taken, out_path, force=force)
    click.echo(f"anchored entry {taken.head_id} {taken.head_hash} ({taken.entries} entries, latest value date "
               f"{taken.latest_value_date or '-'}) in {out_path}")


@main.command()
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Replace FILE if it exists.")
@pass_context
def backup(obj: Context, path: Path, force: bool) -> None:
    """Copy a SQLite ledger to FILE: a consistent snapshot taken online, checked before it is kept.

    Officers may keep writing meanwhile. The copy is verified, then renamed onto FILE, so a
    failure leaves no half-written backup. PostgreSQL ledgers are backed up with pg_dump
    (see docs/operations.md).

    \b
    Example:
      jiebang backup backups/jiebang-2025-12-31.db
    """
    from ledger.core.backup import backup as backup_ledger
    from ledger.programme.projection import verify_ledger

    snapshot = backup_ledger(obj.url, path, head=HEAD, force=force, check=verify_ledger)
    click.echo(f"backed up {snapshot.entries} entries (chain head {snapshot.head_id} {snapshot.head_hash}) to {snapshot.path}")


@main.command()
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Replace the --db ledger if it exists.")
@click.option("--discard-newer", type=click.IntRange(min=0), metavar="N",
              help="Replace a ledger holding N entries the backup lacks (the exact count the refusal names).")
@pass_context
def restore(obj: Context, path: Path, force: bool, discard_newer: int | None) -> None:
    """Restore a backup FILE into the --db ledger file, which must not exist yet (or add --force).

    The backup is checked (schema, verify) before anything is written; the restored ledger
    is verified again. Over an existing ledger, entries it holds beyond the backup are never
    dropped silently (--discard-newer N with their exact count), and a safety copy of it is
    kept beside it. PostgreSQL dumps are restored with pg_restore (see docs/operations.md).

    \b
    Example:
      jiebang --db restored.db restore backups/jiebang-2025-12-31.db
    """
    from ledger.core.backup import restore as restore_ledger
    from ledger.programme.projection import verify_ledger

    snapshot = restore_ledger(path, obj.url, head=HEAD, force=force, check=verify_ledger, discard_newer=discard_newer)
    if snapshot.safety_copy is not None:
        click.echo(f"kept the replaced ledger as {snapshot.safety_copy}")
    click.echo(f"restored {snapshot.entries} entries (chain head {snapshot.head_id} {snapshot.head_hash}) into {snapshot.path}; verify OK")


# --- programme events -------------------------------------------------------------------


def amount_arg(value: str, name: str = "amount") -> int:
    from ledger.core.money import parse_fen

    return parse_fen(value, field=name)


def date_option(func):
    return click.option("--date", "when", help="Value date: 2026-03-05, 2026/3/5, 20260305 or 2026年3月5日 (default: today).")(func)


def voucher_option(func):
    return click.option("--voucher", help="External voucher reference; recording it again is a no-op.")(func)


def _today_or(when: str | None) -> dt.date:
    """The value date a verb records: --date (any accepted form) or today; refused when it
    lies further ahead than JIEBANG_FUTURE_DAYS unless the verb has --allow-future."""
    if not when:
        return dt.date.today()
    from ledger.core.limits import check_not_future

    value = parse_date(when, "--date")
    ctx = click.get_current_context(silent=True)
    if ctx is not None and ctx.meta.get("jiebang.allow_future"):
        return value
    return check_not_future(value, "--date")


@main.group()
def party() -> None:
    """Register parties (enterprises, universities, institutes)."""


@party.command("add")
@click.option("--uscc", required=True, help="Unified Social Credit Code (18 characters).")
@click.option("--name", required=True, help="Registered name.")
@click.option("--kind", type=click.Choice(["enterprise", "university", "institute", "other"]), default="enterprise", show_default=True)
@click.option("--revenue", help="Prior-year main business revenue, e.g. 6亿 or 600,000,000.00.")
@click.option("--rnd-ratio", help="Prior-year R&D / revenue, e.g. 0.12 or 12%.")
@click.option("--innovation-star", is_flag=True, help="A 高新技术企业 named 江门“创新标兵”.")
@click.option("--bad-credit", is_flag=True, help="Has a bad credit record or major violation in the look-back period.")
@click.option("--related", multiple=True, help="USCC of a related party (关联关系); repeat for several.")
@click.option("--uscc-override-reason", help="Accept a code that fails the check digit (known legacy code), with this reason.")
@date_option
@money_options
@pass_context
def party_add(obj, uscc, name, kind, revenue, rnd_ratio, innovation_star, bad_credit, related, uscc_override_reason, when, dry_run, fmt) -> None:
    """Register a party, validating its USCC (GB 32100-2015).

    \b
    Example:
      jiebang party add --uscc 91440700MA4W0XXX0X --name 江门某某科技有限公司 --revenue 6亿
    """
    from ledger.core.money import parse_rate
    from ledger.programme import PartyInput, register_party

    spec = PartyInput(
        uscc=uscc, name=name, kind=kind,
        revenue_fen=amount_arg(revenue, "revenue") if revenue else None,
        rnd_intensity=parse_rate(rnd_ratio, field="R&D ratio") if rnd_ratio else None,
        innovation_star=innovation_star, bad_credit=bad_credit, related=tuple(related),
        override_reason=uscc_override_reason, date=_today_or(when),
    )
    with obj.write(dry_run=dry_run) as session:
        posted = register_party(session, spec, actor=obj.user)
        said = _answer(session, posted, dry_run)
    _say(said, fmt)


@party.command("update")
@click.argument("uscc")
@click.option("--year", type=click.IntRange(2000, 2099), required=True, help="The fiscal year the figures are for (approval reads the year before its date).")
@click.option("--revenue", help="The year's main business revenue, e.g. 6亿.")
@click.option("--rnd-ratio", help="The year's R&D / revenue, e.g. 0.12 or 12%.")
@click.option("--credit", type=click.Choice(["clean", "bad"]), default="clean", show_default=True, help="Credit record for the year (bad: 不良信用记录 or major violation).")
@click.option("--innovation-star", is_flag=True, help="A 高新技术企业 named 江门“创新标兵” that year.")
@click.option("--above-scale", is_flag=True, help="A 规模以上 enterprise that year (the R&D-ratio route needs it in Jiangmen).")
@date_option
@voucher_option
@money_options
@pass_context
def party_update(obj, uscc, year, revenue, rnd_ratio, credit, innovation_star, above_scale, when, voucher, dry_run, fmt) -> None:
    """Record a party's facts for a fiscal year; hashed and append-only, a later record of a year supersedes it.

    \b
    Example:
      jiebang party update 91440703MA4W2B389N --year 2025 --revenue 3.2亿 --rnd-ratio 0.12 --above-scale --date 2026-03-01
    """
    from ledger.core.money import parse_rate
    from ledger.programme import PartyYearInput, update_party

    spec = PartyYearInput(
        uscc=uscc, year=year, revenue_fen=amount_arg(revenue, "revenue") if revenue else None,
        rnd_intensity=parse_rate(rnd_ratio, field="R&D ratio") if rnd_ratio else None, bad_credit=credit == "bad",
        innovation_star=innovation_star, above_scale=above_scale, date=_today_or(when), voucher=voucher,
    )
    with obj.write(dry_run=dry_run) as session:
        posted = update_party(session, spec, actor=obj.user)
        said = _answer(session, posted, dry_run)
    _say(said, fmt)


@main.command()
@format_option
@pass_context
def parties(obj, fmt) -> None:
    """List registered parties.

    \b
    Example:
      jiebang parties --format csv
    """
    from ledger.programme.views import PARTY_COLUMNS, party_list

    with obj.read() as session:
        rows = party_list(session)
    emit(rows, list(PARTY_COLUMNS), fmt)


@main.command()
@click.option("--year", type=int, required=True, help="Budget year.")
@click.option("--amount", required=True, help="Amount, e.g. 5000万.")
@date_option
@voucher_option
@money_options
@pass_context
def appropriate(obj, year, amount, when, voucher, dry_run, fmt) -> None:
    """Record the budget appropriated for a year (memo book).

    \b
    Example:
      jiebang appropriate --year 2025 --amount 5000万 --date 2025-01-10 --voucher 江财预〔2025〕3号
    """
    from ledger.programme import appropriate as appropriate_budget

    with obj.write(dry_run=dry_run) as session:
        posted = appropriate_budget(session, year=year, amount_fen=amount_arg(amount), date=_today_or(when), voucher=voucher, actor=obj.user)
        said = _answer(session, posted, dry_run)
    _say(said, fmt)


@main.group()
def project() -> None:
    """Approve and inspect projects."""


def exception_option(func):
    return click.option("--exception", metavar='"REFERENCE: REASON"',
                        help="Exceed a limit the rules mark as a principle (原则上), with the bureau's document and why (recorded); "
                             "hard limits stay hard.")(func)


def recorded_facts_options(func):
    """The facts auditors read that an approval records and ``project change`` alone changes."""
    for option in reversed((
        click.option("--pi", help="项目负责人 (PI, 首席科学家): locked after approval; change it with `project change`."),
        click.option("--indicator", "indicators", multiple=True, help="考核指标 (assessment indicator); repeat per indicator. Locked after approval."),
        click.option("--project-manager", help="项目经理人 (Urumqi 项目经理人制)."),
        click.option("--owner-letter", help="业主责任书 reference (Urumqi 业主制)."),
        click.option("--owner-letter-date", help="业主责任书 date, YYYY-MM-DD."),
    )):
        func = option(func)
    return func


MODE_ALIASES = {"jbgs": "jbgs", "揭榜挂帅": "jbgs", "saima": "saima", "赛马": "saima"}
CATEGORY_ALIASES = {"tech_breakthrough": "tech_breakthrough", "技术攻关": "tech_breakthrough", "commercialization": "commercialization", "成果转化": "commercialization"}


@project.command("approve")
@click.option("--code", required=True, help="Project code, e.g. JM2025-003.")
@click.option("--name", required=True, help="Project name.")
@click.option("--city", required=True, help="City code of the rules, e.g. jiangmen or urumqi.")
@click.option("--rules", "rules_version", help="Rules version (default: the one in force on the approval date).")
@click.option("--category", required=True, type=click.Choice(sorted(CATEGORY_ALIASES)), help="技术攻关 (tech_breakthrough) or 成果转化 (commercialization).")
@click.option("--mode", required=True, type=click.Choice(sorted(MODE_ALIASES)), help="揭榜挂帅 (jbgs) or 赛马 (saima).")
@click.option("--demand", required=True, help="USCC of the demand side (发榜方).")
@click.option("--solver", "solvers", multiple=True, required=True, help="USCC of a solver (揭榜方); repeat per lane.")
@click.option("--total-investment", required=True, help="Total R&D investment.")
@click.option("--grant", help="Approved grant (staged-grant rules, e.g. Jiangmen).")
@click.option("--bid", "bids", multiple=True, help="Contracted bid per lane, in --solver order (bid-subsidy rules, e.g. Urumqi).")
@click.option("--start", required=True, help="Period start, YYYY-MM-DD.")
@click.option("--end", required=True, help="Period end, YYYY-MM-DD.")
@click.option("--budget-year", type=int, help="Appropriation year to obligate (default: the approval year).")
@click.option("--registration-override", help="Approve a demand side registered outside the city's divisions, with this reason (recorded).")
@click.option("--budget", "budget_lines", multiple=True, metavar="SOURCE:CATEGORY:AMOUNT",
              help="Approved budget line (批复预算), e.g. 市财政:设备费:120万 or 单位自筹:劳务费:80万; repeat per line. "
                   "The 市财政 lines add up to --grant.")
@exception_option
@recorded_facts_options
@date_option
@voucher_option
@money_options
@pass_context
def project_approve(obj, code, name, city, rules_version, category, mode, demand, solvers, total_investment, grant, bids, start, end, budget_year,
                    registration_override, budget_lines, exception, pi, indicators, project_manager, owner_letter, owner_letter_date,
                    when, voucher, dry_run, fmt) -> None:
    """Approve a project (立项): every eligibility rule is checked and the obligation posted.

    \b
    Example (Jiangmen 揭榜挂帅):
      jiebang project approve --code JM2025-003 --name 高端装备控制器 --city jiangmen \
        --category 技术攻关 --mode 揭榜挂帅 --demand 9144... --solver 1244... \
        --total-investment 800万 --grant 300万 --start 2025-10-01 --end 2028-09-30 --date 2025-09-20
    """
    from ledger.programme import ApprovalInput, approve_project, parse_budget_line

    spec = ApprovalInput(
        code=code, name=name, city=city.strip().lower(), category=CATEGORY_ALIASES[category], mode=MODE_ALIASES[mode],
        demand_uscc=demand, solver_usccs=tuple(solvers), total_investment_fen=amount_arg(total_investment, "total investment"),
        approval_date=_today_or(when), start_date=parse_date(start, "start"), end_date=parse_date(end, "end"),
        approved_grant_fen=amount_arg(grant, "grant") if grant else None,
        bid_contract_fen=tuple(amount_arg(b, "bid") for b in bids), rules_version=rules_version,
        budget_year=budget_year, voucher=voucher, registration_override=registration_override,
        budget=tuple(parse_budget_line(line) for line in budget_lines),
        exception=exception, pi=pi, indicators=tuple(indicators), project_manager=project_manager, owner_letter=owner_letter,
        owner_letter_date=parse_date(owner_letter_date, "owner letter date") if owner_letter_date else None,
    )
    with obj.write(dry_run=dry_run) as session:
        posted = approve_project(session, spec, actor=obj.user)
        said = _answer(session, posted, dry_run)
    _say(said, fmt)


@project.command("show")
@click.argument("code")
@as_of_option
@format_option
@pass_context
def project_show(obj, code, as_of, fmt) -> None:
    """Show a project, its lanes, its tranche schedule with status and what the next tranche waits on.

    \b
    Example:
      jiebang project show JM2025-003
    """
    from ledger.programme.views import (
        LANE_COLUMNS,
        PROJECT_HEADER_KEYS,
        TRANCHE_COLUMNS,
        project_sheet,
    )
    from reports.text import table_text

    with obj.read() as session:
        sheet = project_sheet(session, code, as_of=_date_or_none(as_of))
    info = sheet.info
    if fmt == "json":
        click.echo(json.dumps(info, ensure_ascii=False, indent=2))
        return
    for key in PROJECT_HEADER_KEYS:
        value = info[key]
        if isinstance(value, list):
            value = "; ".join(value)
        click.echo(f"{key:<15} {table_text(value or '')}")
    click.echo("")
    emit(info["lanes"], list(LANE_COLUMNS), fmt)
    click.echo("")
    rows = [dict(t, conditions=",".join(t["conditions"]), unmet=",".join(t["unmet"])) for t in info["tranches"]]
    emit(rows, list(TRANCHE_COLUMNS), fmt, right=("amount",), amounts=("amount",))
    if (nxt := sheet.next_tranche) is not None:
        click.echo("")
        click.echo(table_text(f"next: tranche {nxt.seq} of {nxt.lane} waits on " + "; ".join(nxt.waits_on)))


@project.command("change")
@click.option("--project", "code", required=True, help="Project code.")
@recorded_facts_options
@click.option("--reference", required=True, help="The bureau's approval of the change (文号).")
@click.option("--reason", required=True, help="Why the facts change.")
@date_option
@voucher_option
@money_options
@pass_context
def project_change(obj, code, pi, indicators, project_manager, owner_letter, owner_letter_date, reference, reason, when, voucher, dry_run, fmt) -> None:
    """Change a project's PI, assessment indicators, 项目经理人 or 业主责任书 after approval, with the bureau's approval.

    The facts given replace those in force (all indicators at once); the audit pack lists each change.

    \b
    Example:
      jiebang project change --project UR2025-001 --pi 李四 --reference 乌科函〔2026〕8号 --reason 原负责人调离 --date 2026-03-01
    """
    from ledger.programme import change_project

    named = {k: v for k, v in {"pi": pi, "indicators": tuple(indicators), "project_manager": project_manager, "owner_letter": owner_letter,
                                "owner_letter_date": parse_date(owner_letter_date, "owner letter date") if owner_letter_date else None}.items() if v}
    with obj.write(dry_run=dry_run) as session:
        posted = change_project(session, project=code, date=_today_or(when), reference=reference, reason=reason, voucher=voucher,
                                actor=obj.user, **named)
        said = _answer(session, posted, dry_run)
    _say(said, fmt)


@main.command()
@format_option
@pass_context
def projects(obj, fmt) -> None:
    """List projects.

    \b
    Example:
      jiebang projects
    """
    from ledger.programme.views import PROJECT_COLUMNS, project_list

    with obj.read() as session:
        rows = project_list(session)
    emit(rows, list(PROJECT_COLUMNS), fmt, right=("obligation",), amounts=("obligation",))


@main.command()
@as_of_option
@click.option("--city", help="Only this city's projects, e.g. jiangmen or urumqi.")
@click.option("--within", "within_days", type=click.IntRange(0, 3660), default=90, show_default=True, metavar="DAYS",
              help="Periods ending within DAYS; clawbacks outstanding DAYS or longer.")
@format_option
@pass_context
def due(obj, as_of, city, within_days, fmt) -> None:
    """What needs an officer's attention: tranches ready, self-funding behind schedule, clawbacks outstanding, periods ending.

    Each line names the project, the amount and the command that resolves it. Self-funding
    is behind when less has arrived than the pledge times the share of the period elapsed.

    \b
    Example:
      jiebang due
      jiebang due --as-of 2026-05-09 --city jiangmen --within 60
    """
    from ledger.programme.due import DUE_COLUMNS, due_items

    with obj.read() as session:
        items = due_items(session, _date_or_none(as_of) or dt.date.today(), city=city, within_days=within_days)
    if obj.db_option:
        items = [dataclasses.replace(i, command=i.command.replace("jiebang ", f"jiebang {obj.db_option}", 1)) for i in items]
    emit([i.row() for i in items], list(DUE_COLUMNS), fmt, right=("amount",), amounts=("amount",))


@main.command()
@click.option("--project", "code", required=True, help="Project code.")
@click.option("--amount", required=True, help="Amount pledged.")
@click.option("--category", help="Budget category, if the letter names one.")
@date_option
@voucher_option
@money_options
@pass_context
def pledge(obj, code, amount, category, when, voucher, dry_run, fmt) -> None:
    """Record self-funding pledged by commitment letter (自投研发资金承诺函).

    \b
    Example:
      jiebang pledge --project JM2025-003 --amount 500万 --date 2025-09-25 --voucher CN-2025-01
    """
    from ledger.programme import pledge as record_pledge

    with obj.write(dry_run=dry_run) as session:
        posted = record_pledge(session, project=code, amount_fen=amount_arg(amount), date=_today_or(when), voucher=voucher, actor=obj.user, category=category)
        said = _answer(session, posted, dry_run)
    _say(said, fmt)


@main.command()
@click.option("--project", "code", required=True, help="Project code.")
@click.option("--amount", required=True, help="Amount evidenced as arrived.")
@click.option("--category", required=True, help="equipment / business / labour / indirect (or 设备费 / 业务费 / 劳务费 / 间接费用).")
@date_option
@voucher_option
@money_options
@pass_context
def contribute(obj, code, amount, category, when, voucher, dry_run, fmt) -> None:
    """Record self-funding evidenced as arrived (到位), by budget category.

    \b
    Example:
      jiebang contribute --project JM2025-003 --amount 120万 --category 设备费 --date 2025-12-01 --voucher BK-8812
    """
    from ledger.programme import contribute as record_contribution

    with obj.write(dry_run=dry_run) as session:
        posted = record_contribution(session, project=code, amount_fen=amount_arg(amount), category=category, date=_today_or(when), voucher=voucher, actor=obj.user)
        said = _answer(session, posted, dry_run)
    _say(said, fmt)


@main.group()
def bid() -> None:
    """Bid money (揭榜金额) between demand side and solver lanes."""


@bid.command("contract")
@click.option("--project", "code", required=True, help="Project code.")
@click.option("--lane", help="Solver USCC or L1, L2 ... (optional for one lane).")
@click.option("--amount", required=True, help="Contracted amount added.")
@date_option
@voucher_option
@money_options
@pass_context
def bid_contract_cmd(obj, code, lane, amount, when, voucher, dry_run, fmt) -> None:
    """Record contracted bid money for a lane (under Urumqi rules it raises the subsidy obligation).

    \b
    Example:
      jiebang bid contract --project UR2025-011 --lane L1 --amount 200万 --date 2025-07-01
    """
    from ledger.programme import bid_contract

    with obj.write(dry_run=dry_run) as session:
        posted = bid_contract(session, project=code, lane=lane, amount_fen=amount_arg(amount), date=_today_or(when), voucher=voucher, actor=obj.user)
        said = _answer(session, posted, dry_run)
    _say(said, fmt)


@bid.command("pay")
@click.option("--project", "code", required=True, help="Project code.")
@click.option("--lane", help="Solver USCC or L1, L2 ... (optional for one lane).")
@click.option("--amount", required=True, help="Amount paid.")
@click.option("--form", type=click.Choice(["cash", "equity", "in_kind"]), default="cash", show_default=True, help="cash, equity (技术入股股权评估) or in_kind.")
@date_option
@voucher_option
@money_options
@pass_context
def bid_pay_cmd(obj, code, lane, amount, form, when, voucher, dry_run, fmt) -> None:
    """Record bid money paid to a lane; under Urumqi rules cash accrues the 40% subsidy.

    \b
    Example:
      jiebang bid pay --project UR2025-011 --lane L1 --amount 100万 --form cash --date 2025-08-01 --voucher PAY-1
    """
    from ledger.programme import bid_pay

    with obj.write(dry_run=dry_run) as session:
        posted = bid_pay(session, project=code, lane=lane, amount_fen=amount_arg(amount), form=form, date=_today_or(when), voucher=voucher, actor=obj.user)
        said = _answer(session, posted, dry_run)
    _say(said, fmt)


@main.command()
@click.option("--project", "code", required=True, help="Project code.")
@click.option("--stage", type=click.Choice(["contract_signed", "midterm", "stage_assessment", "acceptance", "audit_report"]), required=True)
@click.option("--passed/--failed", default=True, show_default=True, help="The result.")
@click.option("--lane", help="The lane assessed (赛马 stage assessment).")
@click.option("--reference", help="Document reference of the result.")
@click.option("--misused", multiple=True, help="With a failed stage assessment (or a failed acceptance the rules treat as a termination): misused amount, VOUCHER=AMOUNT; repeat for several.")
@click.option("--accepted-by", help="With acceptance: the organisation that ran the 验收 (验收组织单位).")
@click.option("--audit-firm", help="With audit_report: the 会计师事务所 that issued the 专项审计报告.")
@click.option("--audit-fee", help="With audit_report: the audit fee, e.g. 3.5万.")
@click.option("--audited-cash", multiple=True, help="With the audit report (bid subsidy): the cash bid total the 专项审计报告 confirms, AMOUNT or Ln=AMOUNT per lane; the subsidy is trued up on it.")
@date_option
@voucher_option
@money_options
@pass_context
def stage(obj, code, stage, passed, lane, reference, misused, accepted_by, audit_firm, audit_fee, audited_cash, when, voucher, dry_run, fmt) -> None:
    """Record a stage result: contract signed, mid-term check, 赛马 stage assessment, acceptance, audit report.

    A 赛马 lane that fails its stage assessment is eliminated and receives nothing more; its
    clawback is its unspent advance plus any misused amounts named on its own spending. A
    failed acceptance has the consequence the rules give it (DEFAULT: the project ends as a
    termination, with its clawback, in the same entry). The audit report of a bid subsidy
    takes the audited cash total and trues the subsidy up on it.

    \b
    Example:
      jiebang stage --project JM2025-003 --stage midterm --passed --date 2027-03-15
      jiebang stage --project JM2025-007 --stage stage_assessment --lane L3 --failed --misused PZ-L3-07=2万 --date 2026-10-01
      jiebang stage --project UR2025-011 --stage audit_report --passed --audited-cash 240万 --date 2027-11-20
      jiebang stage --project UR2025-001 --stage audit_report --audit-firm 新疆某会计师事务所 --audit-fee 3.5万 --date 2028-11-20
    """
    from ledger.programme import record_stage
    from ledger.programme.stages import parse_audited_cash

    try:
        audited = parse_audited_cash(audited_cash)
    except Refusal as refusal:
        raise click.BadParameter(refusal.message, param_hint="--audited-cash") from None
    with obj.write(dry_run=dry_run) as session:
        named = ({"misused": _misuse(misused)} if misused else {}) | ({"audited_cash": audited} if audited else {})
        named |= {k: v for k, v in {"accepted_by": accepted_by, "audit_firm": audit_firm,
                                    "audit_fee_fen": amount_arg(audit_fee, "audit fee") if audit_fee else None}.items() if v is not None}
        posted = record_stage(session, project=code, stage=stage, passed=passed, date=_today_or(when), voucher=voucher, actor=obj.user, lane=lane,
                              reference=reference, **named)
        said = _answer(session, posted, dry_run)
    _say(said, fmt)


@main.command()
@click.option("--project", "code", required=True, help="Project code.")
@click.option("--lane", help="Solver USCC or L1, L2 ... (optional for one lane).")
@click.option("--tranche", type=int, help="Tranche number (default: the next one not released).")
@click.option("--offset-approval", default="", help="Where the rules allow it: net a clawback the unit owes on this project, with this approval reference.")
@date_option
@voucher_option
@money_options
@pass_context
def release(obj, code, lane, tranche, offset_approval, when, voucher, dry_run, fmt) -> None:
    """Release a tranche when its conditions hold, within the obligation, once.

    \b
    Example:
      jiebang release --project JM2025-003 --date 2025-11-01 --voucher ZF-2025-118
    """
    from ledger.programme import release as release_tranche

    offset = {"offset_approval": offset_approval} if offset_approval else {}
    if not dry_run and _held_for_approval(obj, "release", project=code, lane=lane, tranche=tranche, date=_today_or(when), voucher=voucher, **offset):
        return
    with obj.write(dry_run=dry_run) as session:
        posted = release_tranche(session, project=code, lane=lane, tranche=tranche, date=_today_or(when), voucher=voucher, actor=obj.user, **offset)
        said = _answer(session, posted, dry_run)
    _say(said, fmt)


@main.command()
@click.option("--project", "code", required=True, help="Project code.")
@click.option("--lane", help="Solver USCC or L1, L2 ... (optional for one lane).")
@click.option("--amount", required=True, help="Amount spent.")
@click.option("--category", required=True, help="equipment / business / labour / indirect, 设备费 / 业务费 / 劳务费 / 间接费用, or a pre-2021 line (材料费 ...).")
@click.option("--counterparty", help="Who was paid.")
@click.option("--justification", help="Required for equipment at or above the rules' threshold.")
@date_option
@voucher_option
@money_options
@pass_context
def spend(obj, code, lane, amount, category, counterparty, justification, when, voucher, dry_run, fmt) -> None:
    """Report fiscal money spent by budget category; it draws down the lane's advance.

    \b
    Example:
      jiebang spend --project JM2025-003 --amount 45万 --category 设备费 --counterparty 某仪器公司 --date 2026-01-15 --voucher PZ-0012
    """
    from ledger.programme import spend as record_spend

    with obj.write(dry_run=dry_run) as session:
        posted = record_spend(session, project=code, lane=lane, amount_fen=amount_arg(amount), category=category, date=_today_or(when),
                              voucher=voucher, actor=obj.user, counterparty=counterparty, justification=justification)
        said = _answer(session, posted, dry_run)
    _say(said, fmt)


@main.command()
@click.option("--project", "code", required=True, help="Project code.")
@click.option("--months", type=click.IntRange(1, 120), required=True, help="Length of the extension in months.")
@click.option("--reference", required=True, help="The bureau's approval reference.")
@click.option("--reason", required=True, help="Why the period is extended (e.g. 不可抗力 and what it held up).")
@exception_option
@date_option
@voucher_option
@money_options
@pass_context
def extend(obj, code, months, reference, reason, exception, when, voucher, dry_run, fmt) -> None:
    """Record an approved extension of the project period, with its reason (count and length bounded by the rules).

    \b
    Example:
      jiebang extend --project JM2025-003 --months 12 --reference 江科〔2028〕45号 --reason 关键设备受不可抗力影响延迟到货 --date 2028-08-01
    """
    from ledger.programme import extend as record_extension

    named = {"exception": exception} if exception else {}
    with obj.write(dry_run=dry_run) as session:
        posted = record_extension(session, project=code, months=months, date=_today_or(when), reference=reference, reason=reason,
                                  voucher=voucher, actor=obj.user, **named)
        said = _answer(session, posted, dry_run)
    _say(said, fmt)


def _misuse(values) -> list:
    from ledger.programme import Misuse

    items = []
    for value in values:
        voucher, sep, amount = value.rpartition("=")
        if not sep or not voucher:
            raise click.BadParameter(f"{value!r} must be SPEND_VOUCHER=AMOUNT", param_hint="--misused")
        items.append(Misuse(voucher.strip(), amount_arg(amount, "misused amount")))
    return items


@main.command()
@click.option("--project", "code", required=True, help="Project code.")
@click.option("--reference", required=True, help="The bureau's termination decision reference.")
@click.option("--misused", multiple=True, help="Misused amount tied to a spend voucher: VOUCHER=AMOUNT; repeat for several.")
@click.option("--lane", help="Terminate one 赛马 lane only (USCC or L1, L2 ...); the other lanes go on.")
@date_option
@voucher_option
@money_options
@pass_context
def terminate(obj, code, reference, misused, lane, when, voucher, dry_run, fmt) -> None:
    """Terminate a project (or one lane): clawback = advances outstanding + misused amounts; the rest is deobligated.

    \b
    Example:
      jiebang terminate --project JM2025-003 --reference 江科〔2027〕9号 --misused PZ-0012=5万 --date 2027-05-01
      jiebang terminate --project JM2025-007 --lane L3 --reference 江科〔2027〕10号 --misused PZ-L3-07=2万 --date 2027-05-01
    """
    from ledger.programme import terminate as terminate_project

    one_lane = {"lane": lane} if lane else {}
    if not dry_run and _held_for_approval(obj, "termination", project=code, date=_today_or(when), reference=reference, voucher=voucher,
                                          misused=_misuse(misused), **one_lane):
        return
    with obj.write(dry_run=dry_run) as session:
        posted = terminate_project(session, project=code, date=_today_or(when), reference=reference, voucher=voucher, actor=obj.user,
                                   misused=_misuse(misused), **one_lane)
        said = _answer(session, posted, dry_run)
    _say(said, fmt)


@main.command()
@click.option("--project", "code", required=True, help="Project code.")
@click.option("--reference", required=True, help="The bureau's revocation decision reference.")
@date_option
@voucher_option
@money_options
@pass_context
def revoke(obj, code, reference, when, voucher, dry_run, fmt) -> None:
    """Revoke a project for fraud or serious misuse: recover everything released at the rules' rate.

    \b
    Example:
      jiebang revoke --project UR2025-011 --reference 乌科〔2026〕77号 --date 2026-09-01
    """
    from ledger.programme import terminate as terminate_project

    if not dry_run and _held_for_approval(obj, "revocation", project=code, date=_today_or(when), reference=reference, voucher=voucher):
        return
    with obj.write(dry_run=dry_run) as session:
        posted = terminate_project(session, project=code, date=_today_or(when), reference=reference, voucher=voucher, actor=obj.user, revoke=True)
        said = _answer(session, posted, dry_run)
    _say(said, fmt)


@main.command()
@click.option("--project", "code", required=True, help="Project code.")
@click.option("--lane", help="Solver USCC or L1, L2 ... (optional for one lane).")
@click.option("--amount", required=True, help="Amount received.")
@date_option
@voucher_option
@money_options
@pass_context
def collect(obj, code, lane, amount, when, voucher, dry_run, fmt) -> None:
    """Record clawback money received (owed to the finance bureau until remitted).

    \b
    Example:
      jiebang collect --project JM2025-003 --amount 120万 --date 2027-06-10 --voucher JK-2027-31
    """
    from ledger.programme import collect as record_collection

    with obj.write(dry_run=dry_run) as session:
        posted = record_collection(session, project=code, lane=lane, amount_fen=amount_arg(amount), date=_today_or(when), voucher=voucher, actor=obj.user)
        said = _answer(session, posted, dry_run)
    _say(said, fmt)


@main.command()
@click.option("--amount", required=True, help="Amount handed over.")
@date_option
@voucher_option
@money_options
@pass_context
def remit(obj, amount, when, voucher, dry_run, fmt) -> None:
    """Record recovered money handed over to the finance bureau (应缴财政款).

    \b
    Example:
      jiebang remit --amount 120万 --date 2027-06-30 --voucher JK-2027-40
    """
    from ledger.programme import remit as record_remit

    with obj.write(dry_run=dry_run) as session:
        posted = record_remit(session, amount_fen=amount_arg(amount), date=_today_or(when), voucher=voucher, actor=obj.user)
        said = _answer(session, posted, dry_run)
    _say(said, fmt)


@main.command()
@click.option("--project", "code", required=True, help="Project code.")
@click.option("--reference", required=True, help="The acceptance document reference.")
@date_option
@voucher_option
@money_options
@pass_context
def close(obj, code, reference, when, voucher, dry_run, fmt) -> None:
    """Close a project after a passed acceptance; what was never released is deobligated.

    \b
    Example:
      jiebang close --project UR2024-001 --reference 乌科验〔2027〕12号 --date 2027-03-01
    """
    from ledger.programme import close as close_project

    _project_decision(obj, close_project, code, reference, when, voucher, dry_run, fmt)


def _project_decision(obj, service, code, reference, when, voucher, dry_run, fmt) -> None:
    """Run a verb that takes a project, a decision reference and a date, and print its answer."""
    with obj.write(dry_run=dry_run) as session:
        posted = service(session, project=code, date=_today_or(when), reference=reference, voucher=voucher, actor=obj.user)
        said = _answer(session, posted, dry_run)
    _say(said, fmt)


@main.command("recover-balance")
@click.option("--project", "code", required=True, help="Project code.")
@click.option("--reference", required=True, help="The bureau's decision reference.")
@date_option
@voucher_option
@money_options
@pass_context
def recover_balance(obj, code, reference, when, voucher, dry_run, fmt) -> None:
    """Recover the balance retained after acceptance, N years on, where the rules say so.

    Only under rules with closure.balance_after_acceptance = recover_after_years; the
    clawback is then collected (jiebang collect) and remitted (jiebang remit).

    \b
    Example:
      jiebang recover-balance --project SZ2025-001 --reference 深科〔2029〕5号 --date 2029-06-01
    """
    from ledger.programme import recover_balance as recover

    _project_decision(obj, recover, code, reference, when, voucher, dry_run, fmt)


@main.command("write-off")
@click.option("--project", "code", required=True, help="Project code.")
@click.option("--lane", help="Solver USCC or L1, L2 ... (optional for one lane).")
@click.option("--amount", required=True, help="Amount written off.")
@click.option("--reason", required=True, help="Why it cannot be collected.")
@click.option("--approval", required=True, help="Approval reference.")
@date_option
@voucher_option
@money_options
@pass_context
def write_off_cmd(obj, code, lane, amount, reason, approval, when, voucher, dry_run, fmt) -> None:
    """Write off an uncollectable clawback, with a reason and an approval reference.

    \b
    Example:
      jiebang write-off --project JM2025-009 --amount 3万 --reason 单位注销 --approval 江财〔2028〕2号 --date 2028-03-01
    """
    from ledger.programme import write_off

    if not dry_run and _held_for_approval(obj, "write_off", project=code, lane=lane, amount_fen=amount_arg(amount), date=_today_or(when), reason=reason, approval=approval, voucher=voucher):
        return
    with obj.write(dry_run=dry_run) as session:
        posted = write_off(session, project=code, lane=lane, amount_fen=amount_arg(amount), date=_today_or(when), reason=reason, approval=approval, voucher=voucher, actor=obj.user)
        said = _answer(session, posted, dry_run)
    _say(said, fmt)


@main.command("import")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--kind", help="For a CSV file: the kind of its rows, a sheet name such as bid_payments.")
@click.option("--dry-run", is_flag=True, help="Run every row through the checks, print the totals by sheet, project and kind, and write nothing.")
@click.option("--allow-future", is_flag=True, help="Accept value dates more than JIEBANG_FUTURE_DAYS (default 31) days after today.")
@pass_context
def import_cmd(obj: Context, path: Path, kind: str | None, dry_run: bool, allow_future: bool) -> None:
    """Import events from a workbook (one sheet per kind) or a CSV file of one kind, all or nothing.

    Rows go through the same checks as the verbs, in date order, in one transaction. Every
    problem is listed as `sheet!row column: reason` and then nothing is written. Rows whose
    voucher is already recorded are skipped, so importing a file again writes nothing new.
    A row whose first cell begins with # (the template's #example rows) is skipped.

    \b
    Example:
      jiebang template import.xlsx
      jiebang import import.xlsx --dry-run
      jiebang import payments.csv --kind bid_payments
    """
    from ledger.core.db import open_session
    from ledger.programme import importer

    is_csv = path.suffix.lower() == ".csv"
    if is_csv and not kind:
        raise click.UsageError("a CSV file holds one kind of row; name it with --kind, e.g. --kind bid_payments.")
    if kind and not is_csv:
        raise click.UsageError("--kind is for CSV files; a workbook names each kind by its sheet.")
    if kind and kind not in importer.SHEETS:
        raise click.BadParameter(f"{kind!r} is not one of {', '.join(importer.SHEETS)}.", param_hint="--kind")
    batch = importer.read_file(path, kind=kind, allow_future=allow_future)
    total = batch.read
    with open_session(obj.engine()) as session:
        with progress_bar(total, "importing", enabled=total >= 1_000) as advance:
            report = importer.run_rows(session, batch, actor=obj.user, progress=advance, totals=dry_run)
        if report.problems or dry_run:
            session.rollback()
        else:
            session.commit()
    for problem in report.problems:
        click.echo(str(problem))
    if report.problems:
        count = len(report.problems)
        raise Refusal(
            "import_must_have_no_problems",
            f"{count} problem{'s' if count != 1 else ''} in {path.name} ({total} rows read); nothing was written. "
            "Fix the rows listed and import the file again.",
        )
    verb = "would be written" if dry_run else "written"
    for sheet in importer.SHEETS:
        if report.written[sheet] or report.present[sheet]:
            click.echo(f"{sheet}: {report.written[sheet]} {verb}, {report.present[sheet]} already present")
    if dry_run and report.totals:
        click.echo("would be written, by sheet, project and kind (amount: debits in the fiscal book, else the memo book):")
        for line in report.total_lines():
            click.echo(line)
    tail = "; dry run, nothing was written." if dry_run else "."
    click.echo(f"{report.written_total} {verb}, {report.present_total} already present{tail}")


@main.command()
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Overwrite the file if it exists.")
def template(path: Path, force: bool) -> None:
    """Write an empty import workbook: one sheet per kind, headers with comments, an example row each.

    Each example row's first cell begins with #example, so the import skips it; copy it
    below, remove the mark and fill in your own rows.

    \b
    Example:
      jiebang template import.xlsx
    """
    from ledger.programme.importer import SHEETS, write_template

    if path.exists() and not force:
        raise Refusal("template_must_not_overwrite", f"{path} exists; choose another name or add --force to overwrite it.")
    try:
        write_template(path)
    except OSError as exc:
        raise Refusal("template_must_be_writable", f"cannot write {path}: {exc.strerror}.") from None
    click.echo(f"wrote {path}: sheets {', '.join(SHEETS)}.")


@main.command()
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default="demo-out", show_default=True,
              help="Directory for the demo ledger (DIR/jiebang.db) and everything written from it.")
@click.option("--force", is_flag=True, help="Replace DIR/jiebang.db if it exists.")
@font_option
def demo(out_dir: Path, force: bool, font_path: Path | None) -> None:
    """Build a two-city example ledger through the services and write every report from it.

    Creates a fresh SQLite ledger at DIR/jiebang.db (the global --db is not used), records
    2024–2026 appropriations and nine Jiangmen and Urumqi projects with fixed dates and
    vouchers, verifies the chain, exports both books to beancount, and writes per-project
    balances and two enterprises' status reports. Deterministic; never uses the network.

    \b
    Example:
      jiebang demo
      jiebang demo --out /tmp/jiebang-demo --force
    """
    from ledger.programme.demo import build_ledger
    from reports.demo import summary_lines, write_demo

    result = write_demo(build_ledger(out_dir, force=force), font_path=font_path)
    for line in summary_lines(result):
        click.echo(line)
    if not result.verify_ok or result.bean_check:
        sys.exit(1)


@main.group()
def report() -> None:
    """Reports people can hand over (status of an enterprise's matched investment)."""


@report.command("status")
@click.option("--party", "uscc", required=True, help="USCC of the enterprise (demand side or solver).")
@as_of_option
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Write status-USCC-DATE.json and .xlsx into this directory instead of printing.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True, help="Output format.")
@pass_context
def report_status(obj: Context, uscc: str, as_of, out_dir: Path | None, fmt: str) -> None:
    """An enterprise's matched-investment status: per project and lane, self-funding
    pledged vs contributed (到位率), bid contracted vs paid by form, subsidy earned /
    released / payable, grant released / unreleased, the next tranche and what it waits on,
    and warnings. Only the party's own projects (a solver sees only its own lane).

    The as-of date defaults to the latest entry's value date, so the same ledger and date
    always give the same output.

    \b
    Example:
      jiebang report status --party 91440703MA4W1A276P
      jiebang report status --party 91440703MA4W1A276P --as-of 2026-12-31 --out reports/
    """
    from reports.status import render_json, render_table, status_report, write_report_files

    with obj.read() as session:
        data = status_report(session, uscc, as_of=_date_or_none(as_of))
    if out_dir is not None:
        _check_writable(out_dir)
        for path in write_report_files(data, out_dir):
            click.echo(f"wrote {path}")
        return
    if fmt == "json":
        click.echo(render_json(data), nl=False)
    else:
        echo_lines(render_table(data))


@report.command("audit")
@click.option("--project", "code", required=True, help="Project code.")
@click.option("--as-of", type=DATE,
              help="Audit cut-off (default: the period end with approved extensions, or the termination date if earlier).")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True, help="Directory to write the pack into.")
@font_option
@pass_context
def report_audit(obj: Context, code: str, as_of, out_dir: Path, font_path: Path | None) -> None:
    """The 专项审计资料包 of one project: audit-CODE-DATE.pdf, audit-CODE-DATE.xlsx and the
    project's beancount extract beancount-CODE-DATE/, as of the audit cut-off.

    Nine sections (一、项目基本情况 … 九、完整性); every amount equals
    `jiebang balances --project CODE --as-of DATE`. The same ledger and date give
    byte-identical files; entries dated after the cut-off never change them.

    \b
    Example:
      jiebang report audit --project JM2025-003 --out audit/
      jiebang report audit --project UR2025-011 --as-of 2026-06-30 --out audit/
    """
    from reports.audit import AUDIT_STEPS, resolve_as_of, write_audit_pack

    with obj.read() as session:
        _project, when, _basis = resolve_as_of(session, code, _date_or_none(as_of))
        _check_writable(out_dir)
        with progress_bar(AUDIT_STEPS, f"writing the audit pack of {code.upper()}") as advance:
            paths = write_audit_pack(session, code, out_dir, as_of=when, font_path=font_path, progress=advance)
    for path in paths:
        click.echo(f"wrote {path}{'/' if path.is_dir() else ''}")


@report.command("forecast")
@click.option("--from", "from_year", type=int, help="First fiscal year (default: the as-of year).")
@click.option("--years", type=int, default=5, show_default=True, help="How many fiscal years (1..30).")
@click.option("--as-of", type=DATE,
              help="Forecast from the ledger as it stood on this date (default: today); a past date adds a back-test.")
@click.option("--city", help="Only this city's projects (jiangmen, urumqi).")
@click.option("--scenario", "scenario_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Scenario TOML: mid-term failure, termination, 赛马 survivors, delays, clawback collection.")
@click.option("--pipeline", "pipeline_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Planned projects not yet approved (TOML [[project]] tables or CSV); the ledger is not touched.")
@click.option("--runs", type=int, default=10_000, show_default=True, help="Monte Carlo runs (1..100,000).")
@click.option("--seed", type=int, default=1, show_default=True, help="Random seed; the same seed gives the same output.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Write the xlsx workbook and the PDF (chart and assumptions) into this directory instead of printing.")
@font_option
@format_option
@pass_context
def report_forecast(obj: Context, from_year, years, as_of, city, scenario_path, pipeline_path, runs, seed, out_dir, font_path, fmt) -> None:
    """Budget exposure by fiscal year: the releases every active project and lane needs if
    each condition is met on time (Jiangmen tranches on their expected dates, the Urumqi
    subsidy spread over the remaining period), pipeline projects, expected recoveries, and
    the headroom against each year's appropriation; with a scenario, a seeded Monte Carlo
    gives the expected exposure and P50/P90/P95. With --as-of in the past it compares the
    forecast with the releases recorded since (a back-test).

    \b
    Example:
      jiebang report forecast
      jiebang report forecast --scenario cautious.toml --runs 20000 --seed 7 --out forecast/
      jiebang report forecast --as-of 2025-06-30 --from 2025 --years 3 --format json
      jiebang report forecast --pipeline pipeline-2027.toml --city jiangmen
    """
    from reports.forecast import (
        FORECAST_STEPS,
        Scenario,
        build_forecast,
        check_runs,
        check_window,
        load_scenario,
    )
    from reports.forecast_render import render_csv, render_json, render_table, write_forecast_files

    today = dt.date.today()
    when = parse_date(as_of) if as_of is not None else today
    window = check_window(when, from_year, years, as_of_given=as_of is not None, today=today)
    check_runs(runs)
    scenario = load_scenario(scenario_path) if scenario_path is not None else Scenario()
    with obj.read() as session, progress_bar(FORECAST_STEPS, "forecasting") as advance:
        forecast = build_forecast(session, window=window, scenario=scenario, runs=runs, seed=seed, city=city,
                                  pipeline=pipeline_path, progress=advance)
    if out_dir is not None:
        _check_writable(out_dir)
        for path in write_forecast_files(forecast, out_dir, font_path=font_path):
            click.echo(f"wrote {path}")
        return
    if fmt == "json":
        click.echo(render_json(forecast), nl=False)
    elif fmt == "csv":
        click.echo(render_csv(forecast), nl=False)
    else:
        echo_lines(render_table(forecast))


@main.group()
def export() -> None:
    """Export the ledger to other tools' formats."""


@export.command("beancount")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True, help="Directory to write into.")
@as_of_option
@click.option("--project", help="Only this project's entries.")
@pass_context
def export_beancount_cmd(obj: Context, out_dir: Path, as_of, project) -> None:
    """Write one beancount file per book, with exact balance assertions.

    \b
    Example:
      jiebang export beancount --out export/ --as-of 2025-12-31
      bean-check export/fiscal.beancount
    """
    from ledger.core.export import export_beancount, posting_count

    _check_writable(out_dir)
    with obj.read() as session:
        total = posting_count(session, as_of=_date_or_none(as_of), project_code=project)
        with progress_bar(total, "exporting", enabled=total >= PROGRESS_MIN_POSTINGS) as advance:
            paths = export_beancount(session, out_dir, as_of=_date_or_none(as_of), project_code=project, progress=advance)
    for path in paths:
        click.echo(f"wrote {path}")


@export.command("ledger")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True, help="Directory to write into.")
@as_of_option
@pass_context
def export_ledger_cmd(obj: Context, out_dir: Path, as_of) -> None:
    """Write one hledger / ledger-cli journal per book, ending with exact balance assertions.

    \b
    Example:
      jiebang export ledger --out export/ --as-of 2025-12-31
      hledger -f export/fiscal.journal balance
      ledger -f export/memo.journal balance
    """
    from ledger.core.export import posting_count
    from ledger.core.export_ledger import export_ledger

    _check_writable(out_dir)
    with obj.read() as session:
        total = posting_count(session, as_of=_date_or_none(as_of))
        with progress_bar(total, "exporting", enabled=total >= PROGRESS_MIN_POSTINGS) as advance:
            paths = export_ledger(session, out_dir, as_of=_date_or_none(as_of), progress=advance)
    for path in paths:
        click.echo(f"wrote {path}")


def _check_writable(out_dir: Path) -> None:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise Refusal("output_directory_must_be_writable", f"cannot create {out_dir}: {exc.strerror}.") from None
    if not os.access(out_dir, os.W_OK):
        raise Refusal("output_directory_must_be_writable", f"cannot write into {out_dir}; choose another --out.")


# --- maker–checker and access (ledger/approvals.py, ledger/roles.py; docs/access.md) -----


def _held_for_approval(obj: Context, kind: str, **arguments) -> bool:
    """When the ledger requires approval, record a request instead of posting; True if so."""
    from ledger.programme import approvals

    # Read first without SQLite's write lock: the common case (off) costs one small read.
    with obj.read() as session:
        if not approvals.requires_approval(session):
            return False
    with obj.write() as session:
        if not approvals.requires_approval(session):
            return False
        user = approvals.acting_user(session, obj.user)
        number = approvals.record_request(session, kind, arguments, user=user)
    click.echo(f"request {number} recorded; it needs approval by another user with the approver role.")
    return True


@main.command()
@click.option("--require-approval", type=click.Choice(["on", "off"]), help="Maker–checker for releases, write-offs, terminations and revocations.")
@click.option("--approver", "add", multiple=True, help="SQLite: add a user to the approvers (an honour system). Repeatable.")
@click.option("--remove-approver", "remove", multiple=True, help="SQLite: remove a user from the approvers. Repeatable.")
@format_option
@pass_context
def settings(obj: Context, require_approval: str | None, add: tuple[str, ...], remove: tuple[str, ...], fmt: str) -> None:
    """Show or change the ledger's settings; every change is recorded as a `setting` journal entry.

    Off by default, so a single officer's SQLite file works as before. On PostgreSQL
    approvers are the logins in the jiebang_approver role (`jiebang db grant approver LOGIN`).

    \b
    Example:
      jiebang settings
      jiebang --user chen settings --require-approval on --approver li
    """
    from ledger.programme import approvals

    if require_approval or add or remove:
        with obj.write() as session:
            user = approvals.acting_user(session, obj.user)
            for name in add:
                approvals.add_approver(session, name, user=user)
            for name in remove:
                approvals.remove_approver(session, name, user=user)
            if require_approval:
                approvals.change_setting(session, "require_approval", require_approval, user=user)
    with obj.read() as session:
        rows = approvals.all_settings(session)
        postgres = approvals.is_postgres(session)
    if postgres:
        rows = [r for r in rows if r["setting"] != "approvers"]
    emit(rows, ["setting", "value", "set_by", "set_at", "entry"], fmt)


@main.command()
@click.option("--status", type=click.Choice(["pending", "approved", "rejected"]), help="Only requests with this status.")
@format_option
@pass_context
def requests(obj: Context, status: str | None, fmt: str) -> None:
    """List money-out requests waiting for (or given) approval.

    \b
    Example:
      jiebang requests --status pending
    """
    from ledger.programme import approvals

    with obj.read() as session:
        rows = approvals.list_requests(session, status)
    if fmt != "json":
        rows = [r | {"arguments": ", ".join(f"{k}={v}" for k, v in r["arguments"].items() if v not in (None, [], ""))}
                for r in rows]
    emit(rows, ["id", "kind", "project", "status", "requested_by", "requested_at", "decided_by", "decided_at", "entry", "reason", "arguments"],
         fmt, right=("id", "entry"))


@main.command()
@click.argument("request_id", type=int)
@pass_context
def approve(obj: Context, request_id: int) -> None:
    """Approve a pending request: every rule is checked again now, then the entry is posted.

    The approver must be another user than the requester and have the approver role. A
    refusal leaves the request pending.

    \b
    Example:
      jiebang --user li approve 3
    """
    from ledger.programme import approvals

    with obj.write() as session:
        user = approvals.acting_user(session, obj.user)
        row, posted = approvals.approve(session, request_id, user=user)
        said = _answer(session, posted, False)
    click.echo(f"request {request_id} ({row['kind']} of {row['project_code']}) approved by {user}: entry {posted.entry_id}.")
    echo_lines(said.lines())


@main.command()
@click.argument("request_id", type=int)
@click.option("--reason", required=True, help="Why the request is rejected.")
@pass_context
def reject(obj: Context, request_id: int, reason: str) -> None:
    """Reject a pending request with a reason (recorded as a journal fact entry).

    \b
    Example:
      jiebang --user li reject 3 --reason "tranche conditions not evidenced"
    """
    from ledger.programme import approvals

    with obj.write() as session:
        user = approvals.acting_user(session, obj.user)
        _row, posted = approvals.reject(session, request_id, user=user, reason=reason)
    click.echo(f"request {request_id} rejected by {user}: entry {posted.entry_id}.")


@main.group("db")
def db_group() -> None:
    """Database administration (PostgreSQL roles)."""


@db_group.command("grant")
@click.argument("role", type=click.Choice(["officer", "approver", "auditor", "enterprise"]))
@click.argument("login")
@click.option("--party", help="Enterprise only: the USCC whose projects the login may see.")
@pass_context
def db_grant(obj: Context, role: str, login: str, party: str | None) -> None:
    """Create or maintain the jiebang roles and give LOGIN one of them (PostgreSQL only).

    Run it as a superuser (or the ledger's owner with CREATEROLE). Idempotent; re-run it
    after `jiebang init` upgrades the schema. See docs/access.md.

    \b
    Example:
      jiebang --db postgresql://postgres@db/ledger db grant officer chen
      jiebang --db postgresql://postgres@db/ledger db grant enterprise jm_firm --party 91440700MA51A00018
    """
    from ledger.core.db import backend_name
    from ledger.programme.roles import grant

    if backend_name(obj.url) != "postgresql":
        raise Refusal("roles_need_postgresql", "database roles exist only on PostgreSQL; a SQLite ledger is protected by its file permissions.")
    with obj.write() as session:
        done = grant(session, role, login, party=party)
    for line in done:
        click.echo(line)



# --- the web portal -------------------------------------------------------------------------


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True, help="Port to listen on.")
@click.option("--scenario", "scenario_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Forecast scenario TOML for the bureau's exposure chart (default: everything on time).")
@click.option("--db", "db", help="The ledger to serve, as the global --db (which it overrides), so that "
              "`jiebang serve --db demo-out/jiebang.db` reads as it is typed.")
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Worker processes (they share the cookie secret and the cache of built pages).")
@click.option("--forwarded-allow-ips", "forwarded_allow_ips", metavar="ADDRESSES",
              help="Proxies whose X-Forwarded-For is believed (comma-separated addresses or networks, or *), so that "
                   "the sign-in throttle and the log see the browser's address; '' believes none. Default: uvicorn's, "
                   "$FORWARDED_ALLOW_IPS or else 127.0.0.1,::1 (a proxy on this machine).")
@pass_context
def serve(obj: Context, host: str, port: int, scenario_path: Path | None, db: str | None, workers: int,
          forwarded_allow_ips: str | None) -> None:
    """The web portal over the --db ledger: enterprises, auditors and the bureau each see
    their part, in Chinese, in a browser (no JavaScript needed). Accounts come from
    `jiebang portal invite`. Set JIEBANG_PORTAL_SECRET to keep sessions across restarts.

    \b
    Example:
      jiebang serve --db demo-out/jiebang.db --scenario demo-out/reports/forecast-scenario.toml
      jiebang --db postgresql://portal@db/ledger serve --host 0.0.0.0 --port 8080
    """
    from portal.server import run
    from reports.forecast import load_scenario

    if db is not None:
        obj = Context(db, obj.user)
    # Refuse a missing or old ledger in one line before the server starts, then close that
    # connection: the server's engine checks the file by opening it, and closing any handle on
    # a SQLite file drops the process's locks on it, so another process's `jiebang` could take
    # this one for the last reader and delete the WAL under the server.
    obj.engine().dispose()
    if scenario_path is not None:
        load_scenario(scenario_path)  # and a scenario file that cannot be read
    click.echo(f"jiebang portal on http://{host}:{port}/ (Ctrl-C stops it)")
    run(obj.url, host=host, port=port, scenario=scenario_path, workers=workers, forwarded_allow_ips=forwarded_allow_ips)


@main.group("portal")
def portal_group() -> None:
    """Web portal accounts: invitations, revocation, the log of sign-ins and downloads."""


@portal_group.command("invite")
@click.option("--party", help="An enterprise: its USCC (it sees its projects as demand side or solver).")
@click.option("--auditor", help="An accounting firm's account name (with --project).")
@click.option("--project", "projects", multiple=True, help="A project the auditor may see; repeat for several.")
@click.option("--bureau", help="A bureau account name (read-only dashboard).")
@click.option("--hours", type=int, default=72, show_default=True, help="Hours until the link expires.")
@click.option("--base-url", default="http://127.0.0.1:8000", show_default=True, help="Where the portal is served.")
@pass_context
def portal_invite(obj: Context, party, auditor, projects, bureau, hours: int, base_url: str) -> None:
    """Print a single-use sign-in link; following it sets the account's password.

    \b
    Example:
      jiebang portal invite --party 91440703MA4W1A276P
      jiebang portal invite --auditor 江门信达会计师事务所 --project JM2025-003 --project JM2025-004
      jiebang portal invite --bureau 江门市科技局
    """
    from portal.store import invite

    with obj.write() as session:
        user, token = invite(session, party=party, auditor=auditor, projects=tuple(projects), bureau=bureau, hours=hours,
                             actor=obj.user)
        login, kind = user.login, user.kind
    click.echo(f"{base_url.rstrip('/')}/invite/{token}")
    click.echo(f"account {login} ({kind}); the link works once and expires in {hours} h.", err=True)


@portal_group.command("revoke")
@click.argument("login")
@pass_context
def portal_revoke(obj: Context, login: str) -> None:
    """End an account's access at once: its sessions, password and open invitations.

    \b
    Example:
      jiebang portal revoke 91440703MA4W1A276P
    """
    from portal.store import revoke

    with obj.write() as session:
        revoke(session, login, actor=obj.user)
    click.echo(f"account {login} revoked.")


@portal_group.command("log")
@click.option("--login", help="Only this account.")
@click.option("--limit", type=click.IntRange(1), help="Only the last N records.")
@format_option
@pass_context
def portal_log(obj: Context, login, limit, fmt: str) -> None:
    """The append-only log of invitations, sign-ins (and failed ones), revocations and downloads.

    \b
    Example:
      jiebang portal log --limit 50
    """
    from portal.store import log_rows

    with obj.read() as session:
        rows = log_rows(session, login=login, limit=limit)
    emit(rows, ["id", "at", "login", "event", "detail", "address"], fmt, right=("id",))


if __name__ == "__main__":  # pragma: no cover
    main()
