"""Exporting a subject's current objects for an access package.

Per found object key (not replicas: they hold copies), the current version is read; a
key whose current version is a delete marker has no current object and is skipped
(older versions are not "the data we hold" for access purposes, but they are erased).
Bodies up to ``max_bytes`` are included base64-encoded; larger objects are exported as
metadata only, with a note, so one huge object cannot exhaust memory.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from connectors.base import ExportItem, Findings
from connectors.s3.client import error_code, s3_errors
from connectors.s3.locate import REPLICA_VIA

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

DEFAULT_MAX_BYTES = 5 * 1024 * 1024


def export_objects(
    client: S3Client, store: str, findings: Findings, max_bytes: int = DEFAULT_MAX_BYTES
) -> Iterator[ExportItem]:
    """One ExportItem per current object of the subject: metadata and (bounded) body."""
    for target in findings.targets:
        if target.via.startswith(REPLICA_VIA):
            continue
        names = sorted({str(k[0]) for k in target.keys if not k[2]})
        for name in names:
            with s3_errors(store, "export", target.target):
                data = _read(client, target.target, name, max_bytes)
            if data is not None:
                yield ExportItem(store, target.target, target.categories, data)


def _read(client: S3Client, bucket: str, key: str, max_bytes: int) -> dict[str, Any] | None:
    try:
        obj = client.get_object(Bucket=bucket, Key=key)
    except ClientError as e:
        if error_code(e) in ("NoSuchKey", "404"):
            return None  # the current version is a delete marker
        raise
    body = obj["Body"]
    size = int(obj.get("ContentLength", 0))
    data: dict[str, Any] = {
        "bucket": bucket,
        "key": key,
        "version_id": obj.get("VersionId") or "null",
        "size": size,
        "last_modified": obj["LastModified"].isoformat() if "LastModified" in obj else None,
        "content_type": obj.get("ContentType"),
        "metadata": dict(obj.get("Metadata", {})),
    }
    try:
        if size > max_bytes:
            data["body_omitted"] = f"object larger than {max_bytes} bytes: metadata only"
        else:
            data["body_base64"] = base64.b64encode(body.read()).decode("ascii")
    finally:
        body.close()
    return data
