"""The Django project package and the outbound side of the service (the ``reporting`` app)."""
from reporting.celery import app as celery_app

__all__ = ["celery_app"]
