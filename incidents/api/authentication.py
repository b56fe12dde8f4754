"""Bearer-token authentication and scope checks for detectors."""
from __future__ import annotations

from dataclasses import dataclass

from rest_framework import authentication, exceptions, permissions

from incidents.models import Detector, DetectorToken
from incidents.services.detectors import detector_token_authenticate


@dataclass(frozen=True)
class DetectorPrincipal:
    """``request.user`` for a detector: not a Django user, never a staff member."""

    detector: Detector
    token: DetectorToken
    is_authenticated: bool = True
    is_staff: bool = False

    @property
    def pk(self) -> int:
        return self.detector.pk


# Set on the Django request by the intake fast path (incidents/api/fast_intake.py) once the token
# has authenticated: if it then hands the request to DRF after all, authentication reuses the
# principal instead of looking the token up (and recording its use) a second time.
PRINCIPAL_ATTR = "mir_principal"


def bearer_secret(request) -> str | None:  # noqa: ANN001
    """The token of a well-formed ``Authorization: Bearer <token>`` header; None for anything else
    (``DetectorTokenAuthentication`` then says what is wrong with it)."""
    header = authentication.get_authorization_header(request).split()
    if len(header) != 2 or header[0].decode("latin-1").lower() != "bearer":
        return None
    try:
        return header[1].decode("ascii")
    except UnicodeDecodeError:
        return None


def principal_for(secret: str) -> DetectorPrincipal | None:
    token = detector_token_authenticate(secret=secret)
    return None if token is None else DetectorPrincipal(detector=token.detector, token=token)


class DetectorTokenAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request):  # noqa: ANN001, ANN201
        principal = getattr(request, PRINCIPAL_ATTR, None)
        if principal is not None:
            return principal, principal.token
        header = authentication.get_authorization_header(request).split()
        if not header:
            return None
        if header[0].decode("latin-1").lower() != self.keyword.lower():
            raise exceptions.AuthenticationFailed("use 'Authorization: Bearer <token>'")
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("the Authorization header must be 'Bearer <token>'")
        try:
            secret = header[1].decode("ascii")
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed("the token is not valid") from None
        principal = principal_for(secret)
        if principal is None:
            raise exceptions.AuthenticationFailed("the token is not valid, expired, or revoked")
        return principal, principal.token

    def authenticate_header(self, request) -> str:  # noqa: ANN001
        return 'Bearer realm="detector-api"'


class HasScope(permissions.BasePermission):
    """Use as ``HasScope.of("incidents:submit")``."""

    required_scope = ""

    @classmethod
    def of(cls, scope: str) -> type[HasScope]:
        scope = str(getattr(scope, "value", scope))
        return type(f"HasScope_{scope.replace(':', '_')}", (cls,), {"required_scope": scope})

    def has_permission(self, request, view) -> bool:  # noqa: ANN001
        principal = request.user
        if not isinstance(principal, DetectorPrincipal):
            return False
        if not principal.token.has_scope(self.required_scope):
            self.message = f"this token lacks the {self.required_scope!r} scope"
            return False
        return True
