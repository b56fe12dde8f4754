"""The service's Ed25519 document-signing keys. Old keys stay published so old reports stay verifiable."""
from __future__ import annotations

from django.db import models


class SigningKey(models.Model):
    key_id = models.CharField(max_length=64, unique=True)
    public_key = models.CharField(max_length=64, help_text="Raw Ed25519 public key, base64url")
    private_key_encrypted = models.TextField(editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    retired_at = models.DateTimeField(null=True, blank=True, help_text="No longer signs; still published")

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return self.key_id
