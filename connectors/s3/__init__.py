"""The S3 connector: a subject's object versions found by key templates (and tags), erased
version by version (delete markers and replicas included) under legal holds and Object
Lock, verified by listing again. ``S3Connector`` is the entry point.
"""

from connectors.s3.connector import S3Connector

__all__ = ["S3Connector"]
