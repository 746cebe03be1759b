"""``jiebang serve``: the portal application under uvicorn (one process, or several workers
sharing the cookie secret)."""

from __future__ import annotations

import os
import secrets


def from_environment():
    """The application of one worker, from what ``run`` put in the environment."""
    from pathlib import Path

    from portal.app import create_app

    scenario = os.environ.get("JIEBANG_PORTAL_SCENARIO") or None
    return create_app(os.environ["JIEBANG_PORTAL_DB"], secret=os.environ["JIEBANG_PORTAL_SECRET"],
                      scenario=Path(scenario) if scenario else None)


def run(url: str, *, host: str, port: int, scenario=None, workers: int = 1) -> None:
    import uvicorn

    os.environ["JIEBANG_PORTAL_DB"] = url
    os.environ["JIEBANG_PORTAL_SCENARIO"] = str(scenario or "")
    # Without a configured secret, one random secret for this run (all its workers):
    # sessions then end when the server stops.
    os.environ.setdefault("JIEBANG_PORTAL_SECRET", secrets.token_hex(32))
    options = {"host": host, "port": port, "log_level": "info", "server_header": False, "proxy_headers": False}
    if workers > 1:
        uvicorn.run("portal.server:from_environment", factory=True, workers=workers, **options)
    else:
        uvicorn.run(from_environment(), **options)
