"""Canonical JSON (RFC 8785, JCS): one byte sequence per document, whatever built or parsed it.

Signatures and digests are taken over these bytes, so any receiver that parses the JSON and
canonicalises it again with an RFC 8785 implementation gets exactly the bytes that were signed.
"""
from __future__ import annotations

import hashlib

import rfc8785


def canonical_bytes(document: dict) -> bytes:
    """UTF-8 JCS bytes. Raises ``rfc8785.CanonicalizationError`` for values JSON cannot carry exactly
    (NaN, integers beyond 2**53, non-string keys): better to fail at freeze time than to sign bytes
    that a receiver cannot reproduce."""
    return rfc8785.dumps(document)


def payload_sha256(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()
