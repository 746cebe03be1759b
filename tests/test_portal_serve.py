"""`jiebang serve` as a process behind a proxy: `--forwarded-allow-ips` names the proxies whose
X-Forwarded-For is believed, so that the sign-in throttle and the log see the browser's
address; others' headers are ignored (SQLite; the backend plays no part here)."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy.orm import Session

from ledger.core.db import make_engine, read_only
from portal import store

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ledger(tmp_path_factory, _sqlite_template) -> str:
    path = tmp_path_factory.mktemp("serve") / "jiebang.db"
    shutil.copyfile(_sqlite_template, path)
    with Session(make_engine(f"sqlite:///{path}")) as session, session.begin():
        store.invite(session, bureau="局里", actor="officer")
    return f"sqlite:///{path}"


def _serve(url: str, *options: str):
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-c", "import cli; cli.main()", "serve", "--db", url.removeprefix("sqlite:///"), "--port", str(port),
         *options],
        env={**{k: v for k, v in os.environ.items() if k != "FORWARDED_ALLOW_IPS"}, "PYTHONPATH": str(ROOT),
             "JIEBANG_PORTAL_SECRET": "serve-test"},
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return server, f"http://127.0.0.1:{port}"
        except OSError:
            assert server.poll() is None, "jiebang serve stopped"
            time.sleep(0.2)
    server.terminate()
    raise AssertionError("jiebang serve did not start")


def _failed_sign_in(base: str, login: str, forwarded_for: str) -> int:
    with httpx.Client(base_url=base) as client:
        form = client.get("/login")
        csrf = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)
        return client.post("/login", data={"login": login, "password": "wrong password!", "csrf": csrf},
                           headers={"X-Forwarded-For": forwarded_for}).status_code


def _addresses(url: str, login: str) -> list[str]:
    with Session(read_only(make_engine(url))) as session:
        return [r["address"] for r in store.log_rows(session, login=login) if r["event"] == "signin_failed"]


@pytest.mark.parametrize(("options", "believed"), [
    ((), True),  # uvicorn's default: a proxy on this machine (127.0.0.1, ::1)
    (("--forwarded-allow-ips", "127.0.0.1"), True),
    (("--forwarded-allow-ips", "192.0.2.1"), False),  # the request comes from 127.0.0.1, not that proxy
    (("--forwarded-allow-ips", ""), False),  # believe no one
])
def test_the_sign_in_throttle_and_the_log_use_the_address_the_trusted_proxy_names(ledger, options, believed):
    login = f"nobody-{len(options)}-{options[-1] if options else 'default'}"
    server, base = _serve(ledger, *options)
    try:
        assert _failed_sign_in(base, login, "203.0.113.9") == 401
        expected = "203.0.113.9" if believed else "127.0.0.1"
        assert _addresses(ledger, login) == [expected]
        if believed:
            # Per address: the browser's address is slowed, another browser behind the same proxy is not.
            address = f"198.51.100.{len(options) * 10 + 7}"
            for i in range(store.FREE_FAILURES + 1):
                assert _failed_sign_in(base, f"{login}-{i}", address) == 401
            assert _failed_sign_in(base, f"{login}-next", address) == 429
            assert _failed_sign_in(base, f"{login}-other", "198.51.100.250") == 401
    finally:
        server.terminate()
        server.wait(timeout=10)
