"""The sender's published document-signing keys, fetched from its keys URL (or a file) and cached.

The published form is ``{"keys": [{"key_id": ..., "alg": "Ed25519", "public_key": "<base64url, 32 bytes>"}]}``.
An unknown key id triggers one reload before it counts as unknown, so a key the sender has just
rotated in is picked up without restarting the receiver. Reloads only happen for requests whose
webhook signature already verified, so strangers cannot make the receiver hammer the keys URL.
"""
from __future__ import annotations

import json
import threading
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path

from .envelope import ALG, b64url_decode

FETCH_TIMEOUT_SECONDS = 5.0
MAX_KEYS_BYTES = 1024 * 1024


class KeysUnavailable(Exception):
    """The key source could not be read: the receiver cannot check documents right now."""


def parse_keys(raw: bytes) -> dict[str, bytes]:
    """key_id -> raw public key. Entries of another algorithm or of the wrong size are skipped."""
    try:
        published = json.loads(raw)
    except ValueError as exc:
        raise KeysUnavailable(f"keys are not JSON: {exc}") from None
    entries = published.get("keys") if isinstance(published, dict) else None
    if not isinstance(entries, list):
        raise KeysUnavailable("keys JSON has no 'keys' list")
    keys: dict[str, bytes] = {}
    for entry in entries:
        if not isinstance(entry, dict) or entry.get("alg") != ALG or not isinstance(entry.get("key_id"), str):
            continue
        try:
            public_key = b64url_decode(entry.get("public_key"))
        except ValueError:
            continue
        if len(public_key) == 32:
            keys[entry["key_id"]] = public_key
    return keys


class KeyStore(Mapping[str, bytes]):
    """A read-only mapping of key_id to public key that reloads its source on a miss.

    ``get`` returns None for a key the source does not publish, and raises KeysUnavailable when the
    source cannot be read (Mapping.get only swallows KeyError).
    """

    def __init__(self, *, url: str | None = None, path: str | Path | None = None,
                 timeout: float = FETCH_TIMEOUT_SECONDS):
        if (url is None) == (path is None):
            raise ValueError("give exactly one of url or path")
        self.url, self.path, self.timeout = url, (Path(path) if path is not None else None), timeout
        self._keys: dict[str, bytes] | None = None
        self._lock = threading.Lock()

    def __getitem__(self, key_id: str) -> bytes:
        keys = self._keys
        if keys is not None and key_id in keys:
            return keys[key_id]
        with self._lock:
            # Concurrent misses for a freshly rotated key: the first reloads, the others find it here.
            if self._keys is not None and key_id in self._keys:
                return self._keys[key_id]
            return self._reload_locked()[key_id]  # KeyError when even a fresh copy does not publish it

    def __iter__(self) -> Iterator[str]:
        return iter(self._current())

    def __len__(self) -> int:
        return len(self._current())

    def _current(self) -> dict[str, bytes]:
        return self._keys if self._keys is not None else self.reload()

    def reload(self) -> dict[str, bytes]:
        with self._lock:
            return self._reload_locked()

    def _reload_locked(self) -> dict[str, bytes]:
        self._keys = parse_keys(self._read())
        return self._keys

    def _read(self) -> bytes:
        if self.path is not None:
            try:
                return self.path.read_bytes()[:MAX_KEYS_BYTES]
            except OSError as exc:
                raise KeysUnavailable(f"cannot read {self.path}: {exc.strerror}") from None
        assert self.url is not None
        if not self.url.startswith(("http://", "https://")):
            raise KeysUnavailable(f"keys URL must be http(s): {self.url}")
        request = urllib.request.Request(self.url, headers={"Accept": "application/json"})  # noqa: S310  (checked)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                return response.read(MAX_KEYS_BYTES)
        except (OSError, ValueError) as exc:  # URLError, HTTPError, timeouts are all OSError
            raise KeysUnavailable(f"cannot fetch {self.url}: {exc}") from None
