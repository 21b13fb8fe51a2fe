"""Celery application: ``default`` serves web-adjacent chores, ``gpu`` the model work."""

from __future__ import annotations

import os
import sys

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


def worker_command(
    *, queues: str = "default,gpu", pool: str | None = None, quiet_cluster: bool = False
) -> list[str]:
    """The command line of one worker process taking one task at a time.

    Args:
        queues: Comma-separated queues to consume.
        pool: Celery pool (``solo`` for a single process); default prefork.
        quiet_cluster: Skip gossip, mingle and heartbeats (short-lived workers in tests).
    """
    command = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "wildweb",
        "worker",
        "-Q",
        queues,
        "--concurrency",
        "1",
        "--loglevel",
        "INFO",
    ]
    if pool:
        command += ["--pool", pool]
    if quiet_cluster:
        command += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
    return command
