"""The one table of allowed status changes of an incident (applied by services.workflow)."""
from incidents.choices import Status

ALLOWED_TRANSITIONS: dict[str, frozenset[str]] = {
    Status.NEW: frozenset({Status.TRIAGED, Status.CONFIRMED, Status.DISMISSED}),
    Status.TRIAGED: frozenset({Status.CONFIRMED, Status.DISMISSED}),
    Status.CONFIRMED: frozenset({Status.RESOLVED}),
    Status.DISMISSED: frozenset({Status.TRIAGED, Status.CLOSED}),  # reopen, or close for good
    Status.RESOLVED: frozenset({Status.CONFIRMED, Status.CLOSED}),  # reopen on recurrence, or close
    Status.CLOSED: frozenset(),
}


class TransitionError(Exception):
    def __init__(self, current: str, target: str) -> None:
        current, target = str(current), str(target)  # plain values, not "Status.NEW"
        allowed = ", ".join(sorted(str(s) for s in ALLOWED_TRANSITIONS.get(current, ()))) or "none"
        super().__init__(f"cannot move an incident from '{current}' to '{target}' (allowed: {allowed})")
        self.current = current
        self.target = target


def check_transition(current: str, target: str) -> None:
    if target not in ALLOWED_TRANSITIONS.get(current, frozenset()):
        raise TransitionError(current, target)
