"""``jiebang serve``: the portal application under uvicorn (one process, or several workers
sharing the cookie secret and the cache of answers, ``portal.cache``)."""

from __future__ import annotations

import os
import secrets


def from_environment():
    """The application of one worker, from what ``run`` put in the environment."""
    from pathlib import Path

    from portal.app import create_app

    scenario = os.environ.get("JIEBANG_PORTAL_SCENARIO") or None
    return create_app(os.environ["JIEBANG_PORTAL_DB"], secret=os.environ["JIEBANG_PORTAL_SECRET"],
                      scenario=Path(scenario) if scenario else None, run=os.environ["JIEBANG_PORTAL_RUN"])


def run(url: str, *, host: str, port: int, scenario=None, workers: int = 1, forwarded_allow_ips: str | None = None) -> None:
    """Serve until stopped. ``forwarded_allow_ips``: the proxies (addresses or networks,
    comma-separated, or ``*``) whose ``X-Forwarded-For`` / ``X-Forwarded-Proto`` are believed, so
    that the sign-in throttle and the log see the browser's address, not the proxy's; None is
    uvicorn's default (``$FORWARDED_ALLOW_IPS``, else 127.0.0.1 and ::1: a proxy on this
    machine), "" believes no one."""
    import uvicorn

    from portal.cache import SharedCache, default_path

    os.environ["JIEBANG_PORTAL_DB"] = url
    os.environ["JIEBANG_PORTAL_SCENARIO"] = str(scenario or "")
    # Without a configured secret, one random secret for this run (all its workers):
    # sessions then end when the server stops.
    os.environ.setdefault("JIEBANG_PORTAL_SECRET", secrets.token_hex(32))
    # One name for this run's entries in the shared cache: its workers share them, another
    # run (other code, templates or scenario) never reads them.
    os.environ["JIEBANG_PORTAL_RUN"] = secrets.token_hex(16)
    SharedCache(default_path(url), os.environ["JIEBANG_PORTAL_RUN"]).prune()
    options = {"host": host, "port": port, "log_level": "info", "server_header": False,
               "proxy_headers": forwarded_allow_ips != "", "forwarded_allow_ips": forwarded_allow_ips or None}
    if workers > 1:
        uvicorn.run("portal.server:from_environment", factory=True, workers=workers, **options)
    else:
        uvicorn.run(from_environment(), **options)
