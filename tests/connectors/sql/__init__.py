"""Tests of the SQL connector."""
