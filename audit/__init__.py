"""The audit ledger (append-only, hash-chained, checkpointed) and the request register."""
