"""Tests of the S3 connector (moto in-process)."""
