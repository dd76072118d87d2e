"""The audit ledger (append-only, hash-chained, checkpointed), its keys and verification;
also the audit database (``database``) and its Alembic migrations, which hold the ledger's
tables and those of ``state``."""
