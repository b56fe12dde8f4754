"""Detectors (machine clients), their tokens, and the idempotency ledger of their requests."""
from __future__ import annotations

import uuid

from django.db import models
from django.db.models import Q
from django.utils import timezone


class Detector(models.Model):
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    is_active = models.BooleanField(default=True)
    rate_limit_per_minute = models.PositiveIntegerField(
        null=True, blank=True, help_text="Requests per minute; empty uses MIR_DETECTOR_RATE_PER_MINUTE"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class BearerToken(models.Model):
    """A bearer token. Only its SHA-256 is stored; the token is shown once, at creation.

    Tokens are 256-bit random strings, so a fast hash is enough (no password-style stretching):
    nobody can brute-force the pre-image. Each kind of holder (detectors here, reviewers in the portal)
    has its own table, so a token is only ever found by the endpoints of its own kind.
    """

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    label = models.CharField(max_length=100, blank=True)
    prefix = models.CharField(max_length=16, editable=False, help_text="First characters, to recognise a token")
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    scopes = models.JSONField(default=list)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        abstract = True
        ordering = ["-created_at", "-id"]

    def is_usable(self, now=None) -> bool:  # noqa: ANN001
        now = now or timezone.now()
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)

    def has_scope(self, scope: str) -> bool:
        return str(scope) in self.scopes


class DetectorToken(BearerToken):
    detector = models.ForeignKey(Detector, on_delete=models.CASCADE, related_name="tokens")

    class Meta(BearerToken.Meta):
        pass

    def __str__(self) -> str:
        return f"{self.detector.name} {self.prefix}…"


class IdempotencyKey(models.Model):
    """One row per (detector, Idempotency-Key): the stored first response.

    Written in the transaction that did the request's work, so a key is "completed" exactly when its
    incident exists; while that transaction runs, the key's advisory lock tells a concurrent request
    with the same key that it is in flight (409). incidents/services/idempotency.py has the protocol.
    """

    class State(models.TextChoices):
        IN_FLIGHT = "in_flight", "In flight"
        COMPLETED = "completed", "Completed"

    # No index of its own: the unique (detector, key) index below serves every lookup by detector, and a
    # second index starting with the same column gave the planner a worse choice. On a table without
    # statistics (new, or just emptied) the claim's generic plan scanned this one and filtered on the
    # key, reading every key of the detector per request (docs/performance.md, "Intake").
    detector = models.ForeignKey(Detector, on_delete=models.CASCADE, related_name="idempotency_keys", db_index=False)
    key = models.CharField(max_length=300)
    request_fingerprint = models.CharField(max_length=64)
    state = models.CharField(max_length=16, choices=State.choices, default=State.COMPLETED)
    # Only rows of the earlier protocol, which committed an in-flight claim before the work, are
    # "in_flight" and have a lease: after it runs out, another request may take the key over.
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # Used by incidents.purge_idempotency_keys: DELETE ... WHERE expires_at < now().
    expires_at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["detector", "key"], name="idempotency_key_unique_per_detector"),
            models.CheckConstraint(
                condition=Q(state="in_flight") | Q(response_status__isnull=False),
                name="idempotency_completed_has_response",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.detector_id}:{self.key}"
