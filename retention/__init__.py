"""Retention policy resolution: which data a sweep acts on, and why (pure functions)."""
