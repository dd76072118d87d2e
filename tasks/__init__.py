"""Prefect tasks: each wraps one side effect on one connector or the ledger."""
