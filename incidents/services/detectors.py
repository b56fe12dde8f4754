"""Detectors and their tokens: created, issued, revoked through here, each with an audit event."""
from __future__ import annotations

import functools
import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.utils import timezone

from incidents.actors import Actor
from incidents.choices import DetectorScope
from incidents.models import Detector, DetectorToken
from incidents.models.fast_rows import RowReader, quote
from incidents.services.audit import audit_record

TOKEN_PREFIX = "mir_"
# last_used_at is bookkeeping, not audit: write it at most once a minute per token to keep the hot
# path free of an UPDATE per request.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class IssuedToken:
    token: DetectorToken
    secret: str  # shown once; only its digest is stored


def detector_create(*, actor: Actor, name: str, description: str = "") -> Detector:
    name = name.strip()
    if not name:
        raise ValidationError({"name": ["must not be empty"]})
    with transaction.atomic():
        if Detector.objects.filter(name=name).exists():
            raise ValidationError({"name": [f"a detector named {name!r} already exists"]})
        detector = Detector.objects.create(name=name, description=description)
        audit_record(actor=actor, action="detector_created", obj=detector, changes={"name": name})
    return detector


DETECTOR_UPDATE_FIELDS = frozenset({"description", "is_active", "rate_limit_per_minute"})


def detector_update(*, actor: Actor, detector: Detector, fields: dict, reason: str = "") -> Detector:
    """Change a detector's description, switch it off or on, or set its own rate limit."""
    unknown = set(fields) - DETECTOR_UPDATE_FIELDS
    if unknown:
        raise ValidationError({name: ["cannot be changed"] for name in sorted(unknown)})
    limit = fields.get("rate_limit_per_minute")
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise ValidationError({"rate_limit_per_minute": ["must be a positive whole number, or empty for the default"]})
    with transaction.atomic():
        row = Detector.objects.select_for_update().get(pk=detector.pk)
        changes = {name: [getattr(row, name), value] for name, value in fields.items() if getattr(row, name) != value}
        if not changes:
            return row
        for name in changes:
            setattr(row, name, fields[name])
        row.save(update_fields=[*changes, "updated_at"])
        audit_record(actor=actor, action="detector_updated", obj=row, changes=changes, reason=reason)
    return row


def detector_token_issue(
    *,
    actor: Actor,
    detector: Detector,
    scopes: Iterable[str] = (DetectorScope.SUBMIT, DetectorScope.READ_OWN),
    expires_at: datetime | None = None,
    label: str = "",
) -> IssuedToken:
    scope_list = sorted({str(s) for s in scopes})
    unknown = set(scope_list) - set(DetectorScope.values)
    if unknown or not scope_list:
        raise ValidationError({"scopes": [f"choose from {', '.join(DetectorScope.values)}"]})
    if expires_at is not None and expires_at <= timezone.now():
        raise ValidationError({"expires_at": ["is in the past"]})
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with transaction.atomic():
        token = DetectorToken.objects.create(
            detector=detector,
            label=label,
            prefix=secret[: len(TOKEN_PREFIX) + 6],
            token_hash=token_digest(secret),
            scopes=scope_list,
            expires_at=expires_at,
        )
        audit_record(
            actor=actor,
            action="token_issued",
            obj=token,
            changes={
                "detector": detector.name,
                "scopes": scope_list,
                "expires_at": expires_at.isoformat() if expires_at else None,
            },
        )
    return IssuedToken(token=token, secret=secret)


def detector_token_revoke(*, actor: Actor, token: DetectorToken, reason: str = "") -> DetectorToken:
    with transaction.atomic():
        row = DetectorToken.objects.select_for_update().get(pk=token.pk)
        if row.revoked_at is None:
            row.revoked_at = timezone.now()
            row.save(update_fields=["revoked_at"])
            audit_record(actor=actor, action="token_revoked", obj=row, reason=reason)
    return row


def detector_token_authenticate(*, secret: str) -> DetectorToken | None:
    """The usable token for a presented secret, or None. Records last use (coarsely)."""
    if not secret.startswith(TOKEN_PREFIX) or len(secret) > 200:
        return None
    token = _token_with_detector(token_digest(secret))
    now = timezone.now()
    if token is None or not token.is_usable(now):
        return None
    if token.last_used_at is None or now - token.last_used_at > LAST_USED_RESOLUTION:
        DetectorToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
    return token


@functools.cache
def _token_query() -> tuple[str, RowReader, RowReader]:
    """The token and its active detector in one statement, written once per process.

    This runs on every API request; building it through the ORM (queryset, select_related, SQL
    compiler) cost more CPU than the query itself (docs/performance.md). The columns come from the
    models (incidents.models.fast_rows), so a new field is picked up without touching this.
    """
    token, detector = DetectorToken._meta, Detector._meta
    token_row, detector_row = RowReader(DetectorToken, "t"), RowReader(Detector, "d")
    detector_fk = token.get_field("detector").column
    hash_column, active_column = token.get_field("token_hash").column, detector.get_field("is_active").column
    # Only identifiers from the models' metadata are interpolated; the digest is a bound parameter.
    # token_hash is unique: no ORDER BY.
    sql = (
        f"SELECT {token_row.columns}, {detector_row.columns} FROM {quote(token.db_table)} {quote('t')} "  # noqa: S608
        f"JOIN {quote(detector.db_table)} {quote('d')} ON {quote('d')}.{quote(detector.pk.column)} = "
        f"{quote('t')}.{quote(detector_fk)} "
        f"WHERE {quote('t')}.{quote(hash_column)} = %s AND {quote('d')}.{quote(active_column)} LIMIT 1"
    )
    return sql, token_row, detector_row


def _token_with_detector(digest: str) -> DetectorToken | None:
    sql, token_row, detector_row = _token_query()
    with connection.cursor() as cursor:
        cursor.execute(sql, [digest])
        row = cursor.fetchone()
    if row is None:
        return None
    token = token_row.instance(row)
    token.detector = detector_row.instance(row, token_row.width)
    return token
