"""The append-only audit trail. Rows are written by services only, inside their transaction."""
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

    objects = AuditEventQuerySet.as_manager()

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["object_type", "object_id"], name="audit_object")]
        constraints = [
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
