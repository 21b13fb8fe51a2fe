"""Celery application and its queue layout.

* ``default``: web chores (thumbnails) and the periodic job sweep.
* ``identify``: embedding and matching of interactive uploads; a new sighting never waits
  behind a backlog, and uploaders take turns (``FAIR_QUEUES``: its messages are nudges, the
  worker picks the job from the rows, see ``identification.selectors.fair``).
* ``bulk``: imports, re-embedding after a promotion, an uploader's flood beyond
  ``INTERACTIVE_PENDING_SIGHTINGS``, choosing a species' ranking method, other backlog.
* ``training``: training runs, on a worker process of their own with concurrency 1, so an
  upload is identified while a fine-tune runs.

Identification tasks route to ``identify``; callers send backlog work to ``bulk`` explicitly
(the queue is recorded on each job row, so the sweep re-sends it to the same queue).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from celery import Celery
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "wildweb.settings")

QUEUES = ("default", "identify", "bulk", "training")
# One worker process per group in `make demo` and docker/compose.yaml; scale each on its own.
WORKER_GROUPS = {"interactive": "identify,default", "bulk": "bulk", "training": "training"}
# On one machine the backlog workers yield the CPU to the interactive one (``nice``), so an
# upload is answered quickly even while an import or a fine-tune runs beside it.
WORKER_NICENESS = {"interactive": 0, "bulk": 10, "training": 10}

app = Celery("wildweb")
app.config_from_object("django.conf:settings", namespace="CELERY")
# Each queue has its own routing key: with the default one (the queue name "default" for
# all) the direct exchange would copy every message into every queue.
app.conf.task_queues = tuple(Queue(name, routing_key=name) for name in QUEUES)
app.conf.task_routes = {
    "catalogue.tasks.*": {"queue": "default"},
    # Exact names win over the patterns below: choosing a method is backlog work.
    "identification.tasks.species_calibrate_task": {"queue": "bulk"},
    "identification.tasks.*": {"queue": "identify"},
    "training.tasks.training_run_task": {"queue": "training"},
    "training.tasks.dataset_import_task": {"queue": "bulk"},
    "training.tasks.*": {"queue": "default"},  # promotion checks and recovery: quick chores
    "wildweb.tasks.*": {"queue": "default"},
    "notifications.tasks.*": {"queue": "default"},
}
app.autodiscover_tasks()


def worker_command(
    *,
    queues: str = "identify,default",
    pool: str | None = None,
    quiet_cluster: bool = False,
    name: str | None = None,
    niceness: int = 0,
) -> list[str]:
    """The command line of one worker process taking one task at a time.

    Args:
        queues: Comma-separated queues to consume (see ``WORKER_GROUPS``).
        pool: Celery pool (``solo`` for a single process); default prefork, which is what
            enforces the task time limits.
        quiet_cluster: Skip gossip, mingle and heartbeats (short-lived workers in tests).
        name: Node name (``-n``); several workers on one host need distinct ones.
        niceness: Run under ``nice -n`` (lower CPU priority), e.g. ``WORKER_NICENESS``.
    """
    command = [
        *(["nice", "-n", str(niceness)] if niceness else []),
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
    if name:
        command += ["-n", f"{name}@%h"]
    if pool:
        command += ["--pool", pool]
    if quiet_cluster:
        command += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
    return command


def beat_command(*, schedule: Path) -> list[str]:
    """The command line of the scheduler that runs the job sweep (one per installation)."""
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "wildweb",
        "beat",
        "--loglevel",
        "INFO",
        "-s",
        str(schedule),
    ]
