"""Reviewer API tokens: issued, revoked and checked through here, each change with an audit event.

A token is read-only by construction: the only scope there is is ``reports:read``, and the endpoints
that accept it (the reviewer API and TAXII) have no write methods at all.
"""
from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from incidents.actors import Actor
from incidents.services.audit import audit_record
from reporting.portal.models import Reviewer, ReviewerScope, ReviewerToken

# Not "mir_" (detector tokens): a token pasted into the wrong client is recognised at a glance, and the
# detector authentication refuses it before any query.
TOKEN_PREFIX = "mirrv_"
MAX_SECRET_LENGTH = 200
# last_used_at is bookkeeping, not audit: at most one UPDATE a minute per token.
LAST_USED_RESOLUTION = timedelta(minutes=1)
# A feed token that never expires is a standing key to an authority's reports; cap it.
MAX_LIFETIME = timedelta(days=366)


@dataclass(frozen=True)
class IssuedReviewerToken:
    token: ReviewerToken
    secret: str  # shown once; only its digest is stored


def reviewer_token_digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def reviewer_token_issue(
    *,
    actor: Actor,
    reviewer: Reviewer,
    expires_at: datetime,
    label: str = "",
    scopes: Iterable[str] = (ReviewerScope.READ,),
) -> IssuedReviewerToken:
    scope_list = sorted({str(s) for s in scopes})
    if not scope_list or set(scope_list) - set(ReviewerScope.values):
        raise ValidationError({"scopes": [f"reviewer tokens are read-only: choose {', '.join(ReviewerScope.values)}"]})
    now = timezone.now()
    if expires_at is None or expires_at.tzinfo is None:
        raise ValidationError({"expires_at": ["an aware expiry time is required"]})
    if expires_at <= now:
        raise ValidationError({"expires_at": ["is in the past"]})
    if expires_at > now + MAX_LIFETIME:
        raise ValidationError({"expires_at": [f"at most {MAX_LIFETIME.days} days ahead"]})
    label = (label or "").strip()
    if len(label) > 100 or "\x00" in label:
        raise ValidationError({"label": ["at most 100 characters, no NUL"]})
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with transaction.atomic():
        row = Reviewer.objects.select_for_update().select_related("authority", "user").get(pk=reviewer.pk)
        if not row.is_active or not row.user.is_active:
            raise ValidationError({"reviewer": ["is not active: activate the reviewer before issuing a token"]})
        token = ReviewerToken.objects.create(
            reviewer=row, label=label, prefix=secret[: len(TOKEN_PREFIX) + 6], token_hash=reviewer_token_digest(secret),
            scopes=scope_list, expires_at=expires_at,
        )
        audit_record(actor=actor, action="reviewer_token_issued", obj=token,
                     changes={"reviewer": row.user.get_username(), "authority": row.authority.name,
                              "prefix": token.prefix, "scopes": scope_list, "expires_at": expires_at.isoformat(),
                              "label": label})
    return IssuedReviewerToken(token=token, secret=secret)


def reviewer_token_revoke(*, actor: Actor, token: ReviewerToken, reason: str = "") -> ReviewerToken:
    with transaction.atomic():
        row = ReviewerToken.objects.select_for_update().get(pk=token.pk)
        if row.revoked_at is None:
            row.revoked_at = timezone.now()
            row.save(update_fields=["revoked_at"])
            audit_record(actor=actor, action="reviewer_token_revoked", obj=row,
                         changes={"prefix": row.prefix}, reason=reason)
    return row


def reviewer_token_authenticate(*, secret: str) -> ReviewerToken | None:
    """The usable token of an active reviewer for a presented secret, or None. Records last use (coarsely)."""
    if not secret.startswith(TOKEN_PREFIX) or len(secret) > MAX_SECRET_LENGTH:
        return None
    rows = (
        ReviewerToken.objects.select_related("reviewer", "reviewer__authority", "reviewer__user")
        .filter(token_hash=reviewer_token_digest(secret), reviewer__is_active=True, reviewer__user__is_active=True)
        .order_by()[:1]
    )
    token = next(iter(rows), None)
    now = timezone.now()
    if token is None or not token.is_usable(now):
        return None
    if token.last_used_at is None or now - token.last_used_at > LAST_USED_RESOLUTION:
        ReviewerToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
    return token
