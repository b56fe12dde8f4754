"""Where reports go: an authority's endpoint, with what it may receive and how to reach it."""
from __future__ import annotations

import secrets
import uuid

from django.db import models
from django.db.models import Q

from incidents.choices import Tlp
from reporting.choices import Disclosure, Transport
from reporting.encryption import decrypt, encrypt


class Destination(models.Model):
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField(max_length=100, unique=True)
    authority = models.ForeignKey(
        "portal.Authority", on_delete=models.PROTECT, related_name="destinations",
        help_text="The authority this endpoint belongs to; its reviewers see what was delivered here",
    )
    transport = models.CharField(max_length=16, choices=Transport.choices)
    address = models.CharField(
        max_length=500, help_text="HTTPS URL (webhook), TAXII collection URL (taxii) or e-mail address (email)"
    )
    username = models.CharField(max_length=200, blank=True, help_text="TAXII basic-auth user, if any")
    # The webhook signing secret (whsec_...) or the TAXII password; encrypted at rest, never shown in full.
    secret_encrypted = models.TextField(blank=True, editable=False)
    # HMAC key for account pseudonyms: one per destination, so two authorities cannot link accounts.
    pseudonym_key_encrypted = models.TextField(editable=False)
    max_disclosure = models.CharField(max_length=16, choices=Disclosure.choices, default=Disclosure.DIGESTS)
    tlp = models.CharField(max_length=20, choices=Tlp.choices, default=Tlp.AMBER_STRICT)
    accepts_child_safety = models.BooleanField(
        default=False, help_text="Only a child-protection destination (e.g. NCMEC) receives CHILD_SAFETY incidents"
    )
    fallback = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="+",
        help_text="Last-resort destination (e-mail) used when this one has failed and the deadline is close",
    )
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(condition=~Q(fallback=models.F("id")), name="destination_fallback_not_self"),
        ]

    def __str__(self) -> str:
        # The name alone: the authority is another row, and menus list every destination.
        return self.name

    def set_secret(self, secret: str) -> None:
        self.secret_encrypted = encrypt(secret) if secret else ""

    def get_secret(self) -> str:
        return decrypt(self.secret_encrypted) if self.secret_encrypted else ""

    def new_pseudonym_key(self) -> None:
        self.pseudonym_key_encrypted = encrypt(secrets.token_hex(32))

    def get_pseudonym_key(self) -> bytes:
        return bytes.fromhex(decrypt(self.pseudonym_key_encrypted))
