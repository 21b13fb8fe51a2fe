"""Training runs: starting, claiming (one at a time per species), cancelling, recovering.

The web process never imports torch: the training itself lives in
:mod:`training.services.engine`, imported only by :func:`training_run_execute` in a worker
(or in the ``finetune`` command).
"""

from __future__ import annotations

import logging
import traceback
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import Count, F, Value
from django.db.models.functions import Concat
from django.utils import timezone

from catalogue.models import Annotation, Species
from identification.services.models import species_model_setting
from training.models import TrainingRun
from training.selectors import training_budget_estimate
from wildweb.errors import ServiceError
from wildweb.jobs import task_send, worker_gone, worker_name

logger = logging.getLogger(__name__)

Status = TrainingRun.Status

# Sensible on a CPU: the cached engine trains the top stages on stored features. The steps
# (samples_per_epoch) grow with the data up to time_budget_minutes (training.budget); 1600
# draws per epoch (300 steps) is the floor and what an explicit samples_per_epoch overrides.
# The learning rates are the best of benchmarks/reid/recipe.py on unseen cows (BENCHMARKS.md).
CPU_DEFAULTS: dict[str, Any] = {
    "image_size": 192,
    "epochs": 6,
    "samples_per_epoch": 1600,
    "batch_size": 32,
    "lr": 3e-3,
    "backbone_lr": 1e-3,
    "cached_views": 3,
    "trainable_stages": 3,
}
# Every layer trains on a GPU, so the backbone's rate stays lower (not measured here).
GPU_DEFAULTS: dict[str, Any] = {
    "image_size": 224,
    "epochs": 10,
    "samples_per_epoch": None,
    "batch_size": 32,
    "lr": 1e-3,
    "backbone_lr": 2e-4,
    "cached_views": 3,
    "trainable_stages": 3,
}
COMMON_DEFAULTS: dict[str, Any] = {
    "seed": 0,
    "validation_fraction": 0.3,  # share of individuals held out (at least 2 when possible)
    "max_individuals": None,  # cap on the species' own individuals used
    "images_per_individual": None,
    "original_max_individuals": 50,  # caps on each other species' data (CPU time)
    "original_images_per_individual": 10,
    "eval_max_individuals": 30,  # caps on each held-out set (SIFT is quadratic)
    "eval_images_per_individual": 6,
    "patience": 2,  # epochs without a better validation top-1 before stopping early
    # Cap on the training time the data may ask for. ~20 individuals want the 300-step floor
    # (about 7 minutes on 2 shared cores), so onboarding stays within 10 minutes.
    "time_budget_minutes": 20.0,
}
HYPERPARAMETER_TYPES: dict[str, type] = {
    "image_size": int,
    "epochs": int,
    "batch_size": int,
    "lr": float,
    "backbone_lr": float,
    "cached_views": int,
    "trainable_stages": int,
    "seed": int,
    "samples_per_epoch": int,
    "validation_fraction": float,
    "max_individuals": int,
    "images_per_individual": int,
    "original_max_individuals": int,
    "original_images_per_individual": int,
    "eval_max_individuals": int,
    "eval_images_per_individual": int,
    "patience": int,
    "time_budget_minutes": float,
}
MIN_INDIVIDUALS = 3  # some to train on, some held out to measure the result
STALE_HEARTBEAT = timedelta(seconds=getattr(settings, "TRAINING_STALE_SECONDS", 600))


def hyperparameters_resolve(*, engine_mode: str, given: dict[str, Any] | None) -> dict[str, Any]:
    """Defaults for the engine mode (CPU defaults when the mode is left to the hardware),
    overridden by ``given``; unknown names and wrong types are refused."""
    resolved = {**COMMON_DEFAULTS, **(GPU_DEFAULTS if engine_mode == "full" else CPU_DEFAULTS)}
    for name, value in (given or {}).items():
        if name not in HYPERPARAMETER_TYPES:
            raise ServiceError(f"Unknown hyperparameter {name!r}.", field=name)
        if value in (None, ""):
            continue
        try:
            value = HYPERPARAMETER_TYPES[name](value)
        except (TypeError, ValueError):
            raise ServiceError(f"{name} must be a number.", field=name) from None
        if value < 0 or (value == 0 and name != "seed"):
            raise ServiceError(f"{name} must be positive.", field=name)
        resolved[name] = value
    if not 0 < resolved["validation_fraction"] < 1:
        raise ServiceError("validation_fraction must be between 0 and 1.")
    if resolved["batch_size"] < 2:
        raise ServiceError("batch_size must be at least 2.")
    return resolved


