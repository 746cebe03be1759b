"""The web portal over HTTP (FastAPI's TestClient), on SQLite and PostgreSQL: every route for
every role, scoping (another party's project or lane is 404, and on PostgreSQL the database
itself limits an enterprise's rows), downloads byte-identical to the CLI, sign-in, invitations,
throttling, revocation, the append-only log, security headers, errors and escaping."""

from __future__ import annotations

import datetime as dt
import json
import re

import pytest
from conftest import Cli
from portal_fixtures import (
    AUDITED,
    DEMAND,
    DEMAND_PROJECTS,
    PASSWORD,
    SOLVER,
    SOLVER_PROJECTS,
    accept,
    build_world,
    csrf_of,
    drop_world,
)
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from ledger.core.db import read_only
from ledger.programme.models import Lane, Party, PortalInvite, Project
from portal import store
from portal.scope import scoped_session, visible_projects

ALL_PROJECTS = ["JM2024-001", "JM2024-002", "JM2025-003", "JM2025-004", "JM2026-005",
                "UR2024-001", "UR2025-002", "UR2025-003", "UR2026-004"]


@pytest.fixture(scope="module", autouse=True)
def _quick_argon2():
    """argon2id with small costs for these tests (each hash is real; 0.2 s each at the
    production costs, which test_production_passwords_use_argon2id_defaults checks)."""
    from argon2 import PasswordHasher

    production, store.HASHER = store.HASHER, PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1)
    yield production
    store.HASHER = production


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def world(request, tmp_path_factory, _quick_argon2):
    w = build_world(request, tmp_path_factory)
    yield w
    drop_world(w)


def test_production_passwords_use_argon2id_defaults(_quick_argon2):
    from argon2 import Type

    production = _quick_argon2  # the module's own hasher, set aside by the fixture
    assert production.type is Type.ID and production.memory_cost >= 65536 and production.time_cost >= 3
    assert production.hash("x" * 12).startswith("$argon2id$v=19$m=65536,t=3,p=4$")


def viewer_of(world, login: str):
    with Session(read_only(world.engine)) as session:
        user = session.scalars(select(store.PortalUser).where(store.PortalUser.login == login)).one()
        return store.viewer(session, user.id, user.epoch)


# --- every route, every role ------------------------------------------------------------------

HTML_PAGES = {
    # path -> {role: status}; 303 is the redirect of "/" to the role's home.
    "/": {"demand": 303, "solver": 303, "auditor": 303, "bureau": 303},
    "/projects": {"demand": 200, "solver": 200, "auditor": 404, "bureau": 404},
    "/projects/JM2024-001": {"demand": 200, "solver": 404, "auditor": 404, "bureau": 404},
    "/projects/JM2024-001/lanes/L1": {"demand": 200, "solver": 404, "auditor": 404, "bureau": 404},
    "/projects/JM2024-002": {"demand": 404, "solver": 200, "auditor": 404, "bureau": 404},
    "/projects/JM2024-002/lanes/L2": {"demand": 404, "solver": 200, "auditor": 404, "bureau": 404},
    "/projects/JM2024-002/lanes/L1": {"demand": 404, "solver": 404, "auditor": 404, "bureau": 404},
    "/projects/JM2024-001/lanes/L9": {"demand": 404, "solver": 404, "auditor": 404, "bureau": 404},
    "/projects/NOPE-1": {"demand": 404, "solver": 404, "auditor": 404, "bureau": 404},
    "/downloads/status.xlsx": {"demand": 200, "solver": 200, "auditor": 404, "bureau": 404},
    "/downloads/status.json": {"demand": 200, "solver": 200, "auditor": 404, "bureau": 404},
    "/downloads/status.exe": {"demand": 404, "solver": 404, "auditor": 404, "bureau": 404},
    "/audit": {"demand": 404, "solver": 404, "auditor": 200, "bureau": 404},
    "/audit/JM2025-004": {"demand": 404, "solver": 404, "auditor": 200, "bureau": 404},
    "/audit/JM2025-004?section=7&as_of=2026-06-30": {"demand": 404, "solver": 404, "auditor": 200, "bureau": 404},
    "/audit/JM2025-004?section=10": {"demand": 404, "solver": 404, "auditor": 404, "bureau": 404},
    "/audit/JM2025-003": {"demand": 404, "solver": 404, "auditor": 404, "bureau": 404},
    "/audit/JM2025-004/verify": {"demand": 404, "solver": 404, "auditor": 200, "bureau": 404},
    "/audit/JM2025-003/verify": {"demand": 404, "solver": 404, "auditor": 404, "bureau": 404},
    "/audit/JM2025-003/files/audit-JM2025-003-2027-05-31.pdf": {"demand": 404, "solver": 404, "auditor": 404, "bureau": 404},
    "/dashboard": {"demand": 404, "solver": 404, "auditor": 404, "bureau": 200},
    "/api/v1/me": {"demand": 200, "solver": 200, "auditor": 200, "bureau": 200},
    "/api/v1/status": {"demand": 200, "solver": 200, "auditor": 404, "bureau": 404},
    "/api/v1/projects/JM2026-005": {"demand": 200, "solver": 404, "auditor": 404, "bureau": 404},
    "/api/v1/projects/UR2025-003?lane=L1": {"demand": 404, "solver": 200, "auditor": 404, "bureau": 404},
    "/api/v1/projects/UR2025-003?lane=L2": {"demand": 404, "solver": 404, "auditor": 404, "bureau": 404},
    "/api/v1/audit": {"demand": 404, "solver": 404, "auditor": 200, "bureau": 404},
    "/api/v1/audit/JM2024-001": {"demand": 404, "solver": 404, "auditor": 200, "bureau": 404},
    "/api/v1/audit/UR2024-001": {"demand": 404, "solver": 404, "auditor": 404, "bureau": 404},
    "/api/v1/audit/JM2024-001/verify": {"demand": 404, "solver": 404, "auditor": 200, "bureau": 404},
    "/api/v1/dashboard": {"demand": 404, "solver": 404, "auditor": 404, "bureau": 200},
    "/api/openapi.json": {"demand": 200, "solver": 200, "auditor": 200, "bureau": 200},
    "/static/portal.css": {"demand": 200, "solver": 200, "auditor": 200, "bureau": 200},
    "/fonts/cjk.ttf": {"demand": 200, "solver": 200, "auditor": 200, "bureau": 200},
}


