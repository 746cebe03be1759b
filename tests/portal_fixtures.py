"""A portal over the demo ledger, built once per backend per test module: the demo's nine
projects, two enterprises (a demand side and a solver), an auditor and the bureau signed in
through their invitations; on PostgreSQL the enterprises have database logins (db grant)."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field

import pytest
from conftest import migrated_ledger_url
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

from ledger.core.db import make_engine

DEMAND = "91440703MA4W1A276P"  # demand side of JM2024-001 and JM2026-005
SOLVER = "91440704MA4W5E623A"  # solver of JM2024-002 L2 and UR2025-003 L1
DEMAND_PROJECTS = ["JM2024-001", "JM2026-005"]
SOLVER_PROJECTS = ["JM2024-002", "UR2025-003"]
AUDITED = ["JM2024-001", "JM2025-004"]
PASSWORD = "correct horse battery staple"


@dataclass
class World:
    backend: str
    url: str
    engine: object
    app: object
    clients: dict = field(default_factory=dict)
    logins: dict = field(default_factory=dict)


def backends(config) -> list[str]:
    choice = config.getoption("--backend")
    return ["sqlite", "postgresql"] if choice == "all" else [choice]


def ledger_url(request, backend: str, tmp_path_factory) -> str:
    return migrated_ledger_url(request, backend, tmp_path_factory, "portal")


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


def accept(client, link: str, password: str = PASSWORD):
    path = link[link.index("/invite/"):]
    form = client.get(path)
    assert form.status_code == 200, form.text
    return client.post(path, data={"password": password, "password2": password, "csrf": csrf_of(form.text)},
                       follow_redirects=False)


def build_world(request, tmp_path_factory) -> World:
    from fastapi.testclient import TestClient

    from ledger.programme.demo import programme
    from portal.app import create_app
    from portal.store import invite

    backend = request.param
    if backend not in backends(request.config):
        pytest.skip(f"--backend {request.config.getoption('--backend')}")
    url = ledger_url(request, backend, tmp_path_factory)
    engine = make_engine(url)
    with Session(engine) as session, session.begin():
        programme().run(session)
    logins = {}
    if backend == "postgresql":
        from ledger.programme.roles import grant

        tag = uuid.uuid4().hex[:8]
        with Session(engine) as session, session.begin():
            for name, party in (("demand", DEMAND), ("solver", SOLVER)):
                logins[name] = f"jb_{tag}_{name}"
                grant(session, "enterprise", logins[name], party=party)
    cache_file = tmp_path_factory.mktemp("portal-cache") / "answers.sqlite"
    world = World(backend, url, engine, create_app(url, secret="test-secret", cache_file=cache_file), logins=logins)
    links = {}
    with Session(engine) as session, session.begin():
        links["demand"] = invite(session, party=DEMAND, actor="officer")[1]
        links["solver"] = invite(session, party=SOLVER, actor="officer")[1]
        links["auditor"] = invite(session, auditor="信达会计师事务所", projects=tuple(AUDITED), actor="officer")[1]
        links["bureau"] = invite(session, bureau="江门市科技局", actor="officer")[1]
    for name, token in links.items():
        client = TestClient(world.app, raise_server_exceptions=False)
        answer = accept(client, f"/invite/{token}")
        assert answer.status_code == 303, answer.text
        world.clients[name] = client
    return world


def drop_world(world: World) -> None:
    world.engine.dispose()
    world.app.state.engine.dispose()
    if world.logins:
        import gc

        gc.collect()
        drop = create_engine(world.url, isolation_level="AUTOCOMMIT")
        with drop.connect() as conn:
            for login in world.logins.values():
                conn.execute(text(f'DROP ROLE IF EXISTS "{login}"'))
        drop.dispose()
