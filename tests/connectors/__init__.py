"""Tests of the store connectors."""