def test_every_route_answers_each_role_as_its_scope_says(world):
    for path, expected in HTML_PAGES.items():
        for role, status in expected.items():
            answer = world.clients[role].get(path, follow_redirects=False)
            assert answer.status_code == status, (world.backend, role, path, answer.status_code, answer.text[:300])
            if status == 404:
                # Never a partial page: the one error page (or JSON), nothing of the project.
                assert "JM2025-003" not in answer.text and "Micro-LED" not in answer.text
                assert "未找到" in answer.text


def test_signed_out_pages_go_to_sign_in_and_the_api_says_401(world):
    from fastapi.testclient import TestClient

    anonymous = TestClient(world.app, raise_server_exceptions=False)
    for path in HTML_PAGES:
        if path.startswith(("/static", "/api/openapi", "/fonts")):
            continue
        answer = anonymous.get(path, follow_redirects=False)
        if path.startswith("/api/"):
            assert answer.status_code == 401 and answer.json()["error"] == "请先登录。", path
        else:
            assert answer.status_code == 303 and answer.headers["location"] == "/login", path
    assert anonymous.get("/login").status_code == 200
    forged = TestClient(world.app, raise_server_exceptions=False, cookies={"jb_session": "eyJ1IjoxLCJlIjoxfQ.forged.sig"})
    assert forged.get("/api/v1/me").status_code == 401


def test_the_packaged_font_is_served_for_browsers_without_a_chinese_font(world):
    from reports.pdf import PACKAGED_FONT

    answer = world.clients["demand"].get("/fonts/cjk.ttf")
    assert answer.content == PACKAGED_FONT.read_bytes() and answer.headers["content-type"] == "font/ttf"
    assert "max-age" in answer.headers["cache-control"]
    css = world.clients["demand"].get("/static/portal.css").text
    assert 'url("/fonts/cjk.ttf")' in css and "http" not in css  # nothing from elsewhere


def test_the_home_redirect_goes_to_each_roles_page(world):
    homes = {"demand": "/projects", "solver": "/projects", "auditor": "/audit", "bureau": "/dashboard"}
    for role, home in homes.items():
        assert world.clients[role].get("/", follow_redirects=False).headers["location"] == home


def test_the_enterprise_sees_exactly_its_projects(world):
    demand = world.clients["demand"].get("/api/v1/status").json()
    assert [p["code"] for p in demand["projects"]] == DEMAND_PROJECTS
    solver = world.clients["solver"].get("/api/v1/status").json()
    assert [p["code"] for p in solver["projects"]] == SOLVER_PROJECTS
    # A solver sees only its own lane of a 赛马 project.
    assert [lane["lane"] for lane in solver["projects"][0]["lanes"]] == ["L2"]
    html = world.clients["solver"].get("/projects/JM2024-002").text
    assert "车道 L2" in html and "车道 L1" not in html and "车道 L3" not in html


@pytest.mark.parametrize("code", DEMAND_PROJECTS)
def test_the_project_numbers_equal_jiebang_balances(world, code):
    page = world.clients["demand"].get(f"/api/v1/projects/{code}").json()
    cli = Cli(world.url)
    totals = json.loads(cli("balances", "--project", code, "--as-of", page["as_of"], "--format", "json").output)
    assert page["totals"] == totals
    for lane in page["lanes"]:
        expected = json.loads(cli("balances", "--project", code, "--lane", lane["lane"], "--as-of", page["as_of"],
                                  "--format", "json").output)
        assert lane["balances"] == expected
    html = world.clients["demand"].get(f"/projects/{code}").text
    for key, value in totals.items():
        grouped = f"{int(value.split('.')[0].lstrip('-')):,}.{value.split('.')[1]}"
        assert f'data-key="{key}">{"-" if value.startswith("-") else ""}{grouped}<' in html, key
    # 到位率 as the status report computes it.
    assert page["project"]["self_funding"]["arrival_rate"] in html
    assert "<svg" in html and "自筹资金：承诺与到位" in html


