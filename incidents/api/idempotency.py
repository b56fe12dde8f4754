"""The HTTP side of Idempotency-Key: header parsing, request fingerprints, replays."""
from __future__ import annotations

import hashlib
import json
import re

from rest_framework.request import Request
from rest_framework.response import Response

from incidents.api.problems import IdempotencyKeyInFlight, IdempotencyKeyMismatch, IdempotencyKeyMissing
from incidents.services.idempotency import Claim, ClaimResult

HEADER = "Idempotency-Key"
REPLAY_HEADER = "Idempotent-Replayed"
# Visible ASCII without spaces or '#' ('#' joins batch keys to item numbers); a UUID is ideal.
KEY_PATTERN = r"^[!-\"$-~]{1,255}$"
_KEY_RE = re.compile(KEY_PATTERN)


def valid_key(raw: str) -> str | None:
    """The key in a header value, or None if it is not a valid key."""
    key = raw.strip().strip('"')  # the draft allows the key as a quoted string
    return key if _KEY_RE.match(key) else None


def idempotency_key_from(request: Request) -> str:
    raw = request.headers.get(HEADER)
    if raw is None:
        raise IdempotencyKeyMissing(f"send an {HEADER} header (a fresh UUID per logical request) with every POST")
    key = valid_key(raw)
    if key is None:
        raise IdempotencyKeyMissing(f"{HEADER} must be 1 to 255 visible ASCII characters, without '#' or spaces")
    return key


def request_fingerprint(path: str, data: object) -> str:
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(f"{path}\n{canonical}".encode()).hexdigest()


def claim_answer(claim: Claim) -> Response:
    """The answer to a request whose key was not ours to act on: the replay, or a 422 or 409 raised."""
    if claim.result is ClaimResult.REPLAY:
        record = claim.record
        return Response(record.response_body, status=record.response_status, headers={REPLAY_HEADER: "true"})
    if claim.result is ClaimResult.MISMATCH:
        raise IdempotencyKeyMismatch(
            f"this {HEADER} was first used with a different request body; use a new key for a new request"
        )
    if claim.result is ClaimResult.IN_FLIGHT:
        raise IdempotencyKeyInFlight(
            f"a request with this {HEADER} is still being processed; retry shortly", headers={"Retry-After": "1"}
        )
    raise ValueError("a claimed key has no answer yet")
