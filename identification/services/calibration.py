"""Choosing each species' ranking method by itself: calibration jobs asked for, run, recovered.

No admin has to run ``calibrate``: a species' ranking method and calibration are chosen
again (``species_calibrate``, with the guard of ``reid.method_selection``) whenever its
labelled evidence changes:

* its labelled photos were embedded under the version that ranks it (an import with
  identities, :func:`calibration_request_if_embedded`, from the embedding worker);
* its model switched or rolled back (``model_switch``, ``training.services.promotion``);
* ``AUTO_CALIBRATE_DECISIONS`` expert decisions that set an identity since it was last asked
  for (:func:`calibration_request_if_decided`, from ``decisions.match_decide``).

The ``CalibrationJob`` row is the truth; the task message is only a nudge, sent on commit
and again by the sweep (:func:`calibration_jobs_recover`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import timedelta

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from catalogue.models import Species
from identification.models import CalibrationJob, EmbeddingJob, IdentityDecision, SpeciesModel
from identification.services.embedding import SEND_GRACE, TRANSIENT_ERRORS
from wildweb.errors import ServiceError
from wildweb.jobs import task_send, worker_gone, worker_name

logger = logging.getLogger(__name__)
State = CalibrationJob.State
IDENTITY_VERDICTS = (IdentityDecision.Verdict.SAME, IdentityDecision.Verdict.NEW)


def calibration_request(*, species_id: int, because: str) -> None:
    """Record that the species' ranking method must be chosen again; sent once this commits.

    A job already queued stays queued (one run serves every request before it starts); a
    running one is queued again when it ends, so it sees the newest labels.
    """
    now = timezone.now()
    job, created = CalibrationJob.objects.get_or_create(
        species_id=species_id, defaults={"requested_at": now, "requested_because": because}
    )
    if not created:
        jobs = CalibrationJob.objects.filter(pk=species_id)
        jobs.update(requested_at=now, requested_because=because)
        jobs.filter(state__in=[State.DONE, State.FAILED]).update(
            state=State.QUEUED, sent_at=None, attempts=0, error=""
        )
    transaction.on_commit(lambda: calibration_jobs_dispatch(species_ids=[species_id]))


def calibration_request_if_embedded(*, jobs: Iterable[EmbeddingJob]) -> list[int]:
    """Ask for a choice for each species whose labelled photos among ``jobs`` (whose vectors
    were just stored) were the last of its photos waiting for one under the version that
    ranks it.

    Unlabelled uploads never ask (they add no evidence), nor do vectors of a promoted
    version still re-embedding (the switch asks).

    Returns:
        Ids of the species asked for.
    """
    labelled: dict[int, int] = {}
    for job in jobs:
        if job.annotation.individual_id is not None:
            labelled[job.annotation.species_id] = job.model_version_id
    asked = []
    for species_id, version_id in labelled.items():
        ranks_with = SpeciesModel.objects.filter(species_id=species_id, model_version_id=version_id)
        waiting = EmbeddingJob.objects.filter(
            model_version_id=version_id,
            annotation__species_id=species_id,
            state__in=[EmbeddingJob.State.QUEUED, EmbeddingJob.State.RUNNING],
        )
        if ranks_with.exists() and not waiting.exists():
            calibration_request(species_id=species_id, because="labelled photos were embedded")
            asked.append(species_id)
    return asked


def calibration_request_if_decided(*, species_id: int) -> bool:
    """Ask for a choice once ``AUTO_CALIBRATE_DECISIONS`` decisions that set an identity
    (confirmed or new individual, not reverted) were made since the species was last asked
    for (ever, for a species never asked for)."""
    decisions = IdentityDecision.objects.filter(
        annotation__species_id=species_id, verdict__in=IDENTITY_VERDICTS, reverted_at__isnull=True
    )
    last_asked = (
        CalibrationJob.objects.filter(pk=species_id).values_list("requested_at", flat=True).first()
    )
    if last_asked is not None:
        decisions = decisions.filter(decided_at__gt=last_asked)
    count = decisions.count()
    if count < settings.AUTO_CALIBRATE_DECISIONS:
        return False
    calibration_request(species_id=species_id, because=f"{count} expert decisions")
    return True


def calibration_jobs_dispatch(*, species_ids: Iterable[int]) -> int:
    """Send the queued jobs among ``species_ids`` (queue ``bulk``, by the routing table).

    Returns:
        How many were handed to the broker (a broker outage leaves the rest to the sweep).
    """
    from identification.tasks import species_calibrate_task

    sent = 0
    for species_id in CalibrationJob.objects.filter(
        pk__in=list(species_ids), state=State.QUEUED
    ).values_list("pk", flat=True):
        if not task_send(species_calibrate_task, species_id):
            break
        CalibrationJob.objects.filter(pk=species_id).update(sent_at=timezone.now())
        sent += 1
    return sent


def calibration_jobs_recover() -> int:
    """The sweep's part: free jobs whose worker died, send queued ones not on their way.

    Sends the queued jobs never handed to the broker and those sent longer than
    ``JOBS_RESEND_SECONDS`` ago (a message lost inside Redis).

    Returns:
        How many were sent.
    """
    calibration_jobs_release_dead()
    now = timezone.now()
    pending = CalibrationJob.objects.filter(state=State.QUEUED).filter(
        Q(sent_at__isnull=True, requested_at__lt=now - SEND_GRACE)
        | Q(sent_at__lt=now - timedelta(seconds=settings.JOBS_RESEND_SECONDS))
    )
    return calibration_jobs_dispatch(species_ids=pending.values_list("pk", flat=True))


def calibration_jobs_release_dead(*, species_ids: list[int] | None = None) -> int:
    """Queue again the running jobs whose worker is gone or outlived the task's time limit.

    Returns:
        How many were freed.
    """
    stale_before = timezone.now() - timedelta(seconds=settings.CALIBRATE_TIME_LIMIT + 60)
    running = CalibrationJob.objects.filter(state=State.RUNNING)
    if species_ids is not None:
        running = running.filter(pk__in=species_ids)
    freed = 0
    for pk, worker, started_at in running.values_list("pk", "worker", "started_at"):
        if worker_gone(worker) or started_at is None or started_at < stale_before:
            held = CalibrationJob.objects.filter(pk=pk, state=State.RUNNING, worker=worker)
            freed += held.update(
                state=State.QUEUED,
                sent_at=None,
                worker="",
                error=f"The worker {worker} stopped while choosing the ranking method.",
            )
    return freed


def species_calibration_run(*, species_id: int) -> bool:
    """Claim the species' queued job and choose its method (``species_calibrate``).

    Returns:
        True when this call ran it (False: nothing queued, another worker holds it, or it was
        started ``JOBS_MAX_ATTEMPTS`` times and now fails with the reason).
    """
    from identification.services.evaluation import species_calibrate

    calibration_jobs_release_dead(species_ids=[species_id])  # a redelivered message
    jobs = CalibrationJob.objects.filter(pk=species_id, state=State.QUEUED)
    worn = jobs.filter(attempts__gte=settings.JOBS_MAX_ATTEMPTS)
    for attempts, error in worn.values_list("attempts", "error"):
        worn.update(state=State.FAILED, error=f"Gave up after {attempts} tries. {error}".strip())
    me = worker_name()
    if not jobs.filter(attempts__lt=settings.JOBS_MAX_ATTEMPTS).update(
        state=State.RUNNING, worker=me, started_at=timezone.now(), attempts=F("attempts") + 1
    ):
        return False
    species = Species.objects.get(pk=species_id)
    try:
        report = species_calibrate(species=species)
    except ServiceError as error:  # e.g. too few labelled photos yet: the page says so
        _finish(species_id=species_id, worker=me, state=State.FAILED, error=error.message)
    except SoftTimeLimitExceeded:
        _finish(
            species_id=species_id,
            worker=me,
            state=State.FAILED,
            error=f"Took longer than CALIBRATE_TIME_LIMIT ({settings.CALIBRATE_TIME_LIMIT} s).",
        )
    except TRANSIENT_ERRORS as error:  # says nothing about the species: try again
        logger.warning("choosing the method of species %s interrupted: %s", species_id, error)
        CalibrationJob.objects.filter(pk=species_id, state=State.RUNNING, worker=me).update(
            state=State.QUEUED, sent_at=None, worker="", error=f"{type(error).__name__}: {error}"
        )
    except Exception as error:
        logger.exception("choosing the method of species %s failed", species_id)
        _finish(
            species_id=species_id,
            worker=me,
            state=State.FAILED,
            error=f"{type(error).__name__}: {error}",
        )
    else:
        logger.info("%s ranks with %s: %s", species, report["ranking_method"], report["decision"])
        _finish(species_id=species_id, worker=me, state=State.DONE, error="")
    return True


def _finish(*, species_id: int, worker: str, state: str, error: str) -> None:
    """End a run; asked for again while it ran, it is queued again (and sent) instead."""
    mine = CalibrationJob.objects.filter(pk=species_id, state=State.RUNNING, worker=worker)
    if mine.filter(requested_at__gt=F("started_at")).update(
        state=State.QUEUED, sent_at=None, worker="", attempts=0, error=error[:1000]
    ):
        calibration_jobs_dispatch(species_ids=[species_id])
        return
    mine.update(state=state, worker="", error=error[:1000])