def test_the_tranche_timeline_says_what_the_next_tranche_waits_on(world):
    page = world.clients["demand"].get("/api/v1/projects/JM2026-005").json()
    lane = page["lanes"][0]
    assert lane["timeline"], "tranches are listed"
    assert {t["status"] for t in lane["timeline"]} <= {"planned", "eligible", "released", "cancelled"}
    if lane["next_tranche"] is not None:
        assert lane["next_waits"].startswith(("尚待：", "各项条件均已满足"))


def test_status_downloads_are_byte_identical_to_report_status(world, tmp_path):
    """On PostgreSQL the portal reads under the enterprise's login, so its file equals `report
    status` run under that login (its ledger line counts the entries row-level security shows)."""
    from sqlalchemy.engine import make_url

    for role, party in (("demand", DEMAND), ("solver", SOLVER)):
        url = world.url
        if world.backend == "postgresql":
            url = make_url(world.url).set(username=world.logins[role]).render_as_string(hide_password=False)
        cli = Cli(url)
        out = tmp_path / role
        cli("report", "status", "--party", party, "--out", str(out))
        for suffix in ("xlsx", "json"):
            (expected,) = out.glob(f"status-{party}-*.{suffix}")
            answer = world.clients[role].get(f"/downloads/status.{suffix}")
            assert answer.status_code == 200
            assert answer.content == expected.read_bytes(), (role, suffix)
            assert expected.name in answer.headers["content-disposition"]


def test_audit_downloads_are_byte_identical_to_report_audit(world, tmp_path):
    code, as_of = "JM2025-004", "2026-06-30"
    Cli(world.url)("report", "audit", "--project", code, "--as-of", as_of, "--out", str(tmp_path))
    page = world.clients["auditor"].get(f"/api/v1/audit/{code}?as_of={as_of}").json()
    assert page["as_of"] == as_of and len(page["sections"]) == 9
    html = world.clients["auditor"].get(f"/audit/{code}?as_of={as_of}").text
    names = re.findall(rf'href="/audit/{code}/files/([^"?]+)\?as_of={as_of}"', html)
    assert len(names) == 4
    for name in names:
        answer = world.clients["auditor"].get(f"/audit/{code}/files/{name}?as_of={as_of}")
        assert answer.status_code == 200, name
        assert answer.content == (tmp_path / name).read_bytes(), name
    assert world.clients["auditor"].get(f"/audit/{code}/files/../../etc/passwd?as_of={as_of}").status_code == 404
    with Session(world.engine) as session:
        log = [r for r in store.log_rows(session) if r["event"] == "download" and r["login"] == "信达会计师事务所"]
    assert {r["detail"] for r in log} >= {n.rsplit("/", 1)[-1] for n in names}


def test_audit_sections_and_verification_show_the_chain(world):
    page = world.clients["auditor"].get("/api/v1/audit/JM2024-001").json()
    assert [s["heading"][:2] for s in page["sections"]] == ["一、", "二、", "三、", "四、", "五、", "六、", "七、", "八、", "九、"]
    assert page["integrity"]["verify_ok"] is True and len(page["integrity"]["anchor_hash"]) == 64
    verify = world.clients["auditor"].get("/api/v1/audit/JM2024-001/verify").json()
    assert verify["ok"] is True and verify["head_entry"] == verify["chain_head_entry"]
    assert verify["head_hash"] == verify["chain_head_hash"]
    html = world.clients["auditor"].get("/audit/JM2024-001?section=8").text
    assert "八、科目余额表" in html


def test_the_bureau_dashboard(world):
    data = world.clients["bureau"].get("/api/v1/dashboard").json()
    assert [b["year"] for b in data["budget"]] == [2024, 2025, 2026]
    assert sum(r["count"] for r in data["by_city"]) == len(ALL_PROJECTS)
    assert {r["key"] for r in data["by_mode"]} == {"jbgs", "saima"}
    assert [p["code"] for p in data["projects"]] == ALL_PROJECTS
    assert any(r["year"] for r in data["forecast"]["summary"])
    from ledger.programme.due import due_items

    with Session(read_only(world.engine)) as session:
        expected = due_items(session, dt.date.fromisoformat(data["as_of"]))
    assert [(d["kind"], d["project"], d["lane"], d["command"]) for d in data["due"]] == [
        (d.kind, d.project_code, d.lane, d.command) for d in expected]
    assert expected, "the demo ledger has something due"
    html = world.clients["bureau"].get("/dashboard").text
    assert 'class="forecast"' in html and "P95" in html
    assert html.count("<tr>", html.index('id="due"'), html.index("项目清单")) == len(expected) + 1


# --- the database scopes, not only the app -------------------------------------------------


def _unfiltered_scope(world, viewer, monkeypatch) -> list[str]:
    """The scoping function replaced by the unfiltered query (for the rest of the test, the
    routes too): what it returns in the viewer's scoped session."""
    import portal.scope

    monkeypatch.setattr(portal.scope, "visible_projects", lambda session, viewer: list(session.scalars(select(Project.code))))
    with scoped_session(world.engine, viewer) as session:
        return portal.scope.visible_projects(session, viewer)


