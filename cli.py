"""The jiebang command line: one click group, flat verbs, thin bodies.

Each command parses, opens a session, calls a service, renders, and maps refusals to exit
code 1 (usage errors are click's exit code 2). Heavy libraries are imported inside the
commands that need them, so ``jiebang --help`` starts fast.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import sys
from pathlib import Path

import click

from ledger.errors import Refusal

FORMATS = ("table", "json", "csv")


# --- plumbing ---------------------------------------------------------------------------


class JiebangGroup(click.Group):
    """A click group that turns refusals and database trouble into one line and exit 1."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except Refusal as refusal:
            click.echo(f"error: {refusal.message}", err=True)
            ctx.exit(1)
        except click.exceptions.Exit:
            raise
        except Exception as exc:  # noqa: BLE001 - mapped in one place, like Fava's handlers
            message = _database_problem(exc)
            if message is None:
                raise
            click.echo(f"error: {message}", err=True)
            ctx.exit(1)


def _database_problem(exc: Exception) -> str | None:
    """A one-line message for database errors a user can cause; None for real bugs."""
    try:
        from sqlalchemy.exc import DBAPIError
    except ImportError:  # pragma: no cover
        return None
    if isinstance(exc, DBAPIError):
        detail = str(exc.orig).strip().splitlines()[0] if exc.orig is not None else str(exc)
        return f"the database refused the operation: {detail}; nothing was written."
    if isinstance(exc, OSError):
        return f"{exc.strerror or exc}: {getattr(exc, 'filename', '') or ''}".strip(": ")
    return None


class Context:
    def __init__(self, db: str | None, user: str | None):
        from ledger.db import normalize_url

        self.url = normalize_url(db)
        self.user = user or os.environ.get("JIEBANG_USER") or _login_name()
        self._engine = None

    def engine(self, *, must_exist: bool = True, check_head: bool = True):
        from ledger.db import make_engine, require_head

        if self._engine is None:
            self._engine = make_engine(self.url, must_exist=must_exist)
        if check_head:
            require_head(self._engine)
        return self._engine

    @contextlib.contextmanager
    def write(self):
        """A session in one transaction that commits when the block ends without error."""
        from sqlalchemy.orm import Session

        with Session(self.engine()) as session, session.begin():
            yield session

    @contextlib.contextmanager
    def read(self):
        from sqlalchemy.orm import Session

        from ledger.db import read_only

        with Session(read_only(self.engine())) as session, session.begin():
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


def as_of_option(func):
    return click.option("--as-of", type=click.DateTime(["%Y-%m-%d"]), help="Balances as of this date (inclusive).")(func)


def emit(rows: list[dict], columns: list[str], fmt: str, *, right: tuple[str, ...] = ()) -> None:
    """Print rows as an aligned table, a JSON array or CSV, with columns in the given order."""
    if fmt == "json":
        click.echo(json.dumps(rows, ensure_ascii=False, indent=2, default=str))
        return
    if fmt == "csv":
        import csv

        writer = csv.DictWriter(sys.stdout, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({c: row.get(c, "") for c in columns})
        return
    if not rows:
        click.echo("(nothing)")
        return
    cells = [[("" if row.get(c) is None else str(row.get(c))) for c in columns] for row in rows]
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


def _width(text: str) -> int:
    """Display width: CJK characters take two columns in a terminal."""
    import unicodedata

    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def parse_date(value, name: str = "date") -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value).strip())
    except ValueError:
        raise Refusal("date_must_be_iso", f"{name} {value!r} is not a date; write it as YYYY-MM-DD.") from None


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


@main.command()
@pass_context
def init(obj: Context) -> None:
    """Create the ledger database, or upgrade it to the current schema.

    \b
    Example:
      jiebang init
      jiebang --db postgresql://postgres@127.0.0.1/jiebang init
    """
    from ledger.db import current_revision
    from migrations import HEAD, upgrade_to_head

    engine = obj.engine(must_exist=False, check_head=False)
    before = current_revision(engine)
    if before == HEAD:
        click.echo(f"ledger at {_where(obj)} is already at schema {HEAD}.")
        return
    upgrade_to_head(engine)
    action = "created" if before is None else f"upgraded from {before}"
    click.echo(f"ledger {action} at {_where(obj)} (schema {HEAD}).")


def _where(obj: Context) -> str:
    from sqlalchemy.engine import make_url

    return make_url(obj.url).render_as_string(hide_password=True)


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
    from ledger.journal import AccountSpec, open_accounts

    with obj.write() as session:
        open_accounts(session, [AccountSpec(account, book, parse_date(opened), project, lane)])
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
    from sqlalchemy import select

    from ledger.models import Account

    query = select(Account).order_by(Account.book, Account.name)
    if book:
        query = query.where(Account.book == book)
    if project:
        query = query.where(Account.project_code == project)
    with obj.read() as session:
        rows = [
            {
                "account": a.name,
                "book": a.book,
                "type": a.type,
                "project": a.project_code,
                "lane": a.lane,
                "opened_on": a.opened_on.isoformat(),
                "closed_on": a.closed_on.isoformat() if a.closed_on else None,
            }
            for a in session.scalars(query)
        ]
    emit(rows, ["account", "book", "type", "project", "lane", "opened_on", "closed_on"], fmt)


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
    from ledger.bulk import read_entries_file

    drafts, account_specs = read_entries_file(path, default_kind=kind, actor=obj.user)
    _post_drafts(obj, drafts, account_specs if open_accounts else [])


