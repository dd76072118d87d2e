"""How request progress stores its values: compact JSON, and derived identities sealed.

Derived identities are personal data found in one store and used to search the next, so
they are sealed with AES-GCM under the identity key, bound to their request and store
(a sealed value copied to another row does not open).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from state.request_runs import seal, seal_aad, unseal


def dumps(value: Any) -> str:
    """``value`` as JSON text; sorted keys make equal values equal text."""
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def keys_json(keys: Iterable[Iterable[Any]]) -> str:
    """Row keys as JSON text (lists: JSON has no tuples)."""
    return dumps([list(k) for k in keys])


def seal_derived(
    identity: AESGCM, request_id: str, store: str, derived: Mapping[str, Iterable[str]]
) -> dict[str, bytes]:
    """The ``derived_nonce`` and ``derived_ciphertext`` column values for ``derived``."""
    plain = dumps({kind: sorted(values) for kind, values in derived.items()}).encode()
    nonce, sealed = seal(identity, seal_aad("request-derived", request_id, store), plain)
    return {"derived_nonce": nonce, "derived_ciphertext": sealed}


def open_derived(identity: AESGCM, request_id: str, row: Any) -> dict[str, frozenset[str]]:
    """The identities sealed in a progress ``row`` (none once the request closed)."""
    if row.derived_ciphertext is None:
        return {}
    aad = seal_aad("request-derived", request_id, row.store)
    plain = unseal(identity, aad, row.derived_nonce, row.derived_ciphertext)
    return {kind: frozenset(values) for kind, values in json.loads(plain).items()}
