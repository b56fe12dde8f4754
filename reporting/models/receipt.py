"""Proof of submission: one Receipt per delivered report, written in the transaction that marks it delivered.

It holds what the lab can show an authority or an auditor: the SHA-256 of the exact bytes sent, when,
where to (an address, never a credential), by which transport, under which message id, and what the
receiver answered. Append-only like the audit trail: nothing edits or deletes it through the ORM.
"""
from __future__ import annotations

from django.db import models

from incidents.models.audit import AppendOnlyError
from reporting.choices import Transport

# What a receipt keeps of the receiver's answer: enough to read it, bounded so a chatty receiver cannot
# bloat the table.
RESPONSE_EXCERPT_CHARS = 2000


class ReceiptQuerySet(models.QuerySet):
    def update(self, **kwargs):  # noqa: ANN003, ANN201
        raise AppendOnlyError("receipts are append-only")

    def delete(self):  # noqa: ANN201
        raise AppendOnlyError("receipts are append-only")


class Receipt(models.Model):
    report = models.OneToOneField("reporting.Report", on_delete=models.PROTECT, related_name="proof")
    attempt = models.OneToOneField("reporting.DeliveryAttempt", on_delete=models.PROTECT, related_name="+")
    # The destination actually used: the report's own, or its e-mail fallback.
    destination = models.ForeignKey("reporting.Destination", on_delete=models.PROTECT, related_name="+")
    authority = models.CharField(max_length=200, help_text="The destination's authority at the time of sending")
    transport = models.CharField(max_length=16, choices=Transport.choices)
    address = models.CharField(max_length=500, help_text="Endpoint URL, TAXII collection or mailbox; no credentials")
    message_id = models.UUIDField(help_text="webhook-id / report id: the same on every retry")
    payload_sha256 = models.CharField(max_length=64, help_text="SHA-256 of the exact bytes sent")
    payload_size = models.PositiveIntegerField(help_text="Bytes sent")
    signing_key_id = models.CharField(max_length=64)
    via_fallback = models.BooleanField(default=False)
    sent_at = models.DateTimeField(help_text="When the successful attempt started")
    delivered_at = models.DateTimeField(help_text="When the receiver's acceptance was recorded")
    response_status = models.PositiveSmallIntegerField(null=True, blank=True, help_text="HTTP status, if any")
    response_excerpt = models.TextField(blank=True, help_text="The receiver's answer or TAXII status, bounded")
    created_at = models.DateTimeField(auto_now_add=True)

    objects = ReceiptQuerySet.as_manager()

    class Meta:
        ordering = ["-delivered_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=models.Q(payload_sha256__regex=r"^[0-9a-f]{64}$"),
                                   name="receipt_sha256_is_hex"),
        ]

    def __str__(self) -> str:
        return f"receipt of report {self.report_id}: {self.payload_sha256[:12]} to {self.address}"

    def save(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
        if not self._state.adding:
            raise AppendOnlyError("receipts are append-only")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN201
        raise AppendOnlyError("receipts are append-only")
