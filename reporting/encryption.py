"""Secrets at rest (destination credentials, pseudonym keys, signing keys): Fernet with a key from
the environment (MIR_ENCRYPTION_KEY). In development the key is derived from SECRET_KEY; production
refuses to start without its own key (settings.py)."""
from __future__ import annotations

import base64
import hashlib
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings


def _fernet() -> MultiFernet:
    return _fernet_for(tuple(settings.MIR_ENCRYPTION_KEYS), settings.SECRET_KEY)


@lru_cache(maxsize=4)
def _fernet_for(configured: tuple[str, ...], secret_key: str) -> MultiFernet:
    keys = [k for k in configured if k]
    if not keys:
        derived = hashlib.sha256(b"mir-dev-encryption:" + secret_key.encode()).digest()
        keys = [base64.urlsafe_b64encode(derived).decode()]
    # The first key encrypts; all of them decrypt, so keys can be rotated without re-encrypting at once.
    return MultiFernet([Fernet(k.encode()) for k in keys])


def encrypt(plaintext: str) -> str:
    return _fernet().encrypt(plaintext.encode("utf-8")).decode("ascii")


def decrypt(ciphertext: str) -> str:
    """Decrypted once per process for a given ciphertext and key configuration.

    Every delivery decrypts its destination's secret and pseudonym key and the signing key. The cache is
    keyed by the ciphertext itself: an edited secret or a rotated key is a new ciphertext (Fernet never
    repeats one), so a stale plaintext cannot be served, and nothing needs invalidating across processes.
    """
    return _decrypt_cached(ciphertext, tuple(settings.MIR_ENCRYPTION_KEYS), settings.SECRET_KEY)


@lru_cache(maxsize=256)
def _decrypt_cached(ciphertext: str, configured: tuple[str, ...], secret_key: str) -> str:
    try:
        return _fernet_for(configured, secret_key).decrypt(ciphertext.encode("ascii")).decode("utf-8")
    except InvalidToken:
        raise ValueError("cannot decrypt: MIR_ENCRYPTION_KEY does not match the key this secret was stored with")


def mask(secret: str) -> str:
    """What a person may see of a secret: enough to recognise it, never enough to use it."""
    return f"{secret[:6]}…({len(secret)} chars)" if secret else "(none)"