def _post_drafts(obj: Context, drafts, account_specs) -> None:
    from ledger.journal import open_accounts, post_many
    from ledger.progress import progress_bar

    with obj.write() as session:
        if account_specs:
            open_accounts(session, account_specs)
        with progress_bar(len(drafts), "posting", enabled=len(drafts) >= 10_000) as advance:
            results = post_many(session, drafts, progress=advance)
    created = sum(1 for r in results if r.created)
    click.echo(f"posted {created} entr{'y' if created == 1 else 'ies'}; {len(results) - created} already present.")


@main.command()
@click.argument("entry_id", type=int)
@click.option("--reason", required=True, help="Why the entry is reversed (kept in the journal).")
@click.option("--date", "when", help="Value date of the reversal (default: the original's date).")
@pass_context
def reverse(obj: Context, entry_id: int, reason: str, when: str | None) -> None:
    """Reverse an entry with its mirror image, linked to it; at most once.

    \b
    Example:
      jiebang reverse 42 --reason "voucher keyed twice" --date 2025-06-30
    """
    from ledger.journal import reverse as reverse_entry

    with obj.write() as session:
        posted = reverse_entry(session, entry_id, reason=reason, actor=obj.user, value_date=_date_or_none(when))
    click.echo(f"entry {posted.entry_id} reverses entry {entry_id}.")


@main.command()
@as_of_option
@click.option("--book", type=click.Choice(["fiscal", "memo"]), help="Only this book.")
@click.option("--account", "prefix", help="Only this account and its sub-accounts, e.g. Assets:Fiscal.")
@click.option("--project", help="Only this project's accounts.")
@click.option("--lane", help="Only this solver lane's accounts.")
@format_option
@pass_context
def balances(obj: Context, as_of, book, prefix, project, lane, fmt) -> None:
    """Account balances as of a date (debits positive, credits negative).

    \b
    Example:
      jiebang balances --as-of 2025-12-31 --book fiscal
      jiebang balances --account Assets:Fiscal:Advances --format json
    """
    from ledger.balances import account_balances
    from ledger.money import format_fen

    with obj.read() as session:
        rows = account_balances(
            session, as_of=_date_or_none(as_of), book=book, prefix=prefix, project_code=project, lane=lane
        )
    emit(
        [{"account": r.account, "book": r.book, "project": r.project_code, "lane": r.lane, "balance": format_fen(r.balance_fen)} for r in rows],
        ["account", "book", "project", "lane", "balance"],
        fmt,
        right=("balance",),
    )


@main.command()
@as_of_option
@click.option("--since", type=click.DateTime(["%Y-%m-%d"]), help="Only entries on or after this date.")
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
    from ledger.balances import journal_rows
    from ledger.money import format_fen

    with obj.read() as session:
        rows = [
            {
                "entry": r.id,
                "date": r.value_date.isoformat(),
                "kind": r.kind,
                "project": r.project_code,
                "voucher": r.voucher,
                "account": r.account,
                "book": r.book,
                "amount": format_fen(r.amount_fen),
                "category": r.budget_category,
                "source": r.fund_source,
                "memo": r.memo,
            }
            for r in journal_rows(
                session, as_of=_date_or_none(as_of), since=_date_or_none(since), project_code=project, kind=kind, limit=limit
            )
        ]
    emit(rows, ["entry", "date", "kind", "project", "voucher", "account", "book", "amount", "category", "source", "memo"], fmt, right=("amount",))


@main.command()
@format_option
@pass_context
def verify(obj: Context, fmt: str) -> None:
    """Recompute the hash chain and every entry's per-book balance.

    Prints OK with the chain head, or names the first entry that fails (exit 1).

    \b
    Example:
      jiebang verify
    """
    from ledger.progress import progress_bar
    from ledger.verify import entry_count, verify as verify_ledger

    with obj.read() as session:
        total = entry_count(session)
        with progress_bar(total, "verifying", enabled=total >= 50_000) as advance:
            result = verify_ledger(session, progress=advance)
    if fmt == "json":
        click.echo(json.dumps({
            "ok": result.ok, "entries": result.entries, "head_id": result.head_id, "head_hash": result.head_hash,
            "first_bad_entry": result.first_bad_entry, "problem": result.problem,
        }, ensure_ascii=False))
    elif result.ok:
        click.echo(f"OK: {result.entries} entries verified; chain head {result.head_id} {result.head_hash}")
    else:
        click.echo(f"FAILED at entry {result.first_bad_entry}: {result.problem}", err=fmt != "json")
    if not result.ok:
        sys.exit(1)


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
    from ledger.export import export_beancount

    _check_writable(out_dir)
    with obj.read() as session:
        paths = export_beancount(session, out_dir, as_of=_date_or_none(as_of), project_code=project)
    for path in paths:
        click.echo(f"wrote {path}")


def _check_writable(out_dir: Path) -> None:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise Refusal("output_directory_must_be_writable", f"cannot create {out_dir}: {exc.strerror}.") from None
    if not os.access(out_dir, os.W_OK):
        raise Refusal("output_directory_must_be_writable", f"cannot write into {out_dir}; choose another --out.")


if __name__ == "__main__":  # pragma: no cover
    main()
