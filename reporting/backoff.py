"""When to try again after a transient failure: sooner as the deadline nears, never past it."""
from __future__ import annotations

import random
from datetime import datetime, timedelta

FIRST_RETRY = timedelta(seconds=10)
LONGEST_WAIT = timedelta(hours=1)
# Once late, keep trying at least this often: a late report is still sent, never dropped.
OVERDUE_WAIT = timedelta(minutes=5)
SHORTEST_WAIT = timedelta(seconds=5)


def next_attempt_at(
    *, now: datetime, due_at: datetime | None, attempts: int, retry_after: float | None = None,
    jitter: float = 0.1, rng: random.Random | None = None,
) -> datetime:
    """The time of the next try after ``attempts`` tries have failed.

    Exponential from FIRST_RETRY, capped at LONGEST_WAIT, and at a quarter of the time left before
    the deadline, so a stage due in ten minutes is tried every couple of minutes, not in an hour. A
    receiver's Retry-After is honoured unless it would push the next try past the deadline.
    """
    wait = min(FIRST_RETRY * (2 ** max(attempts - 1, 0)), LONGEST_WAIT)
    if due_at is not None:
        remaining = due_at - now
        wait = min(wait, max(remaining / 4, SHORTEST_WAIT)) if remaining > timedelta(0) else min(wait, OVERDUE_WAIT)
    if retry_after is not None and retry_after > 0:
        asked = timedelta(seconds=min(retry_after, LONGEST_WAIT.total_seconds()))
        if due_at is None or now + asked <= due_at or due_at <= now:
            wait = max(wait, asked)
        else:
            wait = max(wait, due_at - now - SHORTEST_WAIT, SHORTEST_WAIT)
    spread = (rng or random).uniform(-jitter, jitter)
    wait = max(wait * (1 + spread), SHORTEST_WAIT)
    if due_at is not None and now < due_at and now + wait > due_at:
        wait = max(due_at - now, SHORTEST_WAIT)
    return now + wait
