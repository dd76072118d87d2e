"""The intake service's HTTP interface (FastAPI), bound to 127.0.0.1 by ``__main__``.

- ``POST /webhook/requests``: a help desk's JSON, signed (``signing``); a missing, stale
  or forged signature is refused with 401 and logged without the body. A delivery seen
  before is answered 409 with the request it became, never registered twice, also after a
  restart of the service and when two copies arrive at once: deliveries are remembered in
  the audit database, in the registering transaction (``idempotency``). A ticket id whose
  request of the same kind is still open is answered 200 with that request
  (``already_registered``), registering nothing; once that request is closed, the ticket
  may start a new one.
- ``GET /`` and ``POST /requests``: the intake page and its form (or JSON), behind the
  local Prefect server's basic-auth credentials.
- ``GET /healthz``: liveness, for ``lifecycle server``; says nothing else.

Both ways in register through ``service.Intake`` and answer 201 with the request id, its
flow run id and status (200 and the open request, for a ticket already registered).
Refusals are 422 (400 for a body that is not JSON or a form) naming each field and what
is wrong, never a submitted value; FastAPI's own validation handler (which echoes the
input) is replaced, and the schema and docs pages are off. No response carries an
identity value.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from core.errors import LifecycleError, TransientError
from ops.intake import page
from ops.intake.auth import REALM, basic_auth_ok, cross_site
from ops.intake.idempotency import Delivery, RepeatedDelivery
from ops.intake.models import (
    IntakeRefused,
    IntakeRequest,
    Problem,
    loc_name,
    parse_form,
    parse_json,
    scrub,
)
from ops.intake.service import Intake, IntakeResult
from ops.intake.signing import SignatureRefused, load_secret, verify

log = logging.getLogger("lifecycle.intake")

MAX_BODY = 64 * 1024
FORM = "application/x-www-form-urlencoded"
JSON_TYPE = "application/json"
REFUSED = "request refused; nothing was registered"
ALREADY = "this ticket already has an open request of this kind; nothing new was registered"
REPEATED = "this delivery was received before"


@dataclass(frozen=True)
class IntakeConfig:
    """The page's ``user:password`` and the webhook's secret (None: that way is closed)."""

    page_auth: str | None = field(repr=False)
    webhook_secret: bytes | None = field(repr=False)
    tolerance: float = 300.0

    @classmethod
    def from_settings(cls, credentials: Path | None) -> IntakeConfig:
        """From the settings, and the server's credentials file when given."""
        from config.settings import get_settings
        from ops.serve_env import read_credentials

        settings = get_settings()
        auth = None if credentials is None else read_credentials(credentials).auth_string
        return cls(
            page_auth=auth,
            webhook_secret=load_secret(settings),
            tolerance=float(settings.intake_signature_tolerance_seconds),
        )


class _BodyTooLarge(Exception):
    pass


async def _body(request: Request) -> bytes:
    """The raw body, refused past ``MAX_BODY`` bytes without reading the rest."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY:
        raise _BodyTooLarge
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise _BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def _refusal(problems: list[Problem], status: int, html: bool, values: list[str]) -> Response:
    clean = scrub(problems, values)
    if html:
        return HTMLResponse(page.problems_page(clean), status, headers=page.HEADERS)
    return JSONResponse({"error": REFUSED, "problems": [p.as_dict() for p in clean]}, status)


def _created(result: IntakeResult, html: bool) -> Response:
    if html:
        text = page.result_page(
            result.request_id, result.flow_run_id, result.status, result.problem
        )
        return HTMLResponse(text, 201, headers=page.HEADERS)
    return JSONResponse(
        result.model_dump(exclude_none=True) | {"flow_run_id": result.flow_run_id}, 201
    )


def _existing(result: IntakeResult, html: bool) -> Response:
    """The ticket's open request, registered before: 200, and no flow run is started."""
    if html:
        text = page.result_page(result.request_id, None, result.status, ALREADY, existing=True)
        return HTMLResponse(text, 200, headers=page.HEADERS)
    answer = {
        "request_id": result.request_id,
        "status": result.status,
        "already_registered": True,
        "message": ALREADY,
    }
    return JSONResponse(answer, 200)


def _failure(error: Exception, html: bool) -> Response:
    """A failure of ours (not of the input): 503 when it may clear, else 500."""
    if isinstance(error, LifecycleError):
        status, message = (503 if isinstance(error, TransientError) else 500), error.message
    else:
        status, message = 500, f"internal error ({type(error).__name__})"
    log.error("intake failed: %s", message)
    return _refusal([Problem(None, message)], status, html, [])


