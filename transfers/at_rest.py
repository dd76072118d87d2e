"""Encryption at rest as posture facts report it, in one shape for every store type.

An incident assessment asks whether affected data was unintelligible to whoever got it
(GDPR Art. 34(3)(a): encrypted, the key not compromised). Posture facts that know offer an
``at_rest`` property (``AtRestFacts``); ``at_rest_of`` reads it from any facts without
naming a store type, and says "not known" for facts that cannot tell.

What this states is where the data is encrypted on disk and who holds the key. Whether
that made the data unintelligible in a given breach is the assessor's judgement: storage
encryption managed by the provider (S3-managed keys, a KMS key the service uses on the
caller's behalf) is transparent to anyone holding valid credentials, so it protects
against lost media, not against leaked access keys.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class AtRest:
    """Whether a store's data is encrypted at rest, and by whose key.

    ``encrypted`` None: not known (the fact could not be read, nothing was declared).
    ``key_held_by`` names the key's holder ("AWS (S3-managed keys)", "AWS KMS key
    alias/aws/s3 (AWS-managed)", a declared "us (LUKS, platform team)"), None when
    unencrypted or unknown. ``evidence`` says where the answer came from, in words;
    configuration only, never data.
    """

    encrypted: bool | None
    key_held_by: str | None
    evidence: str


NOT_REPORTED = AtRest(None, None, "this store type reports no encryption at rest")
"""What ``at_rest_of`` answers for facts without an ``at_rest`` property."""


@runtime_checkable
class AtRestFacts(Protocol):
    """Posture facts that can say how their resource is encrypted at rest."""

    @property
    def at_rest(self) -> AtRest:
        """Encryption at rest of the resource these facts describe."""
        ...


def at_rest_of(facts: object) -> AtRest:
    """``facts.at_rest`` for facts that report it, else ``NOT_REPORTED``."""
    return facts.at_rest if isinstance(facts, AtRestFacts) else NOT_REPORTED