def test_a_query_without_the_apps_filter_still_sees_only_the_partys_rows(world, monkeypatch):
    """Remove the app's own filter for one query: on PostgreSQL the request's role (SET LOCAL
    ROLE, row-level security) still limits it to the party's rows; on SQLite the one scoping
    function is the only guard, which this shows too."""
    demand = viewer_of(world, DEMAND)
    with scoped_session(world.engine, demand) as session:
        codes = sorted(session.scalars(select(Project.code)))  # no filter
        lanes = sorted(set(session.scalars(select(Lane.project_code))))
        parties = set(session.scalars(select(Party.uscc)))
        entries = session.execute(text("SELECT count(DISTINCT project_code) FROM journal_entries WHERE project_code IS NOT NULL")).scalar_one()
    if world.backend == "postgresql":
        assert codes == DEMAND_PROJECTS and lanes == DEMAND_PROJECTS and entries == len(DEMAND_PROJECTS)
        assert DEMAND in parties and "91650106MA7N1A214C" not in parties
    else:
        assert codes == ALL_PROJECTS  # SQLite: only visible_projects scopes
    assert (_unfiltered_scope(world, demand, monkeypatch) == DEMAND_PROJECTS) == (world.backend == "postgresql")
    answer = world.clients["demand"].get("/api/v1/projects/UR2024-001")
    assert answer.status_code == 404


def test_an_auditors_query_without_the_apps_filter_sees_only_its_projects(world, monkeypatch):
    """On PostgreSQL an auditor's requests run as jiebang_portal_auditor: row-level security
    admits the assigned projects' rows, the entries that post to their accounts (another
    project's release offset against an audited clawback) and what those entries name, and no
    other project's rows. On SQLite the one scoping function is the only guard."""
    from sqlalchemy import func

    from ledger.core.models import Account, JournalEntry, Posting
    from ledger.programme.models import Tranche

    auditor = viewer_of(world, "信达会计师事务所")
    with scoped_session(world.engine, auditor) as session:
        codes = sorted(session.scalars(select(Project.code)))  # no filter
        lanes = set(session.scalars(select(Lane.project_code)))
        tranches = set(session.scalars(select(Tranche.project_code)))
        entries = set(session.scalars(select(JournalEntry.id)))
        accounts = set(session.scalars(select(Account.id)))
        postings = session.scalar(select(func.count()).select_from(Posting))
        parties = set(session.scalars(select(Party.uscc)))
    with Session(read_only(world.engine)) as full:
        own = set(full.scalars(select(JournalEntry.id).where(JournalEntry.project_code.in_(AUDITED))))
        touching = set(full.scalars(select(Posting.entry_id).join(Account, Account.id == Posting.account_id)
                                    .where(Account.project_code.in_(AUDITED))))
        named = set(full.scalars(select(Account.id).where(Account.project_code.in_(AUDITED)))) | set(
            full.scalars(select(Posting.account_id).where(Posting.entry_id.in_(own | touching))))
        audited_parties = set(full.scalars(select(Project.demand_uscc).where(Project.code.in_(AUDITED)))) | set(
            full.scalars(select(Lane.solver_uscc).where(Lane.project_code.in_(AUDITED))))
        every_entry = full.scalar(select(func.count()).select_from(JournalEntry))
        their_postings = full.scalar(select(func.count()).select_from(Posting).where(Posting.entry_id.in_(own | touching)))
    if world.backend == "postgresql":
        assert codes == AUDITED and lanes == set(AUDITED) and tranches == set(AUDITED)
        assert entries == own | touching and len(entries) < every_entry
        assert accounts == named and postings == their_postings
        assert parties == audited_parties and "91650106MA7N1A214C" not in parties  # an Urumqi party
    else:
        assert codes == ALL_PROJECTS  # SQLite: only visible_projects scopes
    assert (_unfiltered_scope(world, auditor, monkeypatch) == AUDITED) == (world.backend == "postgresql")
    if world.backend == "postgresql":
        answer = world.clients["auditor"].get("/api/v1/audit/UR2024-001?as_of=2026-12-31")
        assert answer.status_code == 404


def test_the_portal_auditor_helpers_answer_only_the_portal(world):
    """Another login cannot name a portal auditor and read its projects: the helpers answer
    only a login that may SET ROLE jiebang_portal_auditor, and an enterprise may not."""
    if world.backend != "postgresql":
        pytest.skip("row-level security is PostgreSQL's")
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    auditor = viewer_of(world, "信达会计师事务所")
    url = make_url(world.url).set(username=world.logins["demand"]).render_as_string(hide_password=False)
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT set_config('jiebang.portal_auditor', :id, false)"), {"id": str(auditor.id)})
            assert conn.execute(text("SELECT count(*) FROM jiebang_audited_projects()")).scalar_one() == 0
            assert conn.execute(text("SELECT count(*) FROM jiebang_audited_entries()")).scalar_one() == 0
            with pytest.raises(DBAPIError, match="permission denied"):
                conn.execute(text("SET ROLE jiebang_portal_auditor"))
    finally:
        engine.dispose()
    with scoped_session(world.engine, auditor) as session:  # the portal's login may
        assert sorted(session.scalars(text("SELECT jiebang_audited_projects()"))) == AUDITED


