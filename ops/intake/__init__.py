"""The intake service: help desks and operators register requests over HTTP.

Identities arrive here, are sealed in our request register (``engine.intake.submit``, as
the CLI does) and never reach Prefect: the flow run created holds the request id only.

- ``app``: the FastAPI application (webhook, page, health); ``__main__`` serves it.
- ``signing`` and ``auth``: HMAC signatures and the shared secret; basic auth, the
  cross-site check and the replay guard.
- ``models`` and ``page``: what a request carries, its problems (fields, never values),
  the HTML.
- ``service`` and ``reference``: registering and starting the flow run; the ticket kept
  as the request's external reference.
- ``callback``: ``notify_help_desk``, the result reported back to the ticket.

Nothing is imported here, so a flow run can use ``ops.intake.callback`` without loading
the web framework.
"""
