"""Sending Celery tasks safely, and telling whether the worker that claimed a job still lives.

The database is the truth for every job: a task message is only a nudge. A failed publish
(broker down) is logged and swallowed, so the rows and files stay and the job stays queued
for the sweep (``wildweb.tasks.jobs_sweep_task``) to send again.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from typing import Any

from kombu.exceptions import KombuError
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

# Errors that mean "the broker is unreachable", not "the task is wrong".
BROKER_ERRORS = (KombuError, RedisError, OSError)
# After a failed publish, this process skips publishing for a few seconds.
BROKER_DOWN_PAUSE = 5.0
_broker_down_at = -BROKER_DOWN_PAUSE


def task_send(
    task: Any, *args: Any, queue: str | None = None, countdown: float | None = None
) -> bool:
    """Publish ``task(*args)``; returns False (and logs) instead of raising when the broker is down.

    Args:
        task: A Celery task.
        queue: Overrides the ``task_routes`` queue (e.g. ``bulk`` for backlog work).
        countdown: Seconds to wait before the task may run.
    """
    global _broker_down_at
    if time.monotonic() - _broker_down_at < BROKER_DOWN_PAUSE:
        return False  # it just failed: one request with 20 photos must not wait 20 times
    options: dict[str, Any] = {}
    if queue:
        options["queue"] = queue
    if countdown:
        options["countdown"] = countdown
    try:
        task.apply_async(args, **options)
    except BROKER_ERRORS as error:
        _broker_down_at = time.monotonic()
        logger.warning(
            "could not send %s%r (%s); the sweep will send it again", task.name, args, error
        )
        return False
    return True


def worker_name() -> str:
    """``host:pid`` of this process, recorded on the jobs it claims."""
    return f"{socket.gethostname()}:{os.getpid()}"


def worker_gone(worker: str) -> bool:
    """Whether the process named by ``worker_name()`` is known to be dead (same host only)."""
    host, _, pid = worker.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def queue_waiting(queue: str) -> int | None:
    """Messages waiting (not yet taken by a worker) in a queue; None if the broker is down."""
    from wildweb.celery import app

    try:
        with app.connection_for_write() as connection:
            return connection.default_channel.queue_declare(queue).message_count
    except BROKER_ERRORS:
        return None


def jobs_sweep() -> dict[str, int]:
    """Send again every job the database says is pending but no live worker will run.

    Embedding jobs, searches, thumbnails, training runs, imports and promotions waiting for
    their re-embedding; each part is idempotent (claims are conditional), so a duplicate is
    harmless.

    Returns:
        How many of each were sent.
    """
    from catalogue.services.sightings import thumbnails_missing_send
    from identification.services.embedding import embedding_jobs_recover
    from identification.services.matching import identifications_recover
    from training.services.imports import dataset_imports_recover
    from training.services.promotion import promotions_switch_check
    from training.services.runs import training_runs_recover
    from wildweb.storage import partial_files_remove

    return {
        "embedding_jobs": embedding_jobs_recover(),
        "identifications": identifications_recover(),
        "thumbnails": thumbnails_missing_send(),
        # Runs have no "sent" mark: send again only when no message waits in their queue,
        # or every sweep would add a duplicate behind a long run.
        "training_runs": len(training_runs_recover()) if queue_waiting("training") == 0 else 0,
        "promotions_switched": len(promotions_switch_check()),
        "imports": dataset_imports_recover(),
        "partial_files_removed": partial_files_remove(),
    }
