"""Runnable benchmarks; each prints ratios against a baseline and ends with one JSON line."""
