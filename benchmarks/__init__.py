"""Runnable benchmarks; each prints ratios against a baseline and ends with one JSON line.

Start one as ``python -m benchmarks.<name>`` (as ``make bench`` does) or as
``python benchmarks/<name>.py``, from any directory: run as a script, a benchmark first puts
the repo root in place of benchmarks/ on ``sys.path``, which would otherwise let
benchmarks/audit.py, requests.py, ... shadow the packages and libraries of those names.
"""
