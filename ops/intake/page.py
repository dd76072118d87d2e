"""The intake page: a plain HTML form, and the pages that answer its posts.

No script, no external resources; everything shown is escaped. Answers name request ids
and fields, never a submitted value: after a refusal the browser's Back button still
holds what was typed, the page does not echo it. Identity fields follow the inventory's
identity kinds.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from html import escape

from ops.intake.models import IDENTITY_PREFIX, Problem

HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "form-action 'self'; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}

_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:42rem;margin:2rem auto;padding:0 1rem}"
    "label{display:block;margin-top:.8rem;font-weight:600}"
    "input,select,textarea{width:100%;padding:.3rem;box-sizing:border-box}"
    "small{color:#555}.problem{color:#a00}button{margin-top:1.2rem;padding:.4rem 1.2rem}"
)


def _document(title: str, body: str) -> str:
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body><h1>{escape(title)}</h1>{body}</body></html>"
    )


def _field(name: str, label: str, hint: str = "", *, kind: str = "text") -> str:
    tag = (
        f'<textarea id="{name}" name="{name}" rows="3" autocomplete="off"></textarea>'
        if kind == "textarea"
        else f'<input id="{name}" name="{name}" type="{kind}" autocomplete="off">'
    )
    small = f"<small>{escape(hint)}</small>" if hint else ""
    return f'<label for="{name}">{escape(label)}</label>{tag}{small}'


def form_page(identity_kinds: Iterable[str]) -> str:
    """The form: kind, identities, corrections, package recipient, requester, ticket, note."""
    kinds = "".join(
        f'<option value="{k}">{k}</option>' for k in ("erasure", "access", "rectification")
    )
    identities = "".join(
        _field(f"{IDENTITY_PREFIX}{escape(k)}", f"Identity: {k}") for k in sorted(identity_kinds)
    )
    fields = [
        f'<label for="kind">Kind</label><select id="kind" name="kind">{kinds}</select>',
        identities,
        _field(
            "changes",
            "Corrections",
            "rectification: table.column=value, one per line",
            kind="textarea",
        ),
        _field(
            "recipient_public_key",
            "Package public key",
            "access: the subject's X25519 public key (base64)",
            kind="textarea",
        ),
        _field("passphrase", "Package passphrase", "access: instead of a key", kind="password"),
        _field("requested_by", "Requested by", "you (an operator or role, not the subject)"),
        _field("ticket", "Ticket", "the help-desk ticket id, if any"),
        _field("note", "Note", "no personal data (e-mail addresses, phone numbers are refused)"),
    ]
    body = (
        "<p>Registers a data-subject request. The identity is kept only encrypted in the "
        "request register; Prefect receives the request id alone.</p>"
        '<form method="post" action="/requests">'
        + "".join(fields)
        + '<button type="submit">Register</button></form>'
    )
    return _document("New data-subject request", body)


def result_page(
    request_id: str,
    flow_run_id: str | None,
    status: str,
    problem: str | None,
    *,
    existing: bool = False,
) -> str:
    """What a successful post shows: the request id, its flow run and status.

    ``existing``: the ticket's open request, registered earlier (nothing new was).
    """
    run = "named after the request" if existing else "not created"
    rows = [
        ("Request", request_id),
        ("Flow run", flow_run_id or run),
        ("Status", status),
    ]
    table = "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in rows)
    note = f'<p class="problem">{escape(problem)}</p>' if problem else ""
    body = f'<table>{table}</table>{note}<p><a href="/">Register another request</a></p>'
    return _document("Request already registered" if existing else "Request registered", body)


def problems_page(problems: Sequence[Problem], title: str = "Request refused") -> str:
    """What a refused post shows: each field and what is wrong; nothing was registered."""
    items = "".join(
        f"<li><strong>{escape(p.field or 'request')}</strong>: {escape(p.message)}</li>"
        for p in problems
    )
    body = (
        f'<ul class="problem">{items}</ul><p>Nothing was registered. Use your browser\'s '
        "Back button to correct the form (it still holds what you typed).</p>"
    )
    return _document(title, body)
