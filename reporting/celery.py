"""The Celery application. PostgreSQL is the truth; the broker is only a doorbell."""
import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "reporting.settings")

app = Celery("reporting")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
