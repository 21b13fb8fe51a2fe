"""Celery application: ``default`` serves web-adjacent chores, ``gpu`` the model work."""

from __future__ import annotations

import os

from celery import Celery
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "wildweb.settings")

app = Celery("wildweb")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.task_queues = (Queue("default"), Queue("gpu"))
app.conf.task_routes = {
    "catalogue.tasks.*": {"queue": "default"},
    "identification.tasks.*": {"queue": "gpu"},
    "training.tasks.*": {"queue": "gpu"},
}
app.autodiscover_tasks()