def training_run_start(
    *,
    species: Species,
    mode: str = TrainingRun.Mode.WITH_ORIGINAL_DATA,
    engine_mode: str = "",
    hyperparameters: dict[str, Any] | None = None,
    created_by: AbstractBaseUser | None = None,
    dispatch: bool = True,
) -> TrainingRun:
    """Queue a fine-tuning run for a species, from its current model version.

    Args:
        species: The species whose identified animals are trained on.
        mode: ``with-original-data`` (also the other species' identified animals) or
            ``new-data-only``.
        engine_mode: ``cached`` (CPU), ``full`` (GPU) or ``""`` (chosen by the worker's
            hardware).
        hyperparameters: Overrides of the defaults (see ``COMMON_DEFAULTS``).
        created_by: Who started it.
        dispatch: Send it to the ``training`` queue after commit (``False`` when the caller runs
            it in-process).

    Raises:
        ServiceError: Bad settings, or too few identified individuals to train and validate.
    """
    if mode not in TrainingRun.Mode.values:
        raise ServiceError(f"Unknown mode {mode!r}.", field="mode")
    if engine_mode not in TrainingRun.EngineMode.values:
        raise ServiceError(f"Unknown engine mode {engine_mode!r}.", field="engine_mode")
    resolved = hyperparameters_resolve(engine_mode=engine_mode, given=hyperparameters)
    usable = (
        Annotation.objects.filter(species=species, individual__isnull=False)
        .values("individual")
        .annotate(n=Count("pk"))
        .filter(n__gte=2)
        .count()
    )
    if usable < MIN_INDIVIDUALS:
        raise ServiceError(
            f"{species} has {usable} individual(s) with at least 2 identified "
            f"photos; training needs {MIN_INDIVIDUALS} (some are held out to "
            "measure the result)."
        )
    plan = training_budget_estimate(
        species=species, mode=mode, engine_mode=engine_mode, hyperparameters=resolved
    )
    if (hyperparameters or {}).get("samples_per_epoch"):  # an explicit value wins
        plan = plan.with_samples_per_epoch(resolved["samples_per_epoch"], hyperparameters=resolved)
    resolved["samples_per_epoch"] = plan.samples_per_epoch
    resolved["budget"] = plan.as_dict()
    base = species_model_setting(species=species).model_version
    run = TrainingRun(
        species=species,
        base_version=base,
        mode=mode,
        engine_mode=engine_mode,
        hyperparameters=resolved,
        created_by=created_by,
    )
    run.full_clean()
    run.save()
    run_log(
        run_id=run.pk,
        line=f"Queued: {mode}, base model {base.name}; {plan.steps} steps, "
        f"about {plan.estimated_seconds / 60:.0f} min of training "
        f"({plan.rate_source}).",
    )
    if dispatch:
        transaction.on_commit(lambda: _task_send(run.pk))
    return run


def _task_send(run_id: int) -> None:
    from training.tasks import training_run_task

    task_send(training_run_task, run_id)  # broker down: the sweep sends the queued run again


def training_run_claim(*, run_id: int) -> TrainingRun | None:
    """Mark a queued run as running in this process, unless its species has a run going.

    Returns:
        The run, or ``None`` when it is not queued (another worker took it, it finished or
        was cancelled) or another run of its species is running (it stays queued and is sent
        again when that one ends).
    """
    with transaction.atomic():
        run = TrainingRun.objects.filter(pk=run_id).first()
        if run is None:
            return None
        # Serialises claims per species: two workers never both see "nothing running".
        Species.objects.select_for_update().get(pk=run.species_id)
        if (
            TrainingRun.objects.filter(species_id=run.species_id, status=Status.RUNNING)
            .exclude(pk=run_id)
            .exists()
        ):
            return None
        now = timezone.now()
        claimed = TrainingRun.objects.filter(
            pk=run_id,
            status=Status.QUEUED,
            cancel_requested=False,
        ).update(
            status=Status.RUNNING, worker=worker_name(), heartbeat_at=now, started_at=now, error=""
        )
        if claimed != 1:
            return None
    return TrainingRun.objects.select_related("species", "base_version").get(pk=run_id)


