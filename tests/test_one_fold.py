"""One fold: the services, the audit pack, the status report and the forecast read a project's
state through ``ledger.programme.fold.fold_project`` and agree on every demo project at every date:
tranche statuses, released tranches, eliminated lanes, termination and closure."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from ledger.core.errors import Refusal
from ledger.programme import close, load_project, tranche_views
from ledger.programme.models import Project
from reports.audit import load_scope
from reports.forecast import read_plans
from reports.status import status_report

DATES = [dt.date(2024, 12, 31), dt.date(2025, 6, 30), dt.date(2025, 12, 31), dt.date(2026, 6, 30),
         dt.date(2026, 12, 31), dt.date(2027, 3, 31), dt.date(2028, 12, 31)]


def test_services_audit_status_and_forecast_agree_on_every_demo_project(demo_engine):
    seen_terminated = seen_closed = seen_eliminated = 0
    with Session(demo_engine) as s, s.begin():
        projects = s.scalars(select(Project).order_by(Project.code)).all()
        # Close every accepted project the rules let close, inside this transaction (rolled
        # back at the end: the demo ledger is shared), so closure is compared too.
        for project in projects:
            try:
                with s.begin_nested():
                    close(s, project=project.code, date=dt.date(2027, 3, 31), reference="结题测试", voucher=None,
                          actor="officer-test")
            except Refusal:
                pass
        assert len(projects) == 9
        for as_of in DATES:
            plans = {p.code: p for p in read_plans(s, as_of)}
            for project in projects:
                if project.approval_date > as_of:
                    assert project.code not in plans
                    continue
                state = load_project(s, project.code, as_of=as_of)
                statuses = {(v.lane_no, v.seq): v.status for v in tranche_views(s, state)}

                audit = load_scope(s, project.code, as_of).state
                assert {(v.lane_no, v.seq): v.status for v in tranche_views(s, audit)} == statuses
                for attribute in ("terminated_on", "closed_on", "released_tranches", "eliminated", "extension_months",
                                  "conditions"):
                    assert getattr(audit, attribute) == getattr(state, attribute), (project.code, as_of, attribute)

                plan = plans[project.code]
                pending = sorted(k for k, v in statuses.items() if v in ("planned", "eligible"))
                assert sorted((lane.lane_no, t.seq) for lane in plan.lanes for t in lane.tranches) == pending
                assert plan.terminated == (state.terminated_on is not None)
                assert plan.end_date == state.end_date

                report = status_report(s, project.demand_uscc, as_of=as_of)
                shown = next(p for p in report.projects if p.code == project.code)
                expected = ("terminated" if state.terminated_on else
                            "accepted" if "acceptance_passed" in state.conditions.get(None, set()) else "active")
                assert shown.status == expected
                assert shown.end_date == state.end_date
                for lane in shown.lanes:
                    n = int(lane.lane[1:])
                    assert (lane.status == "eliminated") == (n in state.eliminated)
                    nxt = [k for k in pending if k[0] == n]
                    assert (lane.next_tranche.seq if lane.next_tranche else None) == (nxt[0][1] if nxt else None)

                seen_terminated += state.terminated_on is not None
                seen_closed += state.closed_on is not None
                seen_eliminated += bool(state.eliminated)
        s.rollback()
    # The demo has a terminated project and an eliminated 赛马 lane, and a project was closed
    # above: the comparison covered each kind of end.
    assert seen_terminated and seen_closed and seen_eliminated
