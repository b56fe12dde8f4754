"""Pure validators and normalisers shared by the API serializers, the admin and the services.

Each raises ``ValueError`` with a message fit to show a detector or a staff member.
"""
from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

import pycountry
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import EmailValidator, URLValidator

from incidents.choices import IndicatorType

_HEX = {32: "md5", 40: "sha1", 64: "sha256", 128: "sha512"}
_HEX_RE = re.compile(r"^[0-9a-f]+$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_LABEL_RE = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_WALLET_PATTERNS = (
    ("ethereum", re.compile(r"^0x[0-9a-fA-F]{40}$")),
    ("bitcoin (base58)", re.compile(r"^[13][a-km-zA-HJ-NP-Z1-9]{25,34}$")),
    ("bitcoin (bech32)", re.compile(r"^(bc1|tb1)[02-9ac-hj-np-z]{11,71}$")),
    ("monero", re.compile(r"^[48][0-9AB][1-9A-HJ-NP-Za-km-z]{93}$")),
    ("tron", re.compile(r"^T[1-9A-HJ-NP-Za-km-z]{33}$")),
    ("solana", re.compile(r"^[1-9A-HJ-NP-Za-km-z]{32,44}$")),
)
TECHNIQUE_PATTERN = r"^(AML\.T\d{4}(\.\d{3})?|T\d{4}(\.\d{3})?)$"
_TECHNIQUE_RE = re.compile(TECHNIQUE_PATTERN)
_COUNTRIES = frozenset(country.alpha_2 for country in pycountry.countries)
_url_validator = URLValidator(schemes=["http", "https", "ftp", "ftps"])
_email_validator = EmailValidator()


def _domain(value: str) -> str:
    name = value.strip().rstrip(".").lower()
    try:
        ascii_name = name.encode("idna").decode("ascii")
    except UnicodeError:
        raise ValueError("not a valid domain name") from None
    labels = ascii_name.split(".")
    if len(ascii_name) > 253 or len(labels) < 2 or not all(_LABEL_RE.match(label) for label in labels):
        raise ValueError("not a valid domain name (expected something like example.org)")
    if labels[-1].isdigit():
        raise ValueError("not a valid domain name (looks like an IP address; use type 'ip')")
    return ascii_name


def _ip(value: str) -> str:
    try:
        address = ipaddress.ip_address(value.strip())
    except ValueError:
        raise ValueError("not a valid IPv4 or IPv6 address") from None
    mapped = getattr(address, "ipv4_mapped", None)
    if mapped is not None:
        # Spelled the same on every Python (3.13 changed str() of IPv4-mapped addresses).
        return f"::ffff:{mapped}"
    return str(address)


def _url(value: str) -> str:
    url = value.strip()
    try:
        _url_validator(url)
    except DjangoValidationError:
        raise ValueError("not a valid absolute URL (http, https, ftp or ftps)") from None
    parts = urlsplit(url)
    return parts._replace(scheme=parts.scheme.lower(), netloc=parts.netloc.lower()).geturl()


def _email(value: str) -> str:
    address = value.strip()
    try:
        _email_validator(address)
    except DjangoValidationError:
        raise ValueError("not a valid e-mail address") from None
    local, _, domain = address.rpartition("@")
    return f"{local}@{domain.lower()}"


def _wallet(value: str) -> str:
    address = value.strip()
    for _name, pattern in _WALLET_PATTERNS:
        if pattern.match(address):
            return address.lower() if address.startswith("0x") else address
    raise ValueError("not a recognised wallet address (Bitcoin, Ethereum, Monero, Tron or Solana)")


def _file_hash(value: str) -> str:
    digest = value.strip().lower()
    if len(digest) not in _HEX or not _HEX_RE.match(digest):
        raise ValueError("not a file hash: expected MD5, SHA-1, SHA-256 or SHA-512 in hexadecimal")
    return digest


def _prompt_hash(value: str) -> str:
    digest = value.strip().lower()
    if not _SHA256_RE.match(digest):
        raise ValueError("not a prompt-pattern hash: expected SHA-256 in hexadecimal (64 characters)")
    return digest


_NORMALISERS = {
    IndicatorType.DOMAIN: _domain,
    IndicatorType.IP: _ip,
    IndicatorType.URL: _url,
    IndicatorType.EMAIL: _email,
    IndicatorType.WALLET: _wallet,
    IndicatorType.FILE_HASH: _file_hash,
    IndicatorType.PROMPT_PATTERN_HASH: _prompt_hash,
}


def normalize_indicator(indicator_type: str, value: str) -> str:
    """Return the canonical form of an indicator value, or raise ValueError saying what is wrong."""
    try:
        normaliser = _NORMALISERS[IndicatorType(indicator_type)]
    except ValueError:
        raise ValueError(f"unknown indicator type {indicator_type!r}") from None
    if not value or not value.strip():
        raise ValueError("must not be empty")
    if len(value) > 2048:
        raise ValueError("longer than 2048 characters")
    return normaliser(value)


def normalize_countries(codes: list[str]) -> list[str]:
    result = []
    for code in codes:
        upper = code.strip().upper()
        if upper not in _COUNTRIES:
            raise ValueError(f"{code!r} is not an ISO 3166-1 alpha-2 country code")
        if upper not in result:
            result.append(upper)
    return result


def normalize_techniques(ids: list[str]) -> list[str]:
    result = []
    for technique in ids:
        value = technique.strip()
        if not _TECHNIQUE_RE.match(value):
            raise ValueError(
                f"{technique!r} is not a MITRE ATLAS (AML.T0054) or ATT&CK (T1566, T1566.001) technique id"
            )
        if value not in result:
            result.append(value)
    return result


def is_sha256_hex(value: str) -> bool:
    return bool(_SHA256_RE.match(value))