def test_visible_projects_is_the_one_scoping_function(world):
    with Session(read_only(world.engine)) as session:
        assert visible_projects(session, viewer_of(world, DEMAND)) == DEMAND_PROJECTS
        assert visible_projects(session, viewer_of(world, SOLVER)) == SOLVER_PROJECTS
        assert visible_projects(session, viewer_of(world, "信达会计师事务所")) == AUDITED
        assert visible_projects(session, viewer_of(world, "江门市科技局")) == ALL_PROJECTS


# --- sign-in, invitations, throttling, revocation, the log ---------------------------------


def _fresh_client(world, address="198.51.100.7"):
    from fastapi.testclient import TestClient

    return TestClient(world.app, raise_server_exceptions=False, client=(address, 50000))


def _sign_in(client, login, password):
    form = client.get("/login")
    return client.post("/login", data={"login": login, "password": password, "csrf": csrf_of(form.text)},
                       follow_redirects=False)


def test_invitation_is_single_use_and_expires(world):
    with Session(world.engine) as session, session.begin():
        _user, token = store.invite(session, bureau="一次性", actor="officer")
        _user, old = store.invite(session, bureau="过期账号", actor="officer")
        session.flush()
        row = session.scalars(select(PortalInvite).where(PortalInvite.token_sha256 == store.token_digest(old))).one()
        row.expires_at = store.now() - dt.timedelta(seconds=1)
    client = _fresh_client(world)
    assert accept(client, f"/invite/{token}").status_code == 303
    assert client.get("/api/v1/me").json()["login"] == "一次性"
    again = _fresh_client(world)
    assert again.get(f"/invite/{token}").status_code == 404
    assert again.get(f"/invite/{old}").status_code == 404
    assert again.get("/invite/not-a-token").status_code == 404
    # Short and mismatched passwords are refused on the form.
    with Session(world.engine) as session, session.begin():
        _user, third = store.invite(session, bureau="短密码", actor="officer")
    form = again.get(f"/invite/{third}")
    short = again.post(f"/invite/{third}", data={"password": "short", "password2": "short", "csrf": csrf_of(form.text)})
    assert short.status_code == 400 and "至少 12" in short.text
    differ = again.post(f"/invite/{third}", data={"password": PASSWORD, "password2": PASSWORD + "x", "csrf": csrf_of(form.text)})
    assert differ.status_code == 400 and "不一致" in differ.text


def test_passwords_are_argon2id(world):
    with Session(world.engine) as session:
        hashes = list(session.scalars(select(store.PortalUser.password_hash).where(store.PortalUser.password_hash.is_not(None))))
    assert hashes and all(h.startswith("$argon2id$") for h in hashes)
    assert not any(PASSWORD in h for h in hashes)


def test_sign_in_out_and_csrf(world):
    client = _fresh_client(world, "198.51.100.20")
    assert _sign_in(client, SOLVER, PASSWORD).status_code == 303
    cookie = client.cookies.get("jb_session")
    assert cookie
    answer = _sign_in(_fresh_client(world, "198.51.100.21"), SOLVER, PASSWORD)
    set_cookie = answer.headers["set-cookie"]
    assert "HttpOnly" in set_cookie and "SameSite=strict" in set_cookie.replace("Strict", "strict")
    # No CSRF token, or a wrong one: refused.
    assert client.post("/login", data={"login": SOLVER, "password": PASSWORD}).status_code == 403
    assert client.post("/logout", data={"csrf": "x" * 43}).status_code == 403
    page = client.get("/projects")
    assert client.post("/logout", data={"csrf": csrf_of(page.text)}, follow_redirects=False).status_code == 303
    assert client.get("/projects", follow_redirects=False).status_code == 303


def test_failed_sign_ins_slow_the_next_try_per_account_and_per_address(world):
    with Session(world.engine) as session, session.begin():
        store.invite(session, bureau="慢账号", actor="officer")
    # Per account: failures from many addresses still slow that account.
    for i in range(store.FREE_FAILURES + 1):
        assert _sign_in(_fresh_client(world, f"203.0.113.{i}"), "慢账号", "wrong password!").status_code == 401
    slowed = _sign_in(_fresh_client(world, "203.0.113.99"), "慢账号", "whatever")
    assert slowed.status_code == 429 and "秒后再试" in slowed.text
    # Per address: failures on many accounts slow that address, even for a right password.
    client = _fresh_client(world, "192.0.2.50")
    for i in range(store.FREE_FAILURES + 1):
        assert _sign_in(client, f"nobody-{i}", "wrong password!").status_code == 401
    assert _sign_in(client, SOLVER, PASSWORD).status_code == 429
    assert _sign_in(_fresh_client(world, "192.0.2.51"), SOLVER, PASSWORD).status_code == 303


