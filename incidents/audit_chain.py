"""How one sealed audit event is hashed: shared by the sealer and by audit_verify, and nothing else.

An event's hash is SHA-256 over the RFC 8785 canonical JSON of

    {"v": 1, "seq": <chain_seq>, "prev_hash": <hex>, "event": {public_id, incident_id, object_type, object_id,
     action, actor: {kind, user_id, detector_id, label}, changes, reason, created_at}}

so it fixes the event's content, its position and, through prev_hash, everything sealed before it. The
first event's prev_hash is GENESIS. Anyone who can read the rows can recompute it; there is no secret,
which is why the heads are also published outside the lab (docs/architecture.md, "The audit chain").
"""
from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import rfc8785

HASH_VERSION = 1
GENESIS = "0" * 64
# The columns hashed, in the order the sealer and the verifier read them (values_list).
CONTENT_COLUMNS = (
    "public_id", "incident_id", "object_type", "object_id", "action", "actor_kind", "actor_user_id",
    "actor_detector_id", "actor_label", "changes", "reason", "created_at",
)
# RFC 8785 refuses integers a double cannot hold exactly; the changes column is open JSON, so such a number
# is hashed as its decimal string rather than leave an event the sealer could never seal.
_MAX_SAFE_INTEGER = 2**53 - 1


def event_hash(content: tuple, *, seq: int, prev_hash: str) -> str:
    """``content`` is one row of CONTENT_COLUMNS, as read from the database."""
    (public_id, incident_id, object_type, object_id, action, actor_kind, actor_user_id, actor_detector_id,
     actor_label, changes, reason, created_at) = content
    record = {
        "v": HASH_VERSION,
        "seq": seq,
        "prev_hash": prev_hash,
        "event": {
            "public_id": str(public_id),
            "incident_id": incident_id,
            "object_type": object_type,
            "object_id": object_id,
            "action": action,
            "actor": {"kind": actor_kind, "user_id": actor_user_id, "detector_id": actor_detector_id,
                      "label": actor_label},
            "changes": _json_safe(changes),
            "reason": reason,
            "created_at": _time(created_at),
        },
    }
    return hashlib.sha256(rfc8785.dumps(record)).hexdigest()


def _time(value: datetime) -> str:
    # A fixed format (always microseconds): isoformat() drops them when zero, which is fine but one less surprise.
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _json_safe(value: object) -> object:
    if isinstance(value, dict):
        return {str(key): _json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(item) for item in value]
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > _MAX_SAFE_INTEGER:
        return str(value)
    return value
