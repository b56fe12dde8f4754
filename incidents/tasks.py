"""Celery tasks of the intake side: thin, idempotent, one service call each."""
from celery import shared_task

from incidents.services.audit_chain import audit_seal
from incidents.services.idempotency import idempotency_keys_purge

# A run seals for at most this long and leaves the rest of a backlog to the next beat, well inside the
# task's time limits, so a 100k-event backlog is worked off in steps rather than by one run that is killed.
SEAL_TIME_BUDGET_SECONDS = 60.0


@shared_task(name="incidents.purge_idempotency_keys", acks_late=True, time_limit=120, soft_time_limit=100)
def purge_idempotency_keys() -> int:
    return idempotency_keys_purge()


@shared_task(name="incidents.seal_audit_chain", acks_late=True, time_limit=120, soft_time_limit=100,
             ignore_result=True)
def seal_audit_chain() -> int:
    return audit_seal(time_budget_seconds=SEAL_TIME_BUDGET_SECONDS).sealed
