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
from functools import lru_cache
from pathlib import Path
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
    """``host:pid:start`` of this process, recorded on the jobs it claims.

    ``start`` is the process's start time (clock ticks since boot, from ``/proc``), so that a
    later process given the same pid is not taken for the worker: with Linux's default of
    32,768 pids a busy machine hands a dead worker's pid to another process within minutes,
    and the sweep then left that worker's job running for good. Without ``/proc``:
    ``host:pid``.
    """
    return _process_name(os.getpid())  # by pid: a forked pool child is a process of its own


@lru_cache(maxsize=8)
def _process_name(pid: int) -> str:
    """A process's name never changes: ``/proc`` is read once, not at every claim."""
    started = process_start(pid)
    return f"{socket.gethostname()}:{pid}:{started}" if started else f"{socket.gethostname()}:{pid}"


def process_start(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot), or ``None`` if unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rpartition(")")[2].split()[19]  # field 22; the name in (...) may hold spaces


def worker_gone(worker: str) -> bool:
    """Whether the process named by ``worker_name()`` is known to be dead (same host only):
    no process has its pid, or the one that has it started at another time. Names of
    earlier versions (``host:pid``) are checked by pid alone."""
    host, _, rest = worker.partition(":")
    pid, _, started = rest.partition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    current = process_start(int(pid))
    return bool(started) and current is not None and current != started


def queue_waiting(queue: str) -> int | None:
    """Messages waiting (not yet taken by a worker) in a queue; None if the broker is down."""
    from wildweb.celery import app

    try:
        with app.connection_for_write() as connection:
            return connection.default_channel.queue_declare(queue).message_count
    except BROKER_ERRORS:
        return None