def _decode(body: bytes, content_type: str) -> IntakeRequest:
    """The request in ``body``; IntakeRefused (400 or 422) naming what is wrong."""
    try:
        if content_type == FORM:
            fields = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=64)
            return parse_form(fields)
        data: Any = json.loads(body)
    except (UnicodeDecodeError, ValueError, RecursionError):
        what = "form" if content_type == FORM else "JSON"
        raise IntakeRefused([Problem(None, f"the body is not valid {what}")], 400) from None
    return parse_json(data)


class _Routes:
    """The handlers, sharing the configuration and the registering service."""

    def __init__(self, config: IntakeConfig, service: Intake) -> None:
        self.config = config
        self.service = service

    async def register(
        self, body: bytes, ctype: str, channel: str, delivery: Delivery | None = None
    ) -> Response:
        """Decode, register and answer (refused, registered, or registered before)."""
        html = ctype == FORM
        values: list[str] = []
        try:
            req = _decode(body, ctype)
            values = req.values()
            result = await run_in_threadpool(self.service.register, req, delivery)
        except IntakeRefused as e:
            return _refusal(e.problems, e.status, html, values)
        except RepeatedDelivery as e:
            log.warning("webhook refused: a delivery received before (request %s)", e.request_id)
            return JSONResponse({"error": REPEATED, "request_id": e.request_id}, 409)
        except Exception as e:
            return _failure(e, html)
        if result.already_registered:
            log.info(
                "request %s already open for this ticket (from the %s); nothing registered",
                result.request_id,
                channel,
            )
            return _existing(result, html)
        log.info(
            "request %s registered from the %s (flow run %s)",
            result.request_id,
            channel,
            result.flow_run_id,
        )
        return _created(result, html)

    async def health(self) -> dict[str, str]:
        return {"status": "ok"}

    def _unauthorized(self, request: Request) -> Response | None:
        auth = self.config.page_auth
        if auth and basic_auth_ok(request.headers.get("authorization"), auth):
            return None
        return Response("authentication required\n", 401, {"WWW-Authenticate": REALM})

    async def form(self, request: Request) -> Response:
        refused = self._unauthorized(request)
        if refused is not None:
            return refused
        ctx = await run_in_threadpool(self.service.context)
        return HTMLResponse(page.form_page(ctx.config.identity_kinds()), headers=page.HEADERS)

    async def from_page(self, request: Request) -> Response:
        refused = self._unauthorized(request)
        if refused is not None:
            return refused
        if cross_site(request.headers):
            return Response("cross-site form posts are refused\n", 403)
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype not in (FORM, JSON_TYPE):
            return _refusal([Problem(None, f"send {JSON_TYPE} or a form")], 415, False, [])
        try:
            body = await _body(request)
        except _BodyTooLarge:
            return _refusal([Problem(None, "the body is too large")], 413, ctype == FORM, [])
        return await self.register(body, ctype, "page")

    async def from_webhook(self, request: Request) -> Response:
        try:
            body = await _body(request)
        except _BodyTooLarge:
            return _refusal([Problem(None, "the body is too large")], 413, False, [])
        client = request.client.host if request.client else "?"
        secret = self.config.webhook_secret
        if secret is None:
            log.warning("webhook refused: no shared secret is configured (from %s)", client)
            return JSONResponse({"error": "the webhook is not configured"}, 503)
        try:
            signature = verify(secret, request.headers, body, tolerance=self.config.tolerance)
        except SignatureRefused as e:
            log.warning("webhook refused: %s (%d bytes from %s)", e, len(body), client)
            return JSONResponse({"error": f"signature refused: {e}"}, 401)
        delivery = Delivery.of(signature, self.config.tolerance)
        return await self.register(body, JSON_TYPE, "webhook", delivery)


async def _invalid(_request: Request, error: Exception) -> Response:
    """FastAPI's validation errors without the input it would echo."""
    errors = error.errors() if isinstance(error, RequestValidationError) else []
    problems = [Problem(loc_name(e["loc"]), str(e["msg"])) for e in errors]
    return _refusal(problems, 422, False, [])


def create_app(config: IntakeConfig, intake: Intake | None = None) -> FastAPI:
    """The intake application; ``intake`` defaults to one that starts real flow runs."""
    routes = _Routes(config, intake if intake is not None else Intake())
    app = FastAPI(title="lifecycle intake", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_api_route("/healthz", routes.health, methods=["GET"])
    app.add_api_route("/", routes.form, methods=["GET"])
    app.add_api_route("/requests", routes.from_page, methods=["POST"])
    app.add_api_route("/webhook/requests", routes.from_webhook, methods=["POST"])
    return app
