"""The intake service: help desks and operators register requests over HTTP.

Identities arrive here, are sealed in our request register (``engine.intake.submit``, as
the CLI does) and never reach Prefect: the flow run created holds the request id only.

- ``app``: the FastAPI application (webhook, page, health); ``__main__`` serves it.
- ``signing`` and ``auth``: HMAC signatures and the shared secret; basic auth and the
  cross-site check.
- ``idempotency``: no request registered twice, kept in the audit database: a delivery
  seen before (409) and a ticket whose request is still open (200, that request).
- ``models`` and ``page``: what a request carries, its problems (fields, never values),
  the HTML.
- ``service`` and ``reference``: registering and starting the flow run; the ticket kept
  as the request's external reference.
- ``callback``: ``notify_help_desk``, the result reported back to the ticket.

Nothing is imported here, so a flow run can use ``ops.intake.callback`` without loading
the web framework.
"""
