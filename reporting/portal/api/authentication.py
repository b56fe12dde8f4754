"""Reviewer-token authentication, the read permission and the per-reviewer rate limit.

Shared by the reviewer API and TAXII. A token is accepted as ``Authorization: Bearer <token>`` (or
``Token <token>``, taxii2-client's TokenAuth) or as HTTP Basic with the token as the password and the
reviewer's username as the user name. Only ReviewerToken rows are consulted: a detector token is unknown
here, and DetectorTokenAuthentication never consults this table.
"""
from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from django.conf import settings
from rest_framework import authentication, exceptions, permissions

from incidents.api.throttling import FixedWindowThrottle
from reporting.portal.models import Reviewer, ReviewerScope, ReviewerToken
from reporting.portal.services.tokens import reviewer_token_authenticate


@dataclass(frozen=True)
class ReviewerPrincipal:
    """``request.user`` for a reviewer's machine: never staff, never a detector."""

    reviewer: Reviewer
    token: ReviewerToken
    is_authenticated: bool = True
    is_staff: bool = False

    @property
    def pk(self) -> int:
        return self.reviewer.pk


class ReviewerTokenAuthentication(authentication.BaseAuthentication):
    realm = "reviewer-api"

    def authenticate(self, request):  # noqa: ANN001, ANN201
        header = authentication.get_authorization_header(request).split()
        if not header:
            return None
        scheme = header[0].decode("latin-1").lower()
        # "Token" is what taxii2-client's TokenAuth sends; it means the same as Bearer here.
        if scheme not in ("bearer", "token", "basic") or len(header) != 2:
            raise exceptions.AuthenticationFailed("use 'Authorization: Bearer <token>' or HTTP Basic with the "
                                                  "token as the password")
        username, secret = None, None
        try:
            if scheme != "basic":
                secret = header[1].decode("ascii")
            else:
                username, _, secret = base64.b64decode(header[1], validate=True).decode("utf-8").partition(":")
        except (UnicodeDecodeError, binascii.Error):
            raise exceptions.AuthenticationFailed("the credentials are not readable") from None
        token = reviewer_token_authenticate(secret=secret)
        if token is None:
            raise exceptions.AuthenticationFailed("the token is not valid, expired, or revoked, or its reviewer "
                                                  "is inactive")
        # With Basic the user name must be the token's reviewer: a mismatch means a misconfigured client.
        if username is not None and username != token.reviewer.user.get_username():
            raise exceptions.AuthenticationFailed("the user name does not match the token's reviewer")
        return ReviewerPrincipal(reviewer=token.reviewer, token=token), token

    def authenticate_header(self, request) -> str:  # noqa: ANN001
        return f'Bearer realm="{self.realm}"'


class TaxiiTokenAuthentication(ReviewerTokenAuthentication):
    realm = "taxii"

    def authenticate_header(self, request) -> str:  # noqa: ANN001
        return f'Basic realm="{self.realm}", Bearer realm="{self.realm}"'


class CanReadReports(permissions.BasePermission):
    message = f"this token lacks the {ReviewerScope.READ.value!r} scope"

    def has_permission(self, request, view) -> bool:  # noqa: ANN001
        principal = request.user
        return isinstance(principal, ReviewerPrincipal) and principal.token.has_scope(ReviewerScope.READ)


class ReviewerRateThrottle(FixedWindowThrottle):
    """A fixed one-minute window per reviewer, counted atomically in the cache (as for detectors).

    Per reviewer, not per token: issuing a second token must not double the allowance.
    """

    def counted(self, request) -> tuple[str, int] | None:  # noqa: ANN001
        principal = request.user
        if not isinstance(principal, ReviewerPrincipal):
            return None
        return f"mir:reviewer-rate:{principal.reviewer.pk}", settings.MIR_REVIEWER_RATE_PER_MINUTE
