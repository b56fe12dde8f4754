"""Celery tasks of the intake side: thin, idempotent, one service call each."""
from celery import shared_task

from incidents.services.idempotency import idempotency_keys_purge


@shared_task(name="incidents.purge_idempotency_keys", acks_late=True, time_limit=120, soft_time_limit=100)
def purge_idempotency_keys() -> int:
    return idempotency_keys_purge()
