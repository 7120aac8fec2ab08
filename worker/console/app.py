"""The operator's console (`vendorwatch serve`): one page to act from, server-rendered (Flask, Jinja), no script.

Every page but /login, /healthz, /readyz and /metrics wants a logged-in user; every form carries a CSRF token
(Flask-WTF's CSRFProtect refuses a POST without a valid one); every answer carries security headers. The actions
call the same plain functions as the CLI (alerts.operations, worker.reruns) and record who did them.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets as random_secrets
from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import Flask, Response, abort, flash, g, redirect, render_template, request, session, url_for
from flask_wtf.csrf import CSRFError, CSRFProtect

from config import Config
from config.settings import Settings
from worker.console.users import authenticate

log = logging.getLogger(__name__)
SESSION_HOURS = 8
RERUNS = {"ingest": "ingest.scan_inbox", "evaluate": "alerts.evaluate", "pull": "feeds.pull_all",
          "digest": "digest.weekly"}
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
    "Cache-Control": "no-store",
}


def create_console(settings: Settings, users: dict[str, str], config: Callable[[], Config]) -> Flask:
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=settings.console_secret_key or random_secrets.token_hex(32),
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Strict",
        SESSION_COOKIE_SECURE=settings.console_secure_cookie,
        SESSION_COOKIE_NAME="vendorwatch_session",
        PERMANENT_SESSION_LIFETIME=dt.timedelta(hours=SESSION_HOURS),
        WTF_CSRF_TIME_LIMIT=SESSION_HOURS * 3600,
        WTF_CSRF_SSL_STRICT=settings.console_secure_cookie,
    )
    if not settings.console_secret_key:
        log.warning("VENDORWATCH_CONSOLE_SECRET_KEY is not set: sessions end when the console restarts")
    CSRFProtect(app)
    app.extensions["vendorwatch"] = {"settings": settings, "users": users, "config": config}
    register_hooks(app)
    register_pages(app)
    register_probes(app)
    return app


def register_hooks(app: Flask) -> None:
    @app.after_request
    def security_headers(response: Response) -> Response:
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        if app.config["SESSION_COOKIE_SECURE"]:
            response.headers.setdefault("Strict-Transport-Security", "max-age=31536000")
        return response

    @app.errorhandler(CSRFError)
    def csrf_refused(error: CSRFError) -> tuple[str, int]:
        return render_template("error.html", title="Form expired or forged",
                               message="The form was refused (missing or invalid CSRF token). Reload the page "
                                       "and try again."), 400

    @app.before_request
    def current_user() -> None:
        g.user = session.get("user")
        if g.user is not None and g.user not in context()["users"]:
            session.clear()  # a user removed from the list is logged out at their next request
            g.user = None


def context() -> dict[str, Any]:
    from flask import current_app

    return current_app.extensions["vendorwatch"]


def login_required(view: Callable[..., Any]) -> Callable[..., Any]:
    @wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if g.user is None:
            if request.method != "GET":
                abort(401)
            return redirect(url_for("login", next=request.path))
        return view(*args, **kwargs)

    return wrapped


def safe_next(target: str | None) -> str:
    """Only a path on this site: never an open redirect to another host."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return url_for("index")


def register_pages(app: Flask) -> None:
    from worker.console import pages

    @app.get("/login")
    def login() -> str:
        return render_template("login.html", next=safe_next(request.args.get("next")), failed=False)

    @app.post("/login")
    def login_post() -> Any:
        name, password = request.form.get("username", ""), request.form.get("password", "")
        if not authenticate(context()["users"], name, password):
            log.warning("console: failed login")  # never the name typed: it may be a password in the wrong box
            return render_template("login.html", next=safe_next(request.form.get("next")), failed=True), 401
        session.clear()  # a fresh session: no fixation
        session.permanent = True
        session["user"] = name
        log.info("console: %s logged in", name)
        return redirect(safe_next(request.form.get("next")))

    @app.post("/logout")
    def logout() -> Any:
        session.clear()
        return redirect(url_for("login"))

    @app.get("/")
    @login_required
    def index() -> str:
        return render_template("index.html", **pages.overview(context()["config"]()))

    @app.post("/alerts/<int:alert_id>/acknowledge")
    @login_required
    def acknowledge(alert_id: int) -> Any:
        flash(*pages.acknowledge(alert_id, g.user))
        return redirect(url_for("index") + "#alerts")

    @app.post("/silences")
    @login_required
    def silence() -> Any:
        flash(*pages.silence(context()["config"](), request.form, g.user))
        return redirect(url_for("index") + "#practices")

    @app.post("/reruns/<kind>")
    @login_required
    def rerun(kind: str) -> Any:
        if kind not in RERUNS:
            abort(404)
        flash(*pages.rerun(context()["config"](), RERUNS[kind], request.form, g.user))
        return redirect(url_for("index") + "#reruns")


def register_probes(app: Flask) -> None:
    from worker.console import probes

    csrf = app.extensions["csrf"]

    @app.get("/healthz")
    def healthz() -> tuple[dict[str, str], int]:
        return {"status": "ok"}, 200

    @app.get("/readyz")
    def readyz() -> tuple[dict[str, Any], int]:
        report = probes.readiness(context()["settings"])
        return report, 200 if report["ready"] else 503

    @app.get("/metrics")
    def metrics() -> Response:
        token = context()["settings"].console_metrics_token
        if token and not random_secrets.compare_digest(request.headers.get("Authorization", ""), f"Bearer {token}"):
            abort(401)
        return Response(probes.metrics(context()["settings"], context()["config"]), mimetype=None,
                        content_type=probes.METRICS_CONTENT_TYPE)

    for view in (healthz, readyz, metrics):
        csrf.exempt(view)
