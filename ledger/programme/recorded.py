"""Facts auditors read (issue 14 point 9): the PI (项目负责人) and assessment indicators
(考核指标) recorded at approval and locked after it, the Urumqi 业主责任书 and 项目经理人,
who ran the acceptance, the audit firm and its fee; and the change event that alone may
alter the locked facts, with the bureau's approval reference.

Every fact rides in the hashed payload of its event (``journal_entries.facts``) and is read
back by the one fold (``ledger.programme.fold.recorded_facts``).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from funding_rules import checks
from ledger.core.errors import Refusal
from ledger.core.journal import EntryDraft, Posted
from ledger.core.models import JournalEntry
from ledger.core.money import format_fen
from ledger.programme.common import _post_event, _voucher, event_facts, idempotent, lock
from ledger.programme.fold import FactEvent, RecordedFacts, decode, recorded_facts
from ledger.programme.models import ProjectEvent
from ledger.programme.state import load_project

TEXT_CHARS_MAX = 200  # a name, a firm or a document reference; an indicator may be longer
INDICATOR_CHARS_MAX = 1_000
INDICATORS_MAX = 50


def _text(value: str | None, what: str, chars_max: int = TEXT_CHARS_MAX) -> str | None:
    """A recorded text as given, stripped; None when empty; refused when too long."""
    text = (value or "").strip()
    if len(text) > chars_max:
        raise Refusal("recorded_fact_must_fit",
                      f"{what} is {len(text)} characters, over the {chars_max} the ledger keeps; shorten it.")
    return text or None


def _indicators(values) -> list[str]:
    found = [_text(v, "assessment indicator (考核指标)", INDICATOR_CHARS_MAX) for v in values or ()]
    found = [v for v in found if v]
    if len(found) > INDICATORS_MAX:
        raise Refusal("recorded_fact_must_fit",
                      f"{len(found)} assessment indicators (考核指标) given, over the {INDICATORS_MAX} the ledger keeps; "
                      "group them.")
    return found


def _owner_letter(reference: str | None, date: dt.date | None) -> dict | None:
    reference = _text(reference, "the 业主责任书 reference")
    if reference is None and date is not None:
        raise Refusal("owner_letter_must_have_reference",
                      f"an 业主责任书 date {date} was given without its reference (S2 三(四): 需求方作为业主…签订业主责任书); "
                      "give --owner-letter too.")
    return None if reference is None else {"reference": reference, "date": date.isoformat() if date else None}


def approval_payload(*, pi, indicators, project_manager, owner_letter, owner_letter_date, exceptions: list[dict]) -> dict:
    """The approval's recorded facts, as keys of its event payload (absent when not given)."""
    found = {
        "pi": _text(pi, "the PI (项目负责人)"),
        "indicators": _indicators(indicators),
        "project_manager": _text(project_manager, "the 项目经理人"),
        "owner_letter": _owner_letter(owner_letter, owner_letter_date),
        "exceptions": exceptions,
    }
    return {k: v for k, v in found.items() if v}


STAGE_FACTS = {"audit_firm": "audit_report", "audit_fee_fen": "audit_report", "accepted_by": "acceptance"}
STAGE_FACT_OPTIONS = {"audit_firm": "--audit-firm", "audit_fee_fen": "--audit-fee", "accepted_by": "--accepted-by"}


def stage_payload(stage: str, *, audit_firm: str | None = None, audit_fee_fen: int | None = None,
                  accepted_by: str | None = None) -> dict:
    """The stage's recorded facts: the 会计师事务所 and its fee with an audit report, the
    organisation that ran the 验收 with an acceptance; refused on any other stage."""
    found = {"audit_firm": _text(audit_firm, "the audit firm (会计师事务所)"), "audit_fee_fen": audit_fee_fen,
             "accepted_by": _text(accepted_by, "the acceptance organiser (验收组织单位)")}
    found = {k: v for k, v in found.items() if v is not None}
    for name in found:
        if STAGE_FACTS[name] != stage:
            raise Refusal("stage_fact_must_fit_the_stage",
                          f"{STAGE_FACT_OPTIONS[name]} is recorded with the {STAGE_FACTS[name]} stage, not {stage}; "
                          f"drop it, or record it with --stage {STAGE_FACTS[name]}.")
    if audit_fee_fen is not None and audit_fee_fen < 0:
        raise Refusal("audit_fee_must_not_be_negative",
                      f"audit fee {format_fen(audit_fee_fen)} is negative; give the fee in the engagement letter.")
    return found


def project_facts(session: Session, code: str, as_of: dt.date | None = None) -> RecordedFacts:
    """The project's recorded facts as of ``as_of`` (all when None), reversed events left out."""
    reversed_ids = select(JournalEntry.reverses_id).where(JournalEntry.reverses_id.is_not(None))
    if as_of is not None:
        reversed_ids = reversed_ids.where(JournalEntry.value_date <= as_of)
    query = (select(ProjectEvent.entry_id, ProjectEvent.value_date, ProjectEvent.kind, ProjectEvent.stage, ProjectEvent.passed,
                    ProjectEvent.reference, ProjectEvent.payload)
             .where(ProjectEvent.project_code == code, ProjectEvent.entry_id.not_in(reversed_ids))
             .order_by(ProjectEvent.entry_id))
    if as_of is not None:
        query = query.where(ProjectEvent.value_date <= as_of)
    return recorded_facts(FactEvent(r.entry_id, r.value_date, r.kind, r.stage, r.passed, r.reference, decode(r.payload) or {})
                          for r in session.execute(query))


@idempotent("project_change")
def change_project(
    session: Session,
    *,
    project: str,
    date: dt.date,
    reference: str,
    reason: str,
    voucher: str | None,
    actor: str,
    pi: str | None = None,
    indicators: tuple[str, ...] | list[str] = (),
    project_manager: str | None = None,
    owner_letter: str | None = None,
    owner_letter_date: dt.date | None = None,
) -> Posted:
    """Change the locked facts of an approved project (PI, assessment indicators, 项目经理人,
    业主责任书), with the bureau's approval reference and a reason, as an event of its own."""
    lock(session)
    state = load_project(session, project)
    code = state.project.code
    current = project_facts(session, code)
    given = approval_payload(pi=pi, indicators=indicators, project_manager=project_manager, owner_letter=owner_letter,
                             owner_letter_date=owner_letter_date, exceptions=[])
    changed = {k: v for k, v in given.items() if (tuple(v) if k == "indicators" else v) != getattr(current, k)}
    facts = checks.ProjectChangeFacts(event_facts(state, "project change", date), (reference or "").strip(), (reason or "").strip(),
                                      tuple(changed), tuple(given))
    checks.enforce(checks.PROJECT_CHANGE_CHECKS, facts, state.rules)
    return _post_event(
        session,
        EntryDraft(
            value_date=date, kind="project_change", postings=(), project_code=code,
            voucher=_voucher(voucher, f"CHG-{code}-{date.isoformat()}"),
            memo="项目变更 " + "、".join(CHANGE_ZH[k] for k in changed), actor=actor, rules_version=state.rules.version,
            trace={"changed": sorted(changed), "reference": facts.reference}, fact=True,
        ),
        [],
        {"project_code": code, "reference": facts.reference, "payload": changed | {"reason": facts.reason}},
    )


CHANGE_ZH = {"pi": "项目负责人", "indicators": "考核指标", "project_manager": "项目经理人", "owner_letter": "业主责任书"}
