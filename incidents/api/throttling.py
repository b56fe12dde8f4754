"""Per-detector rate limit: a fixed one-minute window counted in the cache.

``cache.add`` + ``cache.incr`` are atomic in Redis (set CACHE_URL in multi-process deployments) and
in the local-memory cache, so concurrent requests cannot slip past the limit the way a read-modify-
write history list can.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache
from rest_framework.throttling import BaseThrottle

from incidents.api.authentication import DetectorPrincipal

WINDOW_SECONDS = 60


# Set on the Django request by the intake fast path (incidents/api/fast_intake.py) once it has counted
# the request: if it then hands the request to DRF after all, the throttle reuses that decision
# instead of counting the same request twice.
DECISION_ATTR = "mir_throttle_decision"


@dataclass(frozen=True)
class ThrottleDecision:
    wait: float | None  # None: allowed; else the seconds until the window ends


def window_count(prefix: str, limit: int) -> ThrottleDecision:
    """Count one request in the current window of ``prefix`` and decide it."""
    now = time.time()
    window = int(now // WINDOW_SECONDS)
    key = f"{prefix}:{window}"
    cache.add(key, 0, timeout=WINDOW_SECONDS * 2)
    try:
        count = cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.add(key, 1, timeout=WINDOW_SECONDS * 2)
        count = 1
    if count > limit:
        return ThrottleDecision(max(1.0, (window + 1) * WINDOW_SECONDS - now))
    return ThrottleDecision(None)


class FixedWindowThrottle(BaseThrottle):
    """A fixed one-minute window per principal; subclasses say whose requests count and their limit."""

    def __init__(self) -> None:
        self._wait: float | None = None

    def counted(self, request) -> tuple[str, int] | None:  # noqa: ANN001
        """(cache key prefix, requests allowed per window) for this request's principal; None: not counted."""
        return None

    def allow_request(self, request, view) -> bool:  # noqa: ANN001
        decision = getattr(request, DECISION_ATTR, None)
        if decision is None:
            counted = self.counted(request)
            if counted is None:
                return True
            decision = window_count(*counted)
        self._wait = decision.wait
        return decision.wait is None

    def wait(self) -> float | None:
        return self._wait


def detector_window(principal: DetectorPrincipal) -> tuple[str, int]:
    limit = principal.detector.rate_limit_per_minute or settings.MIR_DETECTOR_RATE_PER_MINUTE
    return f"mir:rate:{principal.detector.pk}", limit


class DetectorRateThrottle(FixedWindowThrottle):
    def counted(self, request) -> tuple[str, int] | None:  # noqa: ANN001
        principal = request.user
        if not isinstance(principal, DetectorPrincipal):
            return None
        return detector_window(principal)
