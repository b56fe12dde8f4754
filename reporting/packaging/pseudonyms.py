"""Account pseudonyms: the only form in which an account identifier leaves the lab.

A pseudonym is HMAC-SHA256 of the identifier under the destination's own key, so one authority sees
the same pseudonym for the same account in every report, while two authorities cannot link their
pseudonyms without the lab (BRIEF: privacy by default).
"""
from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping

PSEUDONYM_PREFIX = "psn_"


def pseudonymize(identifier: str, key: bytes) -> str:
    """``psn_`` + hex HMAC-SHA256(key, UTF-8 identifier). The identifier is used exactly as stored:
    intake already normalised it, and re-normalising here would split one account into two."""
    if not key:
        # An empty key would make pseudonyms a plain, dictionary-reversible hash of the identifier.
        raise ValueError("a pseudonym needs the destination's key")
    return PSEUDONYM_PREFIX + hmac.new(key, identifier.encode("utf-8"), hashlib.sha256).hexdigest()


class Redactor:
    """Replaces account identifiers that staff or detectors typed into free text with their pseudonyms.

    Structured fields never carry identifiers, but an analyst writing "banned alice@example.com" in
    the actions taken would otherwise leak one. Matching is case-insensitive and on whole tokens (not
    inside a longer word), so an identifier "bob" leaves "bobby" alone while "Bob," is replaced.
    Evidence content is never passed through here: it must keep matching its SHA-256.
    """

    def __init__(self, pseudonyms: Mapping[str, str]) -> None:
        # Longest first, so an identifier that contains another is replaced whole.
        identifiers = sorted((i for i in pseudonyms if i), key=len, reverse=True)
        self._by_folded = {}
        for identifier in identifiers:
            self._by_folded.setdefault(identifier.casefold(), pseudonyms[identifier])
        self._pattern = (
            re.compile(r"(?<!\w)(?:" + "|".join(re.escape(i) for i in identifiers) + r")(?!\w)", re.IGNORECASE)
            if identifiers
            else None
        )

    def __call__(self, text: str) -> str:
        if self._pattern is None or not text:
            return text
        return self._pattern.sub(lambda m: self._by_folded.get(m.group(0).casefold(), PSEUDONYM_PREFIX + "redacted"),
                                 text)
