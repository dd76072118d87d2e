"""Thin Prefect flows: they orchestrate tasks and hold no store logic of their own."""
