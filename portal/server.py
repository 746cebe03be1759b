"""``jiebang serve``: the portal application under uvicorn."""

from __future__ import annotations

import os


def run(url: str, *, host: str, port: int, scenario=None) -> None:
    import uvicorn

    from portal.app import create_app

    app = create_app(url, secret=os.environ.get("JIEBANG_PORTAL_SECRET") or None, scenario=scenario)
    uvicorn.run(app, host=host, port=port, log_level="info", server_header=False, proxy_headers=False)
