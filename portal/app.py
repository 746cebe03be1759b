"""The portal's web application: FastAPI routes, Jinja2 pages in Chinese, the JSON API.

Security choices (README "Portal", docs/access.md):

* sessions are signed cookies (itsdangerous), HttpOnly, SameSite=Strict, Secure over HTTPS,
  valid 8 hours and ended at once by ``portal revoke`` or a new invitation (the account's
  epoch is in the cookie);
* every form carries a CSRF token equal to a random SameSite=Strict cookie (double submit);
* failed sign-ins slow the next try per account and per address (``portal.store``);
* every reply has a Content-Security-Policy without any script, X-Frame-Options DENY,
  nosniff, no referrer (sign-in links carry a token) and no caching;
* errors map, in ``_error``, to a Chinese message and a status code: no stack trace leaves
  the server;
* all text is escaped by Jinja2's autoescape and the SVG writer.
"""


import datetime as dt
import hmac
import json
import logging
import secrets
import tempfile
from collections import OrderedDict
from pathlib import Path
from typing import Annotated

from fastapi import Depends, FastAPI, Form, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from itsdangerous import BadSignature, URLSafeTimedSerializer
from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session
from starlette.exceptions import HTTPException as StarletteHTTPException

from ledger.core.db import make_engine, read_only, require_head
from ledger.core.errors import Refusal
from ledger.programme import words
from migrations import HEAD
from portal import store, views
from portal.cache import SharedCache, default_path
from portal.scope import CHAIN_HEAD, NotFound, require_project, scoped_session
from portal.store import Viewer
from portal.svg import forecast_chart, grouped_bars

HERE = Path(__file__).resolve().parent
SESSION_COOKIE = "jb_session"
CSRF_COOKIE = "jb_csrf"
SESSION_HOURS = 8
DASHBOARD_PAGE = 50  # projects per page of the bureau's list
DASHBOARD_DUE_SHOWN = 50  # the earliest items of the due list on the page; the rest counted by kind
ANSWER_PARAMS = frozenset({"as_of", "lane", "section", "page"})  # the query parameters of the remembered routes
log = logging.getLogger("jiebang.portal")

SECURITY_HEADERS = {
    "Content-Security-Policy": ("default-src 'none'; style-src 'self'; img-src 'self' data:; font-src 'self'; form-action 'self'; "
                                "frame-ancestors 'none'; base-uri 'none'"),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "Cross-Origin-Opener-Policy": "same-origin",
}
MESSAGES = {
    400: "请求有误。", 401: "请先登录。", 403: "没有权限。", 404: "未找到该页面，或您无权查看。", 405: "不支持该请求方法。",
    429: "请求过于频繁，请稍后再试。", 500: "服务器内部错误，请联系科技局。", 503: "数据库暂不可用，请稍后再试。",
}
DOWNLOAD_TYPES = {
    ".pdf": "application/pdf", ".json": "application/json",
    ".xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", ".beancount": "text/plain; charset=utf-8",
}


class SignInRequired(Exception):
    pass


class CsrfFailed(Exception):
    pass


def _templates() -> Environment:
    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(default=True, default_for_string=True))
    env.globals.update(zh=views.zh, STATUS_ZH=views.STATUS_ZH, ROLE_ZH=views.ROLE_ZH, MODE_ZH=views.MODE_ZH,
                       CATEGORY_ZH=views.CATEGORY_ZH, CITY_ZH=views.CITY_ZH, BALANCE_ZH=words.BALANCE_ZH,
                       WARNING_ZH=words.WARNING_ZH, CATEGORIES=views.SELF_FUNDING_CATEGORIES)
    env.filters["yuan"] = _yuan_text
    return env


def _yuan_text(value) -> str:
    """'1234.50' -> '1,234.50' (the API's plain amounts, grouped for reading)."""
    if value in (None, ""):
        return "—"
    text = str(value)
    sign = "-" if text.startswith("-") else ""
    whole, _, part = text.lstrip("-").partition(".")
    return f"{sign}{int(whole):,}.{(part or '00')[:2]}"


