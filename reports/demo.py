"""The demo's outputs: verification, the beancount books, balances, status reports, audit
packs and the forecast, written from the ledger ``ledger.programme.demo`` recorded, read-only.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ledger.core.journal import chain_head
from ledger.core.money import format_fen
from ledger.programme.demo import PARTIES, STATUS_PARTIES, DemoLedger


@dataclass
class DemoResult:
    """What the demo built and wrote; ``files`` lists every file, the ledger first."""

    out_dir: Path
    db_path: Path
    events: int
    entries: int
    projects: dict[str, str]
    verify_ok: bool
    verify_line: str
    head_id: int
    head_hash: str
    bean_check: list[str]
    status_parties: list[tuple[str, str]]
    as_of: dt.date
    files: list[Path]
    seconds: float


def write_demo(ledger: DemoLedger, *, font_path: str | Path | None = None) -> DemoResult:
    """Verify the demo ledger and write every report from it, reading only; the PDFs in the
    font the user named (``--font``), else the packaged one."""
    from ledger.core.db import make_engine, read_only

    engine = make_engine(f"sqlite:///{ledger.db_path}")
    try:
        with Session(read_only(engine)) as session, session.begin():
            result = _write_outputs(session, ledger.out_dir, ledger.stories, font_path)
    finally:
        engine.dispose()
    result.update(out_dir=ledger.out_dir, db_path=ledger.db_path, events=ledger.events,
                  seconds=time.perf_counter() - ledger.started)
    result["files"].insert(0, ledger.db_path)
    return DemoResult(**result)


# One project of each city gets its audit pack: the Jiangmen 揭榜挂帅 story and the Urumqi
# story with cash, equity and both subsidy releases.
AUDIT_PROJECTS = ("JM2024-001", "UR2024-001")


def _write_outputs(session: Session, out_dir: Path, stories: dict[str, str], font_path: str | Path | None = None) -> dict:
    from ledger.core.export import export_beancount
    from ledger.core.models import JournalEntry
    from ledger.programme import project_balances
    from ledger.programme.projection import verify_ledger as verify
    from reports.status import default_as_of, status_report, write_report_files

    checked = verify(session)
    head_id, head_hash = chain_head(session)
    verify_line = (
        f"OK: {checked.entries} entries verified; chain head {checked.head_id} {checked.head_hash}"
        if checked.ok else f"FAILED at entry {checked.first_bad_entry}: {checked.problem}"
    )
    files: list[Path] = list(export_beancount(session, out_dir / "beancount"))
    bean_errors = _bean_check(files)

    balances_dir = out_dir / "balances"
    balances_dir.mkdir(exist_ok=True)
    for code in sorted(stories):
        data = {key: format_fen(value) for key, value in project_balances(session, code).items()}
        path = balances_dir / f"{code}.json"
        path.write_text(json.dumps(data, ensure_ascii=False, indent=2) + "\n", encoding="utf-8", newline="\n")
        files.append(path)

    reports_dir = out_dir / "reports"
    reports_dir.mkdir(exist_ok=True)
    as_of = default_as_of(session)
    names = {p.key: p for p in PARTIES}
    for key in STATUS_PARTIES:
        files += write_report_files(status_report(session, names[key].uscc, as_of=as_of), reports_dir)
    from reports.audit import write_audit_pack
    from reports.forecast_render import write_demo_forecast

    for code in AUDIT_PROJECTS:
        files += write_audit_pack(session, code, reports_dir, font_path=font_path)
    files += write_demo_forecast(session, reports_dir, as_of=as_of, back_test_as_of=dt.date(2025, 6, 30), font_path=font_path)
    return {
        "entries": session.execute(select(func.count()).select_from(JournalEntry)).scalar_one(),
        "projects": dict(sorted(stories.items())),
        "verify_ok": checked.ok,
        "verify_line": verify_line,
        "head_id": head_id,
        "head_hash": head_hash,
        "bean_check": bean_errors,
        "status_parties": [(names[k].uscc, names[k].name) for k in STATUS_PARTIES],
        "as_of": as_of,
        "files": files,
    }


def _bean_check(paths: list[Path]) -> list[str]:
    """Load each exported book with beancount (what bean-check does); return its error messages."""
    from beancount import loader

    problems = []
    for path in paths:
        _entries, errors, _options = loader.load_file(str(path))
        problems += [f"{path.name}: {getattr(e, 'message', e)}" for e in errors]
    return problems


# --- the summary ------------------------------------------------------------------------


def summary_lines(result: DemoResult, *, shown: Callable[[Path], str] | None = None) -> list[str]:
    """What the demo wrote, the verification, and the next commands to try."""
    shown = shown or _relative
    db = shown(result.db_path)
    parties = " and ".join(f"{name} ({uscc})" for uscc, name in result.status_parties)
    headline = (
        f"jiebang demo: {len(result.projects)} projects in Jiangmen and Urumqi, {len(PARTIES)} parties, "
        f"{result.events} events, {result.entries} journal entries; built in {result.seconds:.1f} s."
    )
    lines = [
        headline,
        "",
        "projects:",
        *(f"  {code}  {story}" for code, story in result.projects.items()),
        "",
        f"verify: {result.verify_line}",
        "bean-check: " + ("no errors in the exported books" if not result.bean_check else "; ".join(result.bean_check)),
        "",
        "wrote:",
        *(f"  {shown(path)}" for path in result.files),
        "",
        f"status reports are as of {result.as_of} (the latest entry's date) for {parties}.",
        "",
        "next commands to try:",
        f"  jiebang --db {db} projects",
        f"  jiebang --db {db} report audit --project JM2025-004 --out audit-out",
        f"  jiebang --db {db} report forecast --as-of 2027-03-31 --from 2027 --years 4",
        f"  jiebang --db {db} project show JM2024-002",
        f"  jiebang --db {db} balances --project JM2025-004",
        f"  jiebang --db {db} balances --project UR2025-003 --lane L3 --format json",
        f"  jiebang --db {db} journal --project JM2025-004",
        f"  jiebang --db {db} parties",
        f"  jiebang --db {db} report status --party {result.status_parties[0][0]}",
        f"  jiebang --db {db} report status --party {result.status_parties[1][0]} --as-of 2025-12-31 --format json",
        f"  jiebang --db {db} verify",
        f"  bean-check {shown(result.files[1])}",
    ]
    return lines


def _relative(path: Path) -> str:
    try:
        return os.path.relpath(path)
    except ValueError:  # another drive on Windows
        return str(path)
