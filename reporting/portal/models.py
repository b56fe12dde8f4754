"""Authorities, their reviewers, and the log of what reviewers read.

A reviewer is a non-staff user with a Reviewer profile: the admin refuses them (StaffAdminSite) and the
portal refuses anyone without an active profile, so the two audiences never share an account.
"""
from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models

from incidents.models.detector import BearerToken


class Authority(models.Model):
    """A government body that receives reports through one or more destinations."""

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField(max_length=200, unique=True)
    slug = models.SlugField(max_length=80, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "authorities"

    def __str__(self) -> str:
        return self.name


class Reviewer(models.Model):
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="reviewer")
    authority = models.ForeignKey(Authority, on_delete=models.PROTECT, related_name="reviewers")
    is_active = models.BooleanField(default=True)
    # Lockout state: consecutive failures (password or code) since the last success, and until when
    # sign-in is refused. Kept on the row, not in the cache, so it holds across processes and restarts.
    failed_login_count = models.PositiveIntegerField(default=0)
    locked_until = models.DateTimeField(null=True, blank=True)
    last_login_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["authority__name", "user__username"]

    def __str__(self) -> str:
        return f"{self.user.get_username()} ({self.authority.name})"


class AccessAction(models.TextChoices):
    LIST = "list", "Viewed the report list"
    DETAIL = "detail", "Viewed a report"
    DOWNLOAD_JSON = "download_json", "Downloaded the document (JSON)"
    DOWNLOAD_STIX = "download_stix", "Downloaded the STIX 2.1 bundle"
    # The TAXII read interface (docs/taxii.md): one row per report whose objects a response carried.
    TAXII_OBJECTS = "taxii_objects", "Pulled STIX objects over TAXII"
    TAXII_MANIFEST = "taxii_manifest", "Read the TAXII manifest"
    TAXII_DIRECTORY = "taxii_directory", "Read TAXII discovery or collections"


class AccessChannel(models.TextChoices):
    PORTAL = "portal", "Portal (signed in)"
    API = "api", "Reviewer API (token)"
    TAXII = "taxii", "TAXII 2.1 (token)"


class ReviewerAccess(models.Model):
    """One row per portal read or download, written in the request that served it."""

    reviewer = models.ForeignKey(Reviewer, on_delete=models.PROTECT, related_name="accesses")
    report = models.ForeignKey("reporting.Report", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    action = models.CharField(max_length=20, choices=AccessAction.choices)
    at = models.DateTimeField()
    ip = models.GenericIPAddressField(null=True, blank=True)
    # For a list view: the filters used, so staff can see what the authority searched for.
    query = models.CharField(max_length=500, blank=True)
    channel = models.CharField(max_length=10, choices=AccessChannel.choices, default=AccessChannel.PORTAL)
    token = models.ForeignKey("portal.ReviewerToken", null=True, blank=True, on_delete=models.PROTECT,
                              related_name="+", help_text="The API token used, for machine reads")

    class Meta:
        ordering = ["-at", "-id"]
        verbose_name_plural = "reviewer accesses"
        indexes = [models.Index(fields=["reviewer", "-at"], name="portal_access_by_reviewer")]

    def __str__(self) -> str:
        return f"{self.reviewer_id} {self.action} {self.report_id or ''} at {self.at:%Y-%m-%d %H:%M:%S}"


class ReviewerScope(models.TextChoices):
    # Read is the only kind there is: the reviewers' machines never write through a token.
    READ = "reports:read", "Read the authority's delivered reports (API and TAXII)"


class ReviewerToken(BearerToken):
    """A reviewer's API token for the reviewer API and TAXII (the detector tokens' pattern, own table)."""

    reviewer = models.ForeignKey(Reviewer, on_delete=models.PROTECT, related_name="tokens")

    class Meta(BearerToken.Meta):
        pass

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.reviewer_id})"


# Acknowledgements and questions live in their own module; imported here so Django registers them.
from reporting.portal.models_qa import Acknowledgement, Question, QuestionStatus  # noqa: E402, F401