def test_revoke_ends_sessions_at_once_and_is_logged(world):
    with Session(world.engine) as session, session.begin():
        _user, token = store.invite(session, bureau="将撤销", actor="officer")
    client = _fresh_client(world, "198.51.100.30")
    assert accept(client, f"/invite/{token}").status_code == 303
    assert client.get("/api/v1/me").status_code == 200
    assert client.get("/api/v1/dashboard").status_code == 200  # now remembered for this account
    result = Cli(world.url, user="officer-b")("portal", "revoke", "将撤销")
    assert "revoked" in result.output
    assert client.get("/api/v1/me").status_code == 401
    assert client.get("/api/v1/dashboard").status_code == 401  # the remembered answer is not served
    assert _sign_in(_fresh_client(world, "198.51.100.31"), "将撤销", PASSWORD).status_code == 401
    log = Cli(world.url)("portal", "log", "--login", "将撤销", "--format", "json")
    events = [r["event"] for r in json.loads(log.output)]
    assert events[:3] == ["invite", "invite_accepted", "revoke"] and events[-1] == "signin_failed"
    Cli(world.url)("portal", "revoke", "no-such-account", expect=1)


def test_the_log_records_sign_ins_and_downloads(world):
    world.clients["demand"].get("/downloads/status.json")
    rows = json.loads(Cli(world.url)("portal", "log", "--login", DEMAND, "--format", "json").output)
    assert {"invite", "invite_accepted", "download"} <= {r["event"] for r in rows}
    assert any(r["detail"].startswith(f"status-{DEMAND}-") for r in rows)


def test_the_log_is_append_only_on_both_backends(world):
    for statement in ("UPDATE portal_log SET detail = 'x'", "DELETE FROM portal_log"):
        with Session(world.engine) as session, pytest.raises((IntegrityError, DBAPIError)) as caught:
            session.execute(text(statement))
            session.flush()
        assert "append-only" in str(caught.value)
    if world.backend == "postgresql":
        with Session(world.engine) as session, pytest.raises(DBAPIError):
            session.execute(text("TRUNCATE portal_log"))


def test_invite_refusals_are_one_line(world):
    cli = Cli(world.url)
    assert "exactly one" in cli("portal", "invite", expect=1).stderr
    assert "exactly one" in cli("portal", "invite", "--bureau", "a", "--party", DEMAND, expect=1).stderr
    assert "at least one --project" in cli("portal", "invite", "--auditor", "x", expect=1).stderr
    assert "NOPE-1" in cli("portal", "invite", "--auditor", "x", "--project", "NOPE-1", expect=1).stderr
    assert "already exists" in cli("portal", "invite", "--bureau", DEMAND, expect=1).stderr
    ok = cli("portal", "invite", "--auditor", "第二审计", "--project", "JM2024-001", "--hours", "1",
             "--base-url", "https://portal.example/")
    assert re.fullmatch(r"https://portal\.example/invite/[A-Za-z0-9_\-]{43}\n", ok.stdout)


def test_an_enterprise_without_a_database_login_is_refused_on_postgresql(world):
    if world.backend != "postgresql":
        pytest.skip("database logins are PostgreSQL's")
    result = Cli(world.url)("portal", "invite", "--party", "91650106MA7N1A214C", expect=1)
    assert "db grant enterprise" in result.stderr


# --- safe by default ---------------------------------------------------------------------


def test_security_headers_on_every_answer(world):
    for path in ("/login", "/projects", "/no/such/page", "/api/v1/status", "/static/portal.css"):
        answer = world.clients["demand"].get(path)
        csp = answer.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "script" not in csp and "frame-ancestors 'none'" in csp
        assert answer.headers["x-frame-options"] == "DENY"
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["referrer-policy"] == "no-referrer"
    html = world.clients["demand"].get("/projects/JM2024-001").text
    assert "<script" not in html and "style=" not in html and "onclick" not in html


def test_errors_are_chinese_without_stack_traces(world, monkeypatch):
    import portal.views

    def boom(*_args, **_kwargs):
        raise RuntimeError("internal detail /secret/path")

    monkeypatch.setattr(portal.views, "dashboard", boom)
    for path in ("/dashboard?as_of=2027-01-02", "/api/v1/dashboard?as_of=2027-01-03"):  # not yet remembered
        answer = world.clients["bureau"].get(path)
        assert answer.status_code == 500
        assert "服务器内部错误" in answer.text
        assert "secret" not in answer.text and "Traceback" not in answer.text and "RuntimeError" not in answer.text
    assert world.clients["bureau"].get("/dashboard?as_of=not-a-date").status_code == 400
    assert world.clients["bureau"].get("/api/v1/dashboard?as_of=2026-13-45").json()["error"].startswith("请求无法完成")
    assert world.clients["bureau"].delete("/dashboard").status_code == 405