def training_run_execute(*, run_id: int) -> TrainingRun | None:
    """Claim a run and train it here; afterwards send the species' next queued run.

    A run with a checkpoint (its worker died) resumes from it.
    """
    run = training_run_claim(run_id=run_id)
    if run is None:
        return None
    from training.services.engine import training_run_train

    try:
        training_run_train(run=run)
    except Exception as error:  # the run must end as failed whatever went wrong
        logger.exception("training run %s failed", run_id)
        TrainingRun.objects.filter(pk=run_id).update(
            status=Status.FAILED,
            finished_at=timezone.now(),
            eta_seconds=None,
            error=f"{type(error).__name__}: {error}"[:2000],
        )
        run_log(run_id=run_id, line="Failed:\n" + traceback.format_exc(limit=5))
    finally:
        training_run_dispatch_next(species_id=run.species_id)
    return TrainingRun.objects.get(pk=run_id)


def training_run_dispatch_next(*, species_id: int) -> int | None:
    """Send the species' oldest queued run to the workers, if no run of it is running."""
    if TrainingRun.objects.filter(species_id=species_id, status=Status.RUNNING).exists():
        return None
    run_id = (
        TrainingRun.objects.filter(
            species_id=species_id, status=Status.QUEUED, cancel_requested=False
        )
        .order_by("created_at", "pk")
        .values_list("pk", flat=True)
        .first()
    )
    if run_id is not None:
        transaction.on_commit(lambda: _task_send(run_id))
    return run_id


def training_run_cancel(*, run: TrainingRun) -> TrainingRun:
    """Cancel a run: a queued one at once; a running one at its next training step."""
    if TrainingRun.objects.filter(pk=run.pk, status=Status.QUEUED).update(
        status=Status.CANCELLED, cancel_requested=True, finished_at=timezone.now()
    ):
        run_log(run_id=run.pk, line="Cancelled before it started.")
    elif TrainingRun.objects.filter(pk=run.pk, status=Status.RUNNING).update(cancel_requested=True):
        run_log(run_id=run.pk, line="Cancel requested; stopping at the next step.")
    else:
        raise ServiceError("This run has already finished.")
    run.refresh_from_db()
    return run


def training_run_should_stop(*, run_id: int) -> bool:
    return TrainingRun.objects.filter(pk=run_id, cancel_requested=True).exists()


def training_run_progress_save(*, run_id: int, **fields: Any) -> None:
    """Store live progress (and the heartbeat that shows the worker is alive)."""
    TrainingRun.objects.filter(pk=run_id).update(heartbeat_at=timezone.now(), **fields)


def run_log(*, run_id: int, line: str) -> None:
    stamp = timezone.now().strftime("%H:%M:%S")
    TrainingRun.objects.filter(pk=run_id).update(log=Concat(F("log"), Value(f"[{stamp}] {line}\n")))


def training_runs_recover(*, send: bool = True) -> list[int]:
    """Queue again the runs whose worker died, and send every queued run.

    A run counts as lost when its worker process is gone (same host) or its heartbeat is
    older than ``TRAINING_STALE_SECONDS``. Claiming is conditional, so sending a run twice is
    harmless. Called when a worker starts and by the periodic sweep.

    Args:
        send: Also send the queued runs. The sweep passes ``False`` while a message already
            waits in the training queue (it will run the next queued run): a lost run is
            still freed then, or that message would find it held by the dead worker.

    Returns:
        Ids of the runs sent.
    """
    stale_before = timezone.now() - STALE_HEARTBEAT
    for run in TrainingRun.objects.filter(status=Status.RUNNING):
        if worker_gone(run.worker) or (run.heartbeat_at and run.heartbeat_at < stale_before):
            if TrainingRun.objects.filter(
                pk=run.pk, status=Status.RUNNING, heartbeat_at=run.heartbeat_at
            ).update(status=Status.QUEUED, worker=""):
                run_log(
                    run_id=run.pk,
                    line=f"Worker {run.worker} was lost; queued again to "
                    "resume from the last checkpoint.",
                )
    if not send:
        return []
    sent = []
    for species_id in (
        TrainingRun.objects.filter(status=Status.QUEUED, cancel_requested=False)
        .values_list("species_id", flat=True)
        .distinct()
    ):
        run_id = training_run_dispatch_next(species_id=species_id)
        if run_id is not None:
            sent.append(run_id)
    return sent


def training_run_active_exists(*, species: Species) -> bool:
    return TrainingRun.objects.filter(
        species=species, status__in=TrainingRun.ACTIVE_STATUSES
    ).exists()
