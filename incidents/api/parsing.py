"""A JSON parser for untrusted detector input.

Beyond ``json.loads`` it enforces the body cap while reading (also for chunked bodies), and rejects
what would otherwise surface later as a 5xx or as silent ambiguity: NaN and Infinity, duplicate keys,
nesting deeper than any valid request, NUL characters and lone surrogates (PostgreSQL rejects both).
"""
from __future__ import annotations

import json

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import BaseParser

from incidents.api.problems import PayloadTooLarge

MAX_DEPTH = 8


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict:
    result: dict = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


def _check_strings(value: object, depth: int = 0) -> None:
    if depth > MAX_DEPTH:
        raise ValueError(f"nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError("strings must not contain NUL characters")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("strings must be valid Unicode (lone surrogate escape)") from None
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_strings(key, depth + 1)
            _check_strings(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _check_strings(item, depth + 1)


def read_capped(stream, cap: int) -> bytes:  # noqa: ANN001
    body = stream.read(cap + 1) if stream is not None else b""
    if len(body) > cap:
        raise PayloadTooLarge(cap)
    return body


def parse_json_body(body: bytes) -> object:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise ParseError("the body is not valid UTF-8") from None
    try:
        data = json.loads(text, parse_constant=_reject_constant, object_pairs_hook=_no_duplicates)
        _check_strings(data)
    except RecursionError:
        raise ParseError(f"JSON nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:
        raise ParseError(f"malformed JSON: {exc}") from None
    return data


class StrictJSONParser(BaseParser):
    media_type = "application/json"

    def parse(self, stream, media_type=None, parser_context=None):  # noqa: ANN001, ANN201
        charset = "utf-8"
        if media_type and "charset=" in media_type:
            charset = media_type.split("charset=", 1)[1].split(";")[0].strip().strip('"').lower()
        if charset not in {"utf-8", "utf8"}:
            raise ParseError("only UTF-8 JSON is accepted")
        return parse_json_body(read_capped(stream, settings.MIR_API_MAX_BODY_BYTES))