def _fen(text: str | None) -> int:
    if not text:
        return 0
    sign = -1 if text.startswith("-") else 1
    whole, _, part = text.lstrip("-").partition(".")
    return sign * (int(whole) * 100 + int((part or "0").ljust(2, "0")[:2]))


def _as_of(value: str | None) -> dt.date | None:
    if value in (None, ""):
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise Refusal("portal_date_must_be_iso", "日期应写作 YYYY-MM-DD。") from None


def create_app(url: str, *, secret: str | None = None, scenario: Path | None = None, cache_file: Path | None = None,
               run: str | None = None) -> FastAPI:
    """The application over the ledger at ``url``; ``secret`` signs the cookies (random per
    process if None: sessions then end when the server restarts); ``scenario`` is the forecast
    scenario file of the bureau's chart (default: every condition on time, no spread);
    ``cache_file`` holds the remembered answers (default ``portal.cache.default_path``) and
    ``run`` names this server's entries in it (random if None; ``serve`` gives its workers one)."""
    from reports.forecast import Scenario, load_scenario

    the_scenario = load_scenario(scenario) if scenario is not None else Scenario()
    engine = make_engine(url)
    require_head(engine, HEAD)
    signer = URLSafeTimedSerializer(secret or secrets.token_hex(32), salt="jiebang-portal-session")
    env = _templates()
    app = FastAPI(title="jiebang 门户 API", version="1", docs_url=None, redoc_url=None, openapi_url="/api/openapi.json",
                  description="The same read models as the pages, under the same scoping: sign in through the "
                              "portal; the session cookie authenticates API calls.")
    app.state.engine = engine
    cache = app.state.cache = SharedCache(cache_file or default_path(url), run or secrets.token_hex(16))
    reader = read_only(engine)  # look-ups that write nothing take no write lock on SQLite
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    # --- plumbing ---------------------------------------------------------------------------

    app.add_middleware(SecurityHeaders)

    def csrf_token(request: Request) -> str:
        token = request.cookies.get(CSRF_COOKIE)
        if not token or len(token) != 43:
            token = request.state.__dict__.setdefault("new_csrf", secrets.token_urlsafe(32))
        return token

    def page(request: Request, template: str, status: int = 200, **context) -> HTMLResponse:
        marker = getattr(request.state, "csrf_marker", None)  # set while an answer is built for the cache
        html = env.get_template(template).render(request=request, csrf=marker or csrf_token(request),
                                                 viewer=getattr(request.state, "viewer", None), **context)
        response = HTMLResponse(html, status_code=status)
        if marker is None:
            with_csrf_cookie(request, response)
        return response

    def with_csrf_cookie(request: Request, response: Response) -> Response:
        token = csrf_token(request)
        if request.cookies.get(CSRF_COOKIE) != token:
            response.set_cookie(CSRF_COOKIE, token, httponly=True, samesite="strict", secure=request.url.scheme == "https",
                                path="/")
        return response

    def check_csrf(request: Request, csrf: str) -> None:
        cookie = request.cookies.get(CSRF_COOKIE) or ""
        if not cookie or not hmac.compare_digest(cookie.encode(), (csrf or "").encode()):
            raise CsrfFailed()

    def address(request: Request) -> str:
        return request.client.host if request.client else ""

    def signed_in(request: Request, viewer: Viewer) -> RedirectResponse:
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(SESSION_COOKIE, signer.dumps({"u": viewer.id, "e": viewer.epoch}), httponly=True,
                            samesite="strict", secure=request.url.scheme == "https", max_age=SESSION_HOURS * 3600, path="/")
        return response

    def current(request: Request) -> Viewer:
        raw = request.cookies.get(SESSION_COOKIE)
        if not raw:
            raise SignInRequired()
        try:
            data = signer.loads(raw, max_age=SESSION_HOURS * 3600)
        except BadSignature:
            raise SignInRequired() from None
        try:
            user_id, epoch = int(data.get("u", 0)), int(data.get("e", -1))
        except (TypeError, ValueError, AttributeError):
            raise SignInRequired() from None
        with reader.connect() as conn:
            # The ledger's state for the remembered answers (read with the portal's login: an
            # enterprise's role may not read the chain head).
            viewer, request.state.head = store.viewer_and_head(conn, user_id, epoch)
        if viewer is None:
            raise SignInRequired()
        request.state.viewer = viewer
        return viewer

    Signed = Annotated[Viewer, Depends(current)]

    def kind(viewer: Viewer, *kinds: str) -> None:
        if viewer.kind not in kinds:
            raise NotFound(viewer.kind)

    def logged(viewer: Viewer, event: str, detail: str, request: Request) -> None:
        with Session(engine) as session, session.begin():
            store.record(session, viewer.login, event, detail, address(request))

    def download(request: Request, viewer: Viewer, path: Path, name: str) -> Response:
        content = path.read_bytes()
        logged(viewer, "download", name, request)
        media = DOWNLOAD_TYPES.get(path.suffix, "application/octet-stream")
        return Response(content, media_type=media, headers={"Content-Disposition": f'attachment; filename="{name}"'})

    def _error(request: Request, status: int, message: str | None = None):
        text = message or MESSAGES.get(status, MESSAGES[500])
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": text, "status": status}, status_code=status)
        return page(request, "error.html", status=status, status_code=status, message=text)

    @app.exception_handler(SignInRequired)
    async def _sign_in(request: Request, _exc):
        if request.url.path.startswith("/api/"):
            return _error(request, 401)
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    @app.exception_handler(NotFound)
    async def _not_found(request: Request, _exc):
        return _error(request, 404)

    @app.exception_handler(CsrfFailed)
    async def _csrf(request: Request, _exc):
        return _error(request, 403, "表单已失效，请刷新页面后重试。")

    @app.exception_handler(Refusal)
    async def _refusal(request: Request, exc: Refusal):
        if exc.code == "portal_signin_throttled":
            return _error(request, 429, exc.message)
        if exc.code in ("project_must_exist", "project_must_be_known"):
            return _error(request, 404)
        return _error(request, 400, "请求无法完成：" + exc.message)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        return _error(request, exc.status_code if exc.status_code in MESSAGES else 400)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, _exc):
        return _error(request, 400)

    @app.exception_handler(DBAPIError)
    async def _database(request: Request, exc: DBAPIError):
        log.error("database error on %s: %s", request.url.path, exc)
        return _error(request, 503)

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception):
        log.exception("error on %s", request.url.path)
        return _error(request, 500)

    @app.get("/fonts/cjk.ttf", include_in_schema=False)
    def cjk_font():
        """The PDF reports' packaged Noto Sans CJK SC: a browser fetches it only when it has no
        Chinese font of its own (portal.css lists the local ones first)."""
        from reports.pdf import PACKAGED_FONT

        return FileResponse(PACKAGED_FONT, media_type="font/ttf", headers={"Cache-Control": "public, max-age=604800"})

    # --- sign-in ----------------------------------------------------------------------------

    @app.get("/login", response_class=HTMLResponse, include_in_schema=False)
    def login_form(request: Request):
        return page(request, "login.html")

    @app.post("/login", include_in_schema=False)
    def login(request: Request, login: Annotated[str, Form(max_length=80)] = "",
              password: Annotated[str, Form(max_length=1024)] = "", csrf: Annotated[str, Form(max_length=100)] = ""):
        check_csrf(request, csrf)
        with Session(engine) as session:
            try:
                user = store.authenticate(session, login, password, address(request))
            except Refusal as refusal:
                session.commit()  # the failed sign-in stays in the log: it slows the next try
                if refusal.code != "portal_signin_failed":
                    raise
                return page(request, "login.html", status=401, message=refusal.message, login=login)
            viewer = store.viewer(session, user.id, user.epoch)
            session.commit()
        return signed_in(request, viewer)

    @app.post("/logout", include_in_schema=False)
    def logout(request: Request, csrf: Annotated[str, Form(max_length=100)] = ""):
        check_csrf(request, csrf)
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    @app.get("/invite/{token}", response_class=HTMLResponse, include_in_schema=False)
    def invite_form(request: Request, token: str):
        with Session(reader) as session:
            user = store.open_invite(session, token)
        if user is None:
            return _error(request, 404, "该邀请链接无效、已使用或已过期，请联系科技局重新发送。")
        return page(request, "invite.html", token=token, account=user.login, name=user.display_name)

    @app.post("/invite/{token}", include_in_schema=False)
    def invite_accept(request: Request, token: str, password: Annotated[str, Form(max_length=1024)] = "",
                      password2: Annotated[str, Form(max_length=1024)] = "", csrf: Annotated[str, Form(max_length=100)] = ""):
        check_csrf(request, csrf)
        with Session(reader) as session:
            user = store.open_invite(session, token)
        if user is None:
            return _error(request, 404, "该邀请链接无效、已使用或已过期，请联系科技局重新发送。")
        try:
            with Session(engine) as session, session.begin():
                user = store.accept_invite(session, token, password, password2, address(request))
                viewer = store.viewer(session, user.id, user.epoch)
        except Refusal as refusal:
            return page(request, "invite.html", status=400, token=token, account=user.login, name=user.display_name,
                        message=refusal.message)
        return signed_in(request, viewer)

    # --- remembered answers (portal.cache) ---------------------------------------------------
    #
    # A page or API answer, and the read models behind it, depend only on the ledger's state
    # (the chain head), on who asks (the principal) and on what is asked; they are kept under
    # all three, shared by the workers, and built once. Scoping runs inside every build: a
    # request for another party's project builds (and remembers) this account's 404.

    def answer(request: Request, viewer: Viewer, make) -> Response:
        """``make(session)``'s response, from the cache when this account asked the same at this
        chain head before. HTML is kept with a marker where the CSRF token goes."""
        # Only the parameters the routes read (another one changes nothing but would make a new
        # key), in their order: of a repeated one the route reads one, so the order matters.
        what = ("answer", request.url.path, [(k, v) for k, v in request.query_params.multi_items() if k in ANSWER_PARAMS])
        key = cache.key(request.state.head, store.principal(viewer), *what)

        def build():
            marker = secrets.token_hex(16)
            request.state.csrf_marker = marker
            try:
                with scoped_session(engine, viewer) as session:
                    head = session.info[CHAIN_HEAD]
                    try:
                        response = make(session)
                    except NotFound:
                        response = _error(request, 404)
            finally:
                request.state.csrf_marker = None
            meta = {"status": response.status_code, "type": response.headers.get("content-type"),
                    "marker": marker if marker.encode() in response.body else None}
            value = json.dumps(meta).encode() + b"\n" + bytes(response.body)
            store_as = key if tuple(head) == tuple(request.state.head) else cache.key(head, store.principal(viewer), *what)
            return head, value, store_as

        value = cache.get_or_build(key, build)
        meta_line, _, body = value.partition(b"\n")
        meta = json.loads(meta_line)
        if meta["marker"]:
            body = body.replace(meta["marker"].encode(), csrf_token(request).encode())
        response = Response(body, status_code=meta["status"], media_type=None, headers={"content-type": meta["type"]})
        return with_csrf_cookie(request, response) if meta["marker"] else response

    def model(session: Session, viewer: Viewer, what: tuple, build) -> dict:
        """A read model (JSON-able dict), remembered under the build session's chain head."""
        key = cache.key(session.info[CHAIN_HEAD], store.principal(viewer), "model", *what)

        def make():
            return session.info[CHAIN_HEAD], json.dumps(build(), ensure_ascii=False).encode(), key

        return json.loads(cache.get_or_build(key, make))

    def json_answer(data) -> JSONResponse:
        return JSONResponse(jsonable_encoder(data))

    # --- pages ------------------------------------------------------------------------------

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def home(request: Request, viewer: Signed):
        target = {"enterprise": "/projects", "auditor": "/audit", "bureau": "/dashboard"}[viewer.kind]
        return RedirectResponse(target, status_code=303)

    @app.get("/projects", response_class=HTMLResponse, include_in_schema=False)
    def enterprise_home(request: Request, viewer: Signed, as_of: str | None = None):
        kind(viewer, "enterprise")
        when = _as_of(as_of)
        return answer(request, viewer, lambda session: page(
            request, "enterprise_home.html", data=enterprise_data(session, viewer, "home", when)))

    def _project_page(request: Request, session: Session, viewer: Viewer, code: str, when, lane: str | None):
        data = enterprise_data(session, viewer, "project", when, code, lane)
        charts = []
        if data["totals"] is not None:
            pledged = _fen(data["totals"]["self_funding_pledged"])
            groups = [("合计", [pledged, _fen(data["totals"]["self_funding_contributed"])])]
            groups += [(views.SELF_FUNDING_CATEGORIES[k], [0, _fen(v)]) for k, v in data["self_funding_by_category"].items()]
            charts.append(grouped_bars("自筹资金：承诺与到位（按费用类别）", groups, ["承诺", "到位"]))
        for ln in data["lanes"]:
            b = ln["balances"]
            charts.append(grouped_bars(
                f"{ln['lane']} 揭榜金额与财政资金", [
                    ("揭榜金额", [_fen(b["bid_contracted"]), _fen(b["bid_paid_cash"]) + _fen(b["bid_paid_equity"]) + _fen(b["bid_paid_in_kind"])]),
                    ("财政资金", [_fen(b["grant_obligated"]), _fen(b["grant_released"])]),
                ], ["合同/承诺", "已付/已拨"]))
        return page(request, "enterprise_project.html", data=data, charts=charts, lane=lane)

    @app.get("/projects/{code}", response_class=HTMLResponse, include_in_schema=False)
    def enterprise_project(request: Request, viewer: Signed, code: str, as_of: str | None = None):
        kind(viewer, "enterprise")
        when = _as_of(as_of)
        return answer(request, viewer, lambda session: _project_page(request, session, viewer, code, when, None))

    @app.get("/projects/{code}/lanes/{lane}", response_class=HTMLResponse, include_in_schema=False)
    def enterprise_lane(request: Request, viewer: Signed, code: str, lane: str, as_of: str | None = None):
        kind(viewer, "enterprise")
        when = _as_of(as_of)
        return answer(request, viewer, lambda session: _project_page(request, session, viewer, code, when, lane))

    @app.get("/downloads/status.{suffix}", include_in_schema=False)
    def status_download(request: Request, viewer: Signed, suffix: str, as_of: str | None = None):
        kind(viewer, "enterprise")
        if suffix not in ("xlsx", "json"):
            raise NotFound(suffix)
        with tempfile.TemporaryDirectory(prefix="jiebang-portal-") as tmp, scoped_session(engine, viewer) as session:
            files = views.status_files(session, viewer, _as_of(as_of), Path(tmp))
            return download(request, viewer, files[suffix], files[suffix].name)

    @app.get("/audit", response_class=HTMLResponse, include_in_schema=False)
    def auditor_home(request: Request, viewer: Signed):
        kind(viewer, "auditor")
        return answer(request, viewer, lambda session: page(
            request, "auditor_home.html", data=views.auditor_home(session, viewer)))

    def enterprise_data(session: Session, viewer: Viewer, what: str, when, code: str | None = None,
                        lane: str | None = None) -> dict:
        """An enterprise's status or project, built under its database role."""
        kind(viewer, "enterprise")

        def build() -> dict:
            if what == "home":
                return views.enterprise_home(session, viewer, when)
            return views.enterprise_project(session, viewer, code, when, lane=lane)

        return model(session, viewer, (what, when and when.isoformat(), code, lane), build)

    def audit_data(session, viewer: Viewer, code: str, as_of: str | None) -> dict:
        _code, when, _head = views.audit_pack_key(session, viewer, code, _as_of(as_of))  # scoped first: 404 for others
        return model(session, viewer, ("audit", code, when.isoformat()), lambda: views.audit_pages(session, viewer, code, when))

    def dashboard_data(session, viewer: Viewer, as_of: str | None) -> dict:
        if viewer.kind != "bureau":
            raise NotFound("dashboard")
        when = _as_of(as_of)
        return model(session, viewer, ("dashboard", when and when.isoformat()),
                     lambda: views.dashboard(session, viewer, when, the_scenario))

    @app.get("/audit/{code}", response_class=HTMLResponse, include_in_schema=False)
    def audit_project(request: Request, viewer: Signed, code: str, as_of: str | None = None, section: int = 1):
        kind(viewer, "auditor")
        _as_of(as_of)

        def make(session):
            data = audit_data(session, viewer, code, as_of)
            if not 1 <= section <= len(data["sections"]):
                raise NotFound(section)
            return page(request, "audit.html", data=data, section=data["sections"][section - 1], as_of_given=as_of or "")

        return answer(request, viewer, make)

    packs: OrderedDict = OrderedDict()  # (code, as_of, chain head) -> {name: bytes}; a pack is deterministic

    @app.get("/audit/{code}/files/{name:path}", include_in_schema=False)
    def audit_download(request: Request, viewer: Signed, code: str, name: str, as_of: str | None = None):
        kind(viewer, "auditor")
        with scoped_session(engine, viewer) as session:
            key = views.audit_pack_key(session, viewer, code, _as_of(as_of))  # scoped first: 404 for others
            files = packs.get(key)
            if files is None:
                with tempfile.TemporaryDirectory(prefix="jiebang-portal-") as tmp:
                    paths = views.audit_files(session, viewer, code, _as_of(as_of), Path(tmp))
                    files = {n: (p.suffix, p.read_bytes()) for n, p in paths.items()}
                packs[key] = files
                while len(packs) > 8:
                    packs.popitem(last=False)
        if name not in files:
            raise NotFound(name)
        suffix, content = files[name]
        logged(viewer, "download", name.rsplit("/", 1)[-1], request)
        return Response(content, media_type=DOWNLOAD_TYPES.get(suffix, "application/octet-stream"),
                        headers={"Content-Disposition": f'attachment; filename="{name.rsplit("/", 1)[-1]}"'})

    @app.get("/audit/{code}/verify", response_class=HTMLResponse, include_in_schema=False)
    def audit_verify(request: Request, viewer: Signed, code: str):
        """Never from the cache: the point is to check the chain now."""
        kind(viewer, "auditor")
        with scoped_session(engine, viewer) as session:
            require_project(session, viewer, code)
            data = views.verification(session, viewer)
        return page(request, "verify.html", data=data, code=code)

    @app.get("/dashboard", response_class=HTMLResponse, include_in_schema=False)
    def dashboard(request: Request, viewer: Signed, as_of: str | None = None, page_no: Annotated[int, Query(alias="page")] = 1):
        kind(viewer, "bureau")
        _as_of(as_of)

        def make(session):
            data = dashboard_data(session, viewer, as_of)
            pages = max(1, -(-len(data["projects"]) // DASHBOARD_PAGE))
            if not 1 <= page_no <= pages:
                raise NotFound(page_no)
            first = (page_no - 1) * DASHBOARD_PAGE
            shown = data["projects"][first:first + DASHBOARD_PAGE]
            paging = {"page": page_no, "pages": pages, "size": DASHBOARD_PAGE, "total": len(data["projects"]),
                      "first": first + 1, "last": first + len(shown), "links": _page_links(page_no, pages),
                      "query": f"as_of={data['as_of']}&" if as_of else ""}
            return page(request, "dashboard.html", data=data, projects=shown, paging=paging,
                        chart=forecast_chart(data["forecast"]["summary"]), due_kinds=_due_by_kind(data["due"]),
                        due_shown=data["due"][:DASHBOARD_DUE_SHOWN])

        return answer(request, viewer, make)

    # --- JSON API ---------------------------------------------------------------------------

    @app.get("/api/v1/me", tags=["all"], summary="The signed-in account")
    def api_me(viewer: Signed) -> dict:
        return {"login": viewer.login, "kind": viewer.kind, "name": viewer.display_name, "party": viewer.party_uscc,
                "projects": list(viewer.projects)}

    @app.get("/api/v1/status", tags=["enterprise"], summary="The enterprise's status report (as `report status --format json`)")
    def api_status(request: Request, viewer: Signed,
                   as_of: Annotated[str | None, Query(description="YYYY-MM-DD")] = None) -> dict:
        kind(viewer, "enterprise")
        when = _as_of(as_of)
        return answer(request, viewer, lambda session: json_answer(enterprise_data(session, viewer, "home", when)))

    @app.get("/api/v1/projects/{code}", tags=["enterprise"], summary="One project of the enterprise, per lane")
    def api_project(request: Request, viewer: Signed, code: str, as_of: str | None = None, lane: str | None = None) -> dict:
        kind(viewer, "enterprise")
        when = _as_of(as_of)
        return answer(request, viewer, lambda session: json_answer(enterprise_data(session, viewer, "project", when, code, lane)))

    @app.get("/api/v1/audit", tags=["auditor"], summary="The auditor's assigned projects")
    def api_audit_home(request: Request, viewer: Signed) -> dict:
        kind(viewer, "auditor")
        return answer(request, viewer, lambda session: json_answer(views.auditor_home(session, viewer)))

    @app.get("/api/v1/audit/{code}", tags=["auditor"], summary="The audit pack's sections for a cut-off")
    def api_audit(request: Request, viewer: Signed, code: str, as_of: str | None = None) -> dict:
        kind(viewer, "auditor")
        _as_of(as_of)
        return answer(request, viewer, lambda session: json_answer(audit_data(session, viewer, code, as_of)))

    @app.get("/api/v1/audit/{code}/verify", tags=["auditor"], summary="Verification of the whole chain")
    def api_verify(viewer: Signed, code: str) -> dict:
        kind(viewer, "auditor")
        with scoped_session(engine, viewer) as session:
            require_project(session, viewer, code)
            return views.verification(session, viewer)

    @app.get("/api/v1/dashboard", tags=["bureau"], summary="Budget, forecast, projects by city/mode/status, due list")
    def api_dashboard(request: Request, viewer: Signed, as_of: str | None = None) -> dict:
        kind(viewer, "bureau")
        _as_of(as_of)
        return answer(request, viewer, lambda session: json_answer(dashboard_data(session, viewer, as_of)))

    return app


def _page_links(current: int, pages: int) -> list[int | None]:
    """The page numbers to link: the first, the last and two either side of the current one
    (None where numbers are left out)."""
    wanted = {1, pages, *range(current - 2, current + 3)}
    links: list[int | None] = []
    for n in sorted(w for w in wanted if 1 <= w <= pages):
        if links and links[-1] is not None and n > links[-1] + 1:
            links.append(None)
        links.append(n)
    return links


class SecurityHeaders:
    """The security headers on every answer (a plain ASGI middleware: Starlette's
    ``BaseHTTPMiddleware`` costs a task and a stream per request)."""

    def __init__(self, app):
        self.app = app
        self.raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in SECURITY_HEADERS.items()]

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def with_headers(message):
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _v in message.get("headers", [])}
                message["headers"] = [*message.get("headers", []), *(h for h in self.raw if h[0] not in present)]
            await send(message)

        return await self.app(scope, receive, with_headers)


def _due_by_kind(due: list[dict]) -> list[dict]:
    """The due list counted and summed by kind, in the order the kinds first appear (the list
    is by date): what a reader of the dashboard takes in before the items themselves."""
    from ledger.core.money import format_fen, parse_fen

    kinds: dict[str, dict] = {}
    for item in due:
        row = kinds.setdefault(item["kind"], {"kind_zh": item["kind_zh"], "count": 0, "amount_fen": 0})
        row["count"] += 1
        if item["amount"] is not None:
            row["amount_fen"] += parse_fen(item["amount"])
    return [{**row, "amount": format_fen(row["amount_fen"]) if row["amount_fen"] else None} for row in kinds.values()]