def test_hostile_names_render_as_text(world):
    from ledger.programme import PartyInput, register_party

    hostile = "<script>alert(1)</script>=HYPERLINK(\"http://evil\",\"x\")"
    uscc = "91440700MA51A0003E"
    with Session(world.engine) as session, session.begin():
        register_party(session, PartyInput(uscc=uscc, name=hostile, date=dt.date(2024, 2, 1)), actor="officer")
    with Session(world.engine) as session, session.begin():
        if world.backend == "postgresql":
            from ledger.programme.roles import grant

            grant(session, "enterprise", world.logins["demand"] + "h", party=uscc)
            world.logins["hostile"] = world.logins["demand"] + "h"
        _user, token = store.invite(session, party=uscc, actor="officer")
        _user, bureau = store.invite(session, bureau="<img/src=x/onerror=alert(1)>", actor="officer")
    client = _fresh_client(world, "198.51.100.40")
    form = client.get(f"/invite/{token}")
    assert "<script>" not in form.text and "&lt;script&gt;alert(1)&lt;/script&gt;" in form.text
    assert accept(client, f"/invite/{token}").status_code == 303
    page = client.get("/projects").text
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;=HYPERLINK(&#34;http://evil&#34;" in page
    other = _fresh_client(world, "198.51.100.41")
    assert accept(other, f"/invite/{bureau}").status_code == 303
    dash = other.get("/dashboard").text
    assert "<img/src" not in dash and "&lt;img/src=x/onerror=alert(1)&gt;" in dash


def test_the_openapi_document_lists_the_api(world):
    doc = world.clients["bureau"].get("/api/openapi.json").json()
    assert {"/api/v1/me", "/api/v1/status", "/api/v1/projects/{code}", "/api/v1/audit", "/api/v1/audit/{code}",
            "/api/v1/audit/{code}/verify", "/api/v1/dashboard"} <= set(doc["paths"])
    assert not any(p.startswith(("/login", "/invite", "/projects")) for p in doc["paths"])
    assert world.clients["bureau"].get("/docs").status_code == 404  # no CDN-loaded docs page


def test_no_page_shows_a_command_or_a_snake_case_key(world):
    """Pages are for people: no `jiebang` command and no snake_case identifier in what they read."""
    import re

    for path, expected in HTML_PAGES.items():
        for role, status in expected.items():
            answer = world.clients[role].get(path)
            if status != 200 or "text/html" not in answer.headers.get("content-type", ""):
                continue
            html = re.sub(r"<(style|script)[^>]*>.*?</\1>", " ", answer.text, flags=re.DOTALL)
            text = re.sub(r"<[^>]+>", " ", html)
            assert "jiebang " not in text, (role, path)
            assert not re.search(r"\b[a-z]+_[a-z_]+\b", text), (role, path, re.findall(r"\b[a-z]+_[a-z_]+\b", text)[:5])


def test_the_project_page_names_the_policy_document_not_the_rules_identifier(world):
    page = world.clients["demand"].get("/projects/JM2024-001").text
    assert "依据《江门市重大科技计划项目“揭榜挂帅”“赛马”制技术攻关项目工作方案（试行）》" in page
    assert "jiangmen-2023-trial" not in page


# --- remembered answers (portal.cache) ----------------------------------------------------


def test_the_bureau_project_list_is_paged(world, monkeypatch):
    import portal.app

    monkeypatch.setattr(portal.app, "DASHBOARD_PAGE", 4)
    query = "as_of=2027-01-06"  # not asked before: built with pages of 4
    pages = [world.clients["bureau"].get(f"/dashboard?{query}&page={n}") for n in (1, 2, 3)]
    assert [p.status_code for p in pages] == [200, 200, 200]
    listed = [re.findall(r"<tr><td>([A-Z]{2}\d{4}-\d{3})</td>", p.text[p.text.index('id="project-list"'):]) for p in pages]
    assert [len(codes) for codes in listed] == [4, 4, 1] and [c for codes in listed for c in codes] == ALL_PROJECTS
    assert "共 9 个项目，本页第 5–8 个（第 2 / 3 页，每页 4 个）" in pages[1].text
    assert pages[1].text.count('href="/dashboard?as_of=2027-01-06&amp;page=3#projects" rel="next"') == 2  # above and below
    assert 'href="/dashboard?as_of=2027-01-06&amp;page=1#projects" rel="prev"' in pages[1].text
    assert 'id="projects"' in pages[1].text
    assert '<span class="current" aria-current="page">2</span>' in pages[1].text
    assert world.clients["bureau"].get(f"/dashboard?{query}&page=4").status_code == 404
    assert world.clients["bureau"].get(f"/dashboard?{query}&page=0").status_code == 404
    assert world.clients["bureau"].get(f"/dashboard?{query}&page=x").status_code == 400
    # The API keeps the whole list.
    assert [p["code"] for p in world.clients["bureau"].get(f"/api/v1/dashboard?{query}").json()["projects"]] == ALL_PROJECTS


def test_page_links_name_the_first_last_and_nearby_pages():
    from portal.app import _page_links

    assert _page_links(1, 1) == [1]
    assert _page_links(1, 20) == [1, 2, 3, None, 20]
    assert _page_links(10, 20) == [1, None, 8, 9, 10, 11, 12, None, 20]
    assert _page_links(19, 20) == [1, None, 17, 18, 19, 20]


def test_a_cached_page_carries_each_browsers_own_csrf_token(world):
    """The same account in two browsers: the second gets the page the first one's request
    built, with its own CSRF token, and can sign out with it."""
    from fastapi.testclient import TestClient

    first, second = world.clients["bureau"], TestClient(world.app, raise_server_exceptions=False)
    second.cookies.set("jb_session", first.cookies.get("jb_session"))
    path = "/dashboard?as_of=2027-01-07"
    one = first.get(path)
    two = second.get(path)
    assert one.status_code == two.status_code == 200
    token = two.cookies.get("jb_csrf") or second.cookies.get("jb_csrf")
    assert token and csrf_of(two.text) == token != csrf_of(one.text)
    assert one.text.replace(csrf_of(one.text), "") == two.text.replace(token, "")
    assert second.post("/logout", data={"csrf": token}, follow_redirects=False).status_code == 303


def test_the_cache_key_follows_the_parameters_the_route_reads(world):
    client = world.clients["demand"]
    one, two = "2026-06-30", "2027-06-30"
    first = client.get(f"/api/v1/status?as_of={one}&as_of={two}").json()["as_of"]
    second = client.get(f"/api/v1/status?as_of={two}&as_of={one}").json()["as_of"]
    assert {first, second} == {one, two}  # a repeated parameter: each order its own answer
    assert client.get(f"/api/v1/status?as_of={one}&utm=x").json()["as_of"] == one


def test_workers_share_answers_but_never_across_accounts_or_runs(world, tmp_path, monkeypatch):
    """Two applications on one cache file stand for two workers of one `jiebang serve`: the
    second answers from what the first built, for the same account only."""
    from fastapi.testclient import TestClient

    import portal.views
    from portal.app import create_app

    shared = tmp_path / "answers.sqlite"
    worker = lambda run: create_app(world.url, secret="test-secret", cache_file=shared, run=run)
    one, two, other_run = worker("r1"), worker("r1"), worker("r2")
    session = world.clients["bureau"].cookies.get("jb_session")
    client = lambda app: TestClient(app, raise_server_exceptions=False, cookies={"jb_session": session})
    path = "/dashboard?as_of=2027-01-08"
    built = client(one).get(path)
    assert built.status_code == 200
    with Session(world.engine) as s, s.begin():
        _user, token = store.invite(s, bureau="第二位局领导", actor="officer")

    def boom(*_args, **_kwargs):
        raise RuntimeError("built again")

    monkeypatch.setattr(portal.views, "dashboard", boom)
    shared_answer = client(two).get(path)
    assert shared_answer.status_code == 200 and "P95" in shared_answer.text  # not built again
    assert client(two).get("/api/v1/dashboard?as_of=2027-01-08").status_code == 200  # the read model is shared too
    assert client(other_run).get(path).status_code == 500  # another run builds its own
    newcomer = TestClient(two, raise_server_exceptions=False)
    assert accept(newcomer, f"/invite/{token}").status_code == 303
    assert newcomer.get(path).status_code == 500  # another account: its own build, never the first one's


def test_a_new_entry_moves_the_head_and_the_answers_follow(world):
    from ledger.programme import contribute

    path = "/api/v1/projects/JM2026-005?as_of=2027-12-31"
    client = world.clients["demand"]

    def contributed() -> int:
        whole, part = client.get(path).json()["totals"]["self_funding_contributed"].split(".")
        return int(whole) * 100 + int(part)

    before = contributed()
    assert contributed() == before  # now from the cache
    page = client.get("/projects/JM2026-005?as_of=2027-12-31").text
    with Session(world.engine) as session, session.begin():
        contribute(session, project="JM2026-005", amount_fen=12_345, category="equipment", date=dt.date(2026, 6, 1),
                   voucher=f"CACHE-{world.backend}", actor="officer")
    assert contributed() == before + 12_345
    assert client.get("/projects/JM2026-005?as_of=2027-12-31").text != page


def test_the_dashboard_counts_the_due_list_by_kind_and_shows_its_earliest_items(world, monkeypatch):
    """A ledger of a thousand projects has a thousand things due: the page sums them by kind
    and lists the earliest DASHBOARD_DUE_SHOWN; the API keeps every item."""
    import portal.app
    from ledger.core.money import parse_fen

    query = "as_of=2027-01-07"  # not asked before
    due = world.clients["bureau"].get(f"/api/v1/dashboard?{query}").json()["due"]
    assert len(due) >= 3
    monkeypatch.setattr(portal.app, "DASHBOARD_DUE_SHOWN", 2)
    html = world.clients["bureau"].get(f"/dashboard?{query}&page=1").text
    listed = html[html.index('<table id="due">'):html.index("项目清单")]
    assert listed.count("<tr>") == 2 + 1  # the header and the two earliest
    assert [d["project"] for d in due[:2]] == re.findall(r"<tr><td>[^<]*</td><td>([^<]+)</td>", listed)
    assert f"共 {len(due)} 项，下表列出日期最早的 2 项" in html
    kinds = html[html.index('<table id="due-kinds">'):html.index('<table id="due">')]
    for kind_zh in dict.fromkeys(d["kind_zh"] for d in due):
        items = [d for d in due if d["kind_zh"] == kind_zh]
        amount = sum(parse_fen(d["amount"]) for d in items if d["amount"] is not None)
        shown = f"{amount // 100:,}.{amount % 100:02d}" if amount else "—"
        assert f'<tr><td>{kind_zh}</td><td class="num">{len(items):,}</td><td class="num">{shown}</td></tr>' in kinds
