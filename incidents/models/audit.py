"""The append-only audit trail. Rows are written by services only, inside their transaction.

Tamper evidence (docs/architecture.md, "The audit chain"): rows are inserted unsealed (chain columns
NULL); the sealer (incidents/services/audit_chain.py: audit_seal) later gives each committed row its
place in one hash chain, and that is the only write a row ever gets after its insert.
"""
from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models

from incidents.choices import ActorKind


class AppendOnlyError(RuntimeError):
    pass


class AuditEventQuerySet(models.QuerySet):
    def update(self, **kwargs):  # noqa: ANN003, ANN201
        raise AppendOnlyError("audit events are append-only")

    def delete(self):  # noqa: ANN201
        raise AppendOnlyError("audit events are append-only")


class AuditEvent(models.Model):
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    incident = models.ForeignKey(
        "incidents.Incident", null=True, blank=True, on_delete=models.PROTECT, related_name="audit_events"
    )
    # What the event is about when it is not an incident (a detector, a token, ...).
    object_type = models.CharField(max_length=50)
    object_id = models.CharField(max_length=64)
    action = models.CharField(max_length=50)
    actor_kind = models.CharField(max_length=10, choices=ActorKind.choices)
    actor_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    actor_detector = models.ForeignKey(
        "incidents.Detector", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    # The actor's name at the time, so the trail reads right even after renames.
    actor_label = models.CharField(max_length=150)
    changes = models.JSONField(default=dict, blank=True)
    reason = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    # The chain (all three NULL until sealed, all three set after): position, the previous event's hash
    # (64 zeros for the first), and SHA-256 over this event's content, chain_seq and prev_hash.
    chain_seq = models.BigIntegerField(null=True, blank=True, unique=True, editable=False)
    prev_hash = models.CharField(max_length=64, null=True, blank=True, editable=False)
    hash = models.CharField(max_length=64, null=True, blank=True, editable=False)

    objects = AuditEventQuerySet.as_manager()

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [
            models.Index(fields=["object_type", "object_id"], name="audit_object"),
            # The sealer's scan (`WHERE chain_seq IS NULL ORDER BY id LIMIT n`) and audit_verify's oldest
            # unsealed event: a small index, since rows leave it within seconds of their commit.
            models.Index(fields=["id"], condition=models.Q(chain_seq__isnull=True), name="audit_unsealed"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=(
                    models.Q(chain_seq__isnull=True, prev_hash__isnull=True, hash__isnull=True)
                    | models.Q(chain_seq__gte=1, prev_hash__isnull=False, hash__isnull=False)
                ),
                name="audit_chain_all_or_nothing",
            ),
            models.CheckConstraint(
                condition=(
                    models.Q(actor_kind="user", actor_user__isnull=False, actor_detector__isnull=True)
                    | models.Q(actor_kind="detector", actor_detector__isnull=False, actor_user__isnull=True)
                    | models.Q(actor_kind="system", actor_user__isnull=True, actor_detector__isnull=True)
                ),
                name="audit_actor_matches_kind",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.actor_label} {self.action} {self.object_type}"

    def save(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
        if not self._state.adding:
            raise AppendOnlyError("audit events are append-only")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN201
        raise AppendOnlyError("audit events are append-only")


class AuditChainHead(models.Model):
    """The one row (pk 1) holding the sealed chain's last position; its row lock admits one sealer at a time.

    Written only by audit_seal, in the transaction that seals the events up to it. It is what reports and
    /.well-known/mir-audit-head.json publish, and audit_verify checks the chain ends exactly here.
    """

    SINGLETON = 1

    id = models.PositiveSmallIntegerField(primary_key=True, default=SINGLETON)
    seq = models.BigIntegerField(default=0)
    hash = models.CharField(max_length=64)
    sealed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.CheckConstraint(condition=models.Q(id=1), name="audit_chain_head_singleton")]

    def __str__(self) -> str:
        return f"audit chain head {self.seq}:{self.hash}"
