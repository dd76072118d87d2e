"""Our own record of the jobs' state, beside the ledger in the audit database: the request
register and its sealed identities, request progress, runs and approvals, leases, sweep
progress and transfer-check results. Tables share the ledger's metadata and Alembic
history (``audit.migrate``); every change that matters is also a ledger event."""
