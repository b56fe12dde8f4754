"""The two-step sign-in: password, then a TOTP code. Lockout per account (in the database) and per
address (in the cache). Every refusal at the password step reads the same, so the page never tells
whether a username exists, is a reviewer, or is locked."""
from __future__ import annotations

import time

from django.conf import settings
from django.contrib.auth import authenticate
from django.core.cache import cache
from django.http import HttpRequest
from django_otp.plugins.otp_totp.models import TOTPDevice

from reporting.portal.models import Reviewer
from reporting.portal.services.reviewers import reviewer_is_locked, reviewer_login_failed

GENERIC_REFUSAL = ("Sign-in failed. Check your username and password. After repeated failures sign-in is "
                   "paused for a while; if it keeps failing, ask your contact at the lab.")
CODE_REFUSAL = "The code was not accepted. Use the current code from your authenticator app (each code works once)."
PENDING_KEY = "portal_pending_reviewer"
# How long the password step stays good for the code step.
PENDING_SECONDS = 300


def client_ip(request: HttpRequest) -> str | None:
    # REMOTE_ADDR only: X-Forwarded-For is whatever the client wants it to be unless a trusted proxy set it.
    return request.META.get("REMOTE_ADDR") or None


def _ip_key(ip: str | None) -> str:
    return f"portal-login-fail:{ip or 'unknown'}"


def ip_is_blocked(ip: str | None) -> bool:
    return (cache.get(_ip_key(ip)) or 0) >= settings.MIR_PORTAL_IP_MAX_FAILURES


def ip_failed(ip: str | None) -> None:
    key = _ip_key(ip)
    # add() then incr() keeps the count atomic across processes with a shared cache (Redis).
    cache.add(key, 0, timeout=settings.MIR_PORTAL_LOCKOUT_SECONDS)
    try:
        cache.incr(key)
    except ValueError:
        cache.set(key, 1, timeout=settings.MIR_PORTAL_LOCKOUT_SECONDS)


def password_step(request: HttpRequest, *, username: str, password: str) -> Reviewer | None:
    """The reviewer whose password this is, if they may go on to the code step; None otherwise."""
    ip = client_ip(request)
    if ip_is_blocked(ip):
        return None
    reviewer = Reviewer.objects.select_related("user").filter(user__username=username).first()
    # authenticate() runs the password hasher even for unknown names, so timing does not tell them apart.
    user = authenticate(request, username=username, password=password)
    if reviewer is not None and reviewer_is_locked(reviewer):
        ip_failed(ip)
        return None
    ok = (user is not None and reviewer is not None and reviewer.user_id == user.pk and reviewer.is_active
          and not user.is_staff and not user.is_superuser)
    if not ok:
        ip_failed(ip)
        if reviewer is not None:
            reviewer_login_failed(reviewer=reviewer, step="password", ip=ip)
        return None
    return reviewer


def pending_set(request: HttpRequest, reviewer: Reviewer) -> None:
    request.session.cycle_key()
    request.session[PENDING_KEY] = {"reviewer": reviewer.pk, "at": time.time()}


def pending_reviewer(request: HttpRequest) -> Reviewer | None:
    pending = request.session.get(PENDING_KEY)
    if not isinstance(pending, dict) or time.time() - float(pending.get("at", 0)) > PENDING_SECONDS:
        return None
    reviewer = Reviewer.objects.select_related("user", "authority").filter(pk=pending.get("reviewer")).first()
    if reviewer is None or not reviewer.is_active or reviewer_is_locked(reviewer) or reviewer.user.is_staff:
        return None
    return reviewer


def pending_clear(request: HttpRequest) -> None:
    request.session.pop(PENDING_KEY, None)


def code_step(request: HttpRequest, *, reviewer: Reviewer, token: str) -> TOTPDevice | None:
    """The device that accepted ``token``, or None (the failure is counted towards the lockout)."""
    device = TOTPDevice.objects.filter(user=reviewer.user, confirmed=True).first()
    # verify_token refuses a code at or before the last accepted time step, so a code works once.
    if device is not None and device.verify_token(token):
        return device
    ip = client_ip(request)
    ip_failed(ip)
    reviewer_login_failed(reviewer=reviewer, step="totp", ip=ip)
    return None
