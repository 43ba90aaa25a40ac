"""Console pages: sign-in, review queue, inspection, actions ledger, dashboard."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
import time
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    g,
    make_response,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_wtf.csrf import CSRFError, generate_csrf, validate_csrf
from marshmallow import ValidationError
from sqlalchemy import select, update
from werkzeug.exceptions import HTTPException
from wtforms.validators import ValidationError as WTFValidationError

from api import db
from api.blueprints.common import csv_response
from api.console.i18n import UI, lang, pick, t
from api.downloads import (
    compliance_chart_response,
    display_names,
    inspection_report,
    variant_response,
)
from api.extensions import (
    limiter,
    login_account_key,
    login_account_limit,
    login_address_key,
    login_address_limit,
)
from api.i18n import LANGUAGES, error_message
from api.rules import sync_rules
from api.security import authenticate, current_scope
from inspections import action_service, reports, review
from media import uploads
from org.paging import page_of
from schemas.actions import ActionQuery
from schemas.common import PeriodBound
from schemas.inspections import InspectionQuery
from store.enums import REVIEWER_ROLES
from store.errors import DomainError, Unauthorized
from store.models import RefreshToken, Region, Site, SiteAssignment, TemplateVersion, User
from store.types import from_epoch_ms, utcnow
from sync import conflicts
from sync.tables import TABLES

bp = Blueprint(
    "console",
    __name__,
    url_prefix="/console",
    template_folder="templates",
    static_folder="static",
    static_url_path="/static",
)

PAGE_SIZE = 25
PUBLIC = {"console.login", "console.static", "console.language"}
GROUPS = ("region", "site", "template", "inspector", "day", "week", "month")
# The dashboard's days: the API's report range (schemas/common.py: PeriodBound), the end day
# included, so its period ends at midnight after it; 9999-12-31 has no day after it.
FIRST_DAY, LAST_DAY = PeriodBound.FIRST_DAY, PeriodBound.LAST_DAY
# A console sign-in is a row of refresh_tokens in a family of its own, "console:<session id>"
# (never a token the API hands out): sign-out revokes it, and so does everything that ends a
# user's sign-ins (a password change or a deactivation: org/admin.py revoke_refresh_tokens).
SESSION_FAMILY = "console:"


# --- session, language, CSRF --------------------------------------------------------------


@bp.before_request
def _before() -> Any:
    chosen = session.get("lang")
    if chosen in LANGUAGES:
        g.lang = chosen
    if request.method == "POST":
        # PostgreSQL text cannot hold NUL: a field holding one would fail inside the query
        # (the API refuses it in the address and in JSON bodies alike: api/jsonio.py).
        if any("\x00" in k or "\x00" in v for k, v in request.form.items(multi=True)):
            return _page_error(400, t("nul_character"))
        try:
            validate_csrf(request.form.get("csrf_token"))
        except (CSRFError, WTFValidationError):
            return _page_error(400, t("session_expired"))
    if request.endpoint in PUBLIC:
        return None
    user = _session_user()
    if user is None:
        return redirect(url_for("console.login", next=request.full_path))
    g.user = user
    if user.role not in REVIEWER_ROLES:
        return _page_error(403, t("for_reviewers"))
    return None


def _credential(user: User) -> str:
    """A short fingerprint of the user's password hash: a new password ends every session
    signed in with the old one."""
    return hashlib.sha256(user.password_hash.encode()).hexdigest()[:16]


def _session_user() -> User | None:
    uid, sid, signed_at = session.get("uid"), session.get("sid"), session.get("at", 0)
    lifetime = current_app.permanent_session_lifetime.total_seconds()
    if not uid or not isinstance(sid, str) or time.time() - signed_at > lifetime:
        return None
    # The cookie is signed, but a copy of it outlives sign-out; the sign-in must still be live
    # on the server.
    user = (
        db.session()
        .execute(
            select(User)
            .join(RefreshToken, RefreshToken.user_id == User.id)
            .where(
                User.id == uid,
                RefreshToken.jti == sid,
                RefreshToken.family == SESSION_FAMILY + sid,
                RefreshToken.revoked_at.is_(None),
                RefreshToken.expires_at > utcnow(),
            )
        )
        .scalar_one_or_none()
    )
    if user is None or not user.active or session.get("cred") != _credential(user):
        return None
    return user


def _open_session(user: User) -> str:
    """Record a new sign-in on the server and commit it; returns its session id."""
    sid = secrets.token_hex(16)
    now = utcnow()
    db.session().add(
        RefreshToken(
            jti=sid,
            user_id=user.id,
            family=SESSION_FAMILY + sid,
            expires_at=now + current_app.permanent_session_lifetime,
            # Spent from the start: no refresh-token exchange can ever succeed on this row.
            used_at=now,
        )
    )
    db.commit()
    return sid


def _close_session(sid: Any) -> None:
    """Revoke one console sign-in (the user's other sessions stay) and commit."""
    if not isinstance(sid, str) or not sid:
        return
    db.session().execute(
        update(RefreshToken)
        .where(
            RefreshToken.jti == sid,
            RefreshToken.family == SESSION_FAMILY + sid,
            RefreshToken.revoked_at.is_(None),
        )
        .values(revoked_at=utcnow())
    )
    db.commit()


@bp.after_request
def _headers(resp: Any) -> Any:
    # Pages and their images come from this origin only; nothing may frame the console.
    resp.headers.setdefault(
        "Content-Security-Policy",
        "default-src 'self'; img-src 'self' data: https: http:; style-src 'self'; "
        "script-src 'self'; frame-ancestors 'none'; form-action 'self'",
    )
    resp.headers.setdefault("X-Frame-Options", "DENY")
    resp.headers.setdefault("Referrer-Policy", "same-origin")
    resp.headers.setdefault("X-Content-Type-Options", "nosniff")
    if resp.mimetype == "text/html":
        resp.headers["Cache-Control"] = "no-store"
        resp.headers["Content-Language"] = lang()
    return resp


@bp.app_context_processor
def _globals() -> dict[str, Any]:
    return {
        "t": t,
        "pick": pick,
        "lang": lang,
        "csrf_token": generate_csrf,
        "localtime": localtime,
        "me": lambda: g.get("user"),
        "UI": UI,
    }


@bp.errorhandler(DomainError)
def _domain_error(error: DomainError) -> Any:
    return _page_error(error.status, error_message(error.message, error.status, None, lang()))


@bp.errorhandler(HTTPException)
def _http_error(error: HTTPException) -> Any:
    return _page_error(error.code or 500, error.description or "")


def page_for_error(status: int, message: str) -> Any:
    """The console's error page, with its headers, for an error outside its views (an unknown
    console address, a method it does not take, a failure): not the API's JSON."""
    return _headers(make_response(_page_error(status, message)))


def _page_error(status: int, message: str) -> Any:
    titles = {403: "forbidden", 404: "not_found"}
    return (
        render_template(
            "console/error.html",
            status=status,
            title=t(titles.get(status, "error")),
            message=message,
        ),
        status,
    )


def localtime(value: Any, tz: str | None = None, fmt: str = "%Y-%m-%d %H:%M") -> str:
    """Epoch ms or an aware datetime, shown in the site's time zone."""
    if value is None or value == "":
        return "—"
    if isinstance(value, int | float):
        value = from_epoch_ms(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    try:
        zone = ZoneInfo(tz or "UTC")
    except (KeyError, ValueError):
        zone = ZoneInfo("UTC")
    try:
        return value.astimezone(zone).strftime(fmt)
    except OverflowError:
        # 9999-12-31 late in UTC is already year 10000 east of Greenwich: show it in UTC.
        return value.astimezone(dt.UTC).strftime(fmt) + " UTC"


@bp.route("/login", methods=["GET", "POST"])
# The API's sign-in limits, in the same shared scopes (api/blueprints/auth.py).
@limiter.shared_limit(
    login_account_limit,
    "login-account",
    key_func=login_account_key,
    methods=["POST"],
    deduct_when=lambda r: r.status_code == 401,
)
@limiter.shared_limit(
    login_address_limit,
    "login-address",
    key_func=login_address_key,
    methods=["POST"],
    deduct_when=lambda r: r.status_code == 401,
)
def login() -> Any:
    """Sign in with the same account as the API."""
    error = None
    status = 200
    if request.method == "POST":
        try:
            user = authenticate(
                db.session(), request.form.get("email", ""), request.form.get("password", "")
            )
        except Unauthorized as exc:
            error, status = error_message(exc.message, 401, None, lang()), 401
        else:
            chosen = session.get("lang")
            _close_session(session.get("sid"))  # this browser's earlier sign-in, if any
            sid = _open_session(user)
            session.clear()  # a fresh session on sign-in: no fixation
            session.permanent = True
            session.update(uid=user.id, sid=sid, at=int(time.time()), cred=_credential(user))
            if chosen:
                session["lang"] = chosen
            return redirect(_safe_next(request.args.get("next")))
    return render_template("console/login.html", error=error), status


def _safe_next(target: str | None) -> str:
    """Only ever redirect within the console."""
    return target if _is_console(target) else url_for("console.queue")


@bp.route("/logout", methods=["POST"])
def logout() -> Any:
    """Sign out: this sign-in ends on the server too, so a copy of the cookie stops working."""
    chosen = session.get("lang")
    _close_session(session.get("sid"))
    session.clear()
    if chosen:
        session["lang"] = chosen
    return redirect(url_for("console.login"))


@bp.route("/language/<code>")
def language(code: str) -> Any:
    """Switch the console's language."""
    if code in LANGUAGES:
        session["lang"] = code
    return redirect(_safe_next(request.args.get("next")))


# --- pages -------------------------------------------------------------------------------


def _clean_args(keys: tuple[str, ...]) -> dict[str, str]:
    return {k: v for k in keys if (v := request.args.get(k, "").strip())}


def _load(schema: Any, args: dict[str, str]) -> tuple[dict[str, Any], dict | None]:
    try:
        return schema.load(args), None
    except ValidationError as exc:
        return {}, exc.messages


def _choices() -> dict[str, Any]:
    """Sites, regions and checklists the user may filter by."""
    scope = current_scope()
    s = db.session()
    sites = s.execute(select(Site).where(scope.site_clause(Site.id)).order_by(Site.name)).scalars()
    versions = s.execute(
        select(TemplateVersion).order_by(TemplateVersion.template_key, TemplateVersion.version)
    ).scalars()
    templates = {v.template_key: v for v in versions}  # latest version's titles
    regions = s.execute(select(Region).order_by(Region.name)).scalars().all()
    if not scope.is_hq:
        regions = [r for r in regions if r.id == scope.region_id]
    inspectors = select(User).where(User.role == "inspector").order_by(User.name)
    if not scope.is_hq:
        assigned = select(SiteAssignment.user_id).where(
            scope.site_clause(SiteAssignment.site_id), SiteAssignment.revoked_at.is_(None)
        )
        inspectors = inspectors.where(User.id.in_(assigned))
    return {
        "sites": list(sites),
        "templates": templates,
        "regions": regions,
        "inspectors": list(s.execute(inspectors).scalars()),
    }


def _names(
    site_ids: Any = (), user_ids: Any = (), version_ids: Any = ()
) -> dict[str, dict[str, Any]]:
    """Sites, user names and template versions of the ids a page shows (not whole tables)."""
    s = db.session()

    def load(model: Any, ids: Any) -> dict[str, Any]:
        wanted = {i for i in ids if i}
        if not wanted:
            return {}
        return {x.id: x for x in s.execute(select(model).where(model.id.in_(wanted))).scalars()}

    users = load(User, user_ids)
    return {
        "sites": load(Site, site_ids),
        "users": {i: u.name for i, u in users.items()},
        "versions": load(TemplateVersion, version_ids),
    }


def _paged(stmt: Any) -> dict[str, Any]:
    """One page of a statement (`page` from the query string) with the pager's figures."""
    page = max(1, request.args.get("page", 1, type=int) or 1)
    items, total = page_of(db.session(), stmt, page, PAGE_SIZE)
    return {"items": items, "total": total, "page": page, "pages": max(1, -(-total // PAGE_SIZE))}


@bp.route("/")
def queue() -> Any:
    """The review queue: completed inspections newest first."""
    keys = (
        "status",
        "site_id",
        "region_id",
        "template_key",
        "passed",
        "critical_failed",
        "has_conflicts",
        "media_complete",
        "inspector_id",
    )
    args = _clean_args((*keys, "from", "to"))
    query = {k: v for k, v in args.items() if k in keys}
    # The form's dates are whole days at the sites shown, the end day included.
    zone = ZoneInfo(_days_zone(query.get("site_id"), query.get("region_id")))
    for field, name, shift in (("completed_from", "from", 0), ("completed_to", "to", 1)):
        if name in args:
            try:
                day = dt.date.fromisoformat(args[name]) + dt.timedelta(days=shift)
                query[field] = dt.datetime.combine(day, dt.time(), zone).isoformat()
            except (ValueError, OverflowError):  # not a date, or 9999-12-31 (no day after it)
                query[field] = args[name]  # let the schema name the bad value
    filters, invalid = _load(InspectionQuery(), query)
    listing = _paged(review.queue(current_scope(), filters))
    shown = listing["items"]
    return render_template(
        "console/queue.html",
        **listing,
        args=args,
        days_zone=zone.key,
        invalid=invalid,
        names=_names(
            [i.site_id for i in shown],
            [i.inspector_id for i in shown],
            [i.template_id for i in shown],
        ),
        choices=_choices(),
    )


@bp.route("/inspections/<inspection_id>")
def inspection(inspection_id: str) -> Any:
    """One inspection: header, failed items first with photos, signatures, conflicts, audit."""
    view = review.detail(db.session(), current_scope(), inspection_id)
    pending = [c for c in view["conflicts"] if c.resolved_at is None]
    current = {c.id: _current_value(c) for c in pending}
    return render_template(
        "console/inspection.html",
        v=view,
        pending=pending,
        current=current,
        names=_names(user_ids=[e.actor_id for e in view["audit"]]),
    )


def _attempt(change: Any, done: str) -> None:
    """Make a change and commit it; a refusal the person can fix (422) becomes a message on
    the page they return to, anything else the error page."""
    try:
        change()
    except DomainError as exc:
        if exc.status != 422:
            raise
        flash(error_message(exc.message, 422, None, lang()), "error")
    else:
        db.commit()
        flash(t(done), "ok")


def _current_value(conflict: Any) -> Any:
    record = conflicts.current_record(db.session(), conflict) or {}
    return record.get(conflict.column) if conflict.column else None


@bp.route("/inspections/<inspection_id>/decide", methods=["POST"])
def decide(inspection_id: str) -> Any:
    """Approve or return for rework (a comment is required to return)."""
    decision = request.form.get("decision")
    if decision not in ("approve", "return"):
        abort(400)
    _attempt(
        lambda: review.decide(
            db.session(),
            current_scope(),
            sync_rules(),
            inspection_id,
            decision,
            request.form.get("comment"),
        ),
        "approved_msg" if decision == "approve" else "returned_msg",
    )
    return redirect(url_for("console.inspection", inspection_id=inspection_id))


@bp.route("/conflicts/<conflict_id>/resolve", methods=["POST"])
def resolve_conflict(conflict_id: str) -> Any:
    """Keep the server's value, take the device's, or write an edited one."""
    resolution = request.form.get("resolution")
    if resolution not in ("keep_server", "take_device", "edit"):
        abort(400)
    conflict = conflicts.get(db.session(), current_scope(), conflict_id, write=True)
    back = (
        url_for("console.inspection", inspection_id=conflict.inspection_id)
        if conflict.inspection_id
        else url_for("console.queue")
    )
    value = None
    if resolution == "edit":
        try:
            value = _typed(conflict, request.form.get("value", ""))
        except ValueError:
            flash(t("bad_value"), "error")
            return redirect(back)
    _attempt(
        lambda: conflicts.resolve(
            db.session(), current_scope(), conflict_id, resolution, value, sync_rules()
        ),
        "conflict_resolved_msg",
    )
    return redirect(back)


def _typed(conflict: Any, text: str) -> Any:
    """The edited value as its column's type: text as typed, anything else as JSON."""
    spec = TABLES.get(conflict.table_name)
    column = spec.columns.get(conflict.column or "") if spec else None
    if column is not None and column.kind in ("str", "text", "id"):
        return text
    return orjson.loads(text)


@bp.route("/inspections/<inspection_id>/report.pdf")
def report_pdf(inspection_id: str) -> Any:
    """The PDF report."""
    return inspection_report(current_scope(), inspection_id)


@bp.route("/files/<attachment_id>/<any(original, preview, thumb):variant>")
def file(attachment_id: str, variant: str) -> Any:
    """A photo or signature variant, in scope."""
    scope = current_scope()
    att = uploads.get_for_download(
        db.session(), attachment_id, sees_site=scope.sees_site, user_id=scope.user_id
    )
    return variant_response(att, variant)


@bp.route("/actions")
def actions() -> Any:
    """The corrective-actions ledger: filters, overdue highlighted, evidence, verify/reopen."""
    args = _clean_args(("site_id", "region_id", "status", "priority", "overdue"))
    filters, invalid = _load(ActionQuery(), args)
    listing = _paged(action_service.ledger(current_scope(), filters))
    action_service.decorate(db.session(), listing["items"])
    return render_template(
        "console/actions.html",
        **listing,
        args=args,
        invalid=invalid,
        names=_names(site_ids=[a.site_id for a in listing["items"]]),
        choices=_choices(),
    )


@bp.route("/actions/<action_id>/transition", methods=["POST"])
def action_transition(action_id: str) -> Any:
    """Verify or reopen an action."""
    target = request.form.get("status")
    if target not in ("verified", "reopened"):
        abort(400)
    _attempt(
        lambda: action_service.transition(
            db.session(), current_scope(), action_id, target, request.form.get("note") or None
        ),
        "action_updated_msg",
    )
    return redirect(
        request.form.get("back")
        if _is_console(request.form.get("back"))
        else url_for("console.actions")
    )


def _is_console(target: str | None) -> bool:
    """A path within the console, and nothing a Location header cannot carry (a line break
    there is refused by the server itself: it made the redirect a 500)."""
    return (
        bool(target)
        and target.startswith("/console/")
        and not target.startswith("//")
        and target.isprintable()
    )


def _zones_shown(site_id: str | None = None, region_id: str | None = None) -> set[str]:
    """The time zones of the sites shown."""
    stmt = select(Site.timezone).distinct().where(current_scope().site_clause(Site.id))
    if site_id:
        stmt = stmt.where(Site.id == site_id)
    if region_id:
        stmt = stmt.where(Site.region_id == region_id)
    return set(db.session().execute(stmt).scalars())


def _days_zone(site_id: str | None = None, region_id: str | None = None) -> str:
    """The time zone the queue's dates are days in: the one every site shown shares, else
    UTC."""
    zones = _zones_shown(site_id, region_id)
    return zones.pop() if len(zones) == 1 else "UTC"


def _report_args() -> tuple[dict[str, Any], dict[str, str]]:
    """Period (days at each site, end inclusive), filters and grouping from the dashboard's
    form."""
    raw = _clean_args(("start", "end", "region_id", "site_id", "template_key"))
    zones = _zones_shown(raw.get("site_id"), raw.get("region_id"))
    # One zone: "today" is that zone's; several: each site's days, and today is UTC's.
    raw["zone"] = zones.pop() if len(zones) == 1 else ""
    today = utcnow().astimezone(ZoneInfo(raw["zone"] or "UTC")).date()
    try:
        start = dt.date.fromisoformat(raw.get("start", ""))
    except ValueError:
        start = today - dt.timedelta(days=27)
    try:
        end = dt.date.fromisoformat(raw.get("end", ""))
    except ValueError:
        end = today
    if end < start:
        start, end = end, start
    if start < FIRST_DAY or end > LAST_DAY:
        abort(400, t("dates_out_of_range"))
    group_by = [gb for gb in request.args.getlist("group_by") if gb in GROUPS] or ["site"]
    raw.update(start=start.isoformat(), end=end.isoformat())
    start, end = reports.period(start, end)
    query = {
        "start": start,
        "end": end,
        "group_by": group_by,
        **{k: raw[k] for k in ("region_id", "site_id", "template_key") if k in raw},
    }
    return query, raw


@bp.route("/dashboard")
def dashboard() -> Any:
    """The compliance summary with its chart, CSV download and most-failed items."""
    query, raw = _report_args()
    scope, s = current_scope(), db.session()
    rows = reports.compliance(
        s, scope, query["start"], query["end"], query["group_by"], query, utcnow()
    )
    failing = reports.failing_items(s, scope, query["start"], query["end"], query, 10)
    labels = _item_labels()
    for row in failing:
        row["label"] = labels.get((row["template_key"], row["item_key"]))
    qs = request.query_string.decode()
    return render_template(
        "console/dashboard.html",
        rows=rows,
        failing=failing,
        group_by=query["group_by"],
        groups=GROUPS,
        metrics=reports.METRICS,
        raw=raw,
        names=display_names(),
        choices=_choices(),
        qs=qs,
    )


def _item_labels() -> dict[tuple[str, str], Any]:
    from inspections.template_rules import iter_items

    labels: dict[tuple[str, str], Any] = {}
    for v in (
        db.session().execute(select(TemplateVersion).order_by(TemplateVersion.version)).scalars()
    ):
        for _section, item in iter_items(v.body):
            labels[(v.template_key, item["key"])] = item.get("label")
    return labels


@bp.route("/dashboard/chart.png")
def dashboard_chart() -> Any:
    """The dashboard's chart."""
    query, _raw = _report_args()
    return compliance_chart_response(
        current_scope(), query["start"], query["end"], query["group_by"], query, "png", utcnow()
    )


@bp.route("/dashboard/compliance.csv")
def dashboard_csv() -> Any:
    """The dashboard's table as CSV."""
    query, _raw = _report_args()
    rows = reports.compliance(
        db.session(),
        current_scope(),
        query["start"],
        query["end"],
        query["group_by"],
        query,
        utcnow(),
    )
    return csv_response(rows, [*query["group_by"], *reports.METRICS], "compliance")
