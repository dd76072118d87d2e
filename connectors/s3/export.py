"""Exporting a subject's objects for an access package: every version, not just the current.

Per found object version (not delete markers, which hold no data; not replicas, which hold
copies) the object is read at that version: older versions are personal data the company
still holds, until erasure purges them too. Bodies up to ``max_bytes`` are included
base64-encoded; larger objects are exported as metadata only, with a note, so one huge
object cannot exhaust memory.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from connectors.base import ExportItem, Findings
from connectors.s3.client import s3_errors
from connectors.s3.locate import REPLICA_VIA

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

DEFAULT_MAX_BYTES = 5 * 1024 * 1024


def export_objects(
    client: S3Client, store: str, findings: Findings, max_bytes: int = DEFAULT_MAX_BYTES
) -> Iterator[ExportItem]:
    """One ExportItem per object version of the subject: metadata and (bounded) body.

    Every version is exported, not just the current one: older versions are personal data
    the company still holds. Delete markers hold no data; replicas hold copies.
    """
    for target in findings.targets:
        if target.via.startswith(REPLICA_VIA):
            continue
        versions = sorted((str(k[0]), str(k[1])) for k in target.keys if not k[2])
        for name, version in versions:
            with s3_errors(store, "export", target.target):
                data = _read(client, target.target, name, version, max_bytes)
            yield ExportItem(store, target.target, target.categories, data)


def _read(client: S3Client, bucket: str, key: str, version: str, max_bytes: int) -> dict[str, Any]:
    # An unversioned bucket's only version is "null"; reading it without a VersionId is
    # the same object and works on every S3-compatible server.
    obj = (
        client.get_object(Bucket=bucket, Key=key)
        if version in ("null", "None", "")
        else client.get_object(Bucket=bucket, Key=key, VersionId=version)
    )
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
