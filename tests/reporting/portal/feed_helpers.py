"""Reviewer tokens for the machine-feed tests (reviewer API and TAXII)."""
from __future__ import annotations

from datetime import timedelta

from django.utils import timezone
from rest_framework.test import APIClient

from incidents.actors import Actor
from reporting.portal.services.tokens import IssuedReviewerToken, reviewer_token_issue

SYSTEM = Actor.system("tests")


def issue_token(reviewer, *, days: int = 90, label: str = "") -> IssuedReviewerToken:  # noqa: ANN001
    return reviewer_token_issue(actor=SYSTEM, reviewer=reviewer, expires_at=timezone.now() + timedelta(days=days),
                                label=label)


def bearer(secret: str | None) -> APIClient:
    client = APIClient()
    if secret:
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client
