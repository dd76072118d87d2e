"""Engines that need no Prefect: subject-request steps, intake, approval decisions, the
retention sweep's runner and holds, the request and sweep leases, and the one ledger-event
builder (``engine.events``). Prefect tasks (``tasks``) wrap them; the CLI, the intake
server and the benchmarks call them directly. No module here imports Prefect
(``tests/engine/test_prefect_free.py``)."""
