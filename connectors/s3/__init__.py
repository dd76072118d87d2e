"""The S3 connector: a subject's object versions found by key templates (and tags), erased
version by version (delete markers and replicas included) under legal holds and Object
Lock, verified by listing again. ``connectors.s3.connector.S3Connector`` is the entry
point; the store's configuration model is in ``connectors.s3.config``.

This package imports nothing itself: loading the configuration imports
``connectors.s3.config`` without boto3 or the connector.
"""
