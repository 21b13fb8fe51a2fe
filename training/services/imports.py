"""Imports as jobs: a ``DatasetImport`` row from the upload to the last embedded photo.

queued → planning → awaiting confirmation → storing → embedding → done; or failed, with its
reason, or discarded. The upload (browser, API) only keeps the file and creates the row, so it
answers at once whatever the archive's size. A ``bulk`` worker plans it (the dry run: every
photo opened, nothing written); after an admin confirms, a worker plans it again (the
catalogue may have changed) and stores every row in one transaction, or none. ``import_dataset``
creates the same job and runs its steps in its own process.

Each worker step starts with a conditional claim (one row updated, or another worker has it).
A worker killed mid-step leaves the row claimed by a dead process: :func:`dataset_imports_recover`
(the job sweep) frees it for the next worker, and fails it after ``JOBS_MAX_ATTEMPTS`` starts.
The same sweep marks an import done once its species' photos all have a vector.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.files.uploadedfile import UploadedFile
from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from catalogue.models import Species
from catalogue.services.imports import ImportPlan, dataset_file_plan, import_folder_remove
from identification.services.pipeline import dataset_ingest, species_register
from notifications.services import notify_import_finished
from training.models import DatasetImport
from training.selectors import dataset_import_embedding_progress
from training.services.uploads import dataset_upload_plan, dataset_upload_store, import_folder_new
from wildweb.errors import ServiceError
from wildweb.jobs import task_send, worker_gone, worker_name

logger = logging.getLogger(__name__)
State = DatasetImport.State
OPTIONS = ("file_format", "max_individuals", "images_per_individual", "image_root")


def dataset_import_upload(
    *,
    species: Species,
    uploaded_file: UploadedFile,
    photos_zip: UploadedFile | None = None,
    started_by: AbstractBaseUser | None,
    options: dict[str, Any] | None = None,
) -> DatasetImport:
    """Keep an uploaded file and queue its dry run on a ``bulk`` worker; returns at once.

    Raises:
        ServiceError: The photos beside a CSV or JSON file are not a ZIP; nothing is kept.
    """
    folder = dataset_upload_store(uploaded_file=uploaded_file, photos_zip=photos_zip)
    job = DatasetImport.objects.create(
        species=species,
        species_name=species.name,
        source=str(folder),
        folder=str(folder),
        options=_options(options),
        started_by=started_by,
    )
    dataset_import_send(job=job)
    return job


def dataset_import_local(
    *,
    path: Path,
    species_name: str,
    sensitive: bool = False,
    options: dict[str, Any] | None = None,
    started_by: AbstractBaseUser | None = None,
) -> DatasetImport:
    """The job of an admin's own file or folder (``import_dataset``); nothing is sent.

    A missing species is created with the stored rows, so a refused file leaves none behind.
    Its symbolic links (``images/`` on another disk) are followed: the admin is trusted.
    """
    return DatasetImport.objects.create(
        species=Species.objects.filter(name__iexact=species_name).first(),
        species_name=species_name,
        species_sensitive=sensitive,
        source=str(path),
        folder=str(import_folder_new()),
        follow_links=True,
        options=_options(options),
        started_by=started_by,
    )


def _options(options: dict[str, Any] | None) -> dict[str, Any]:
    return {k: v for k, v in (options or {}).items() if k in OPTIONS and v not in (None, "")}


def dataset_import_execute(
    *, import_id: int, progress: Callable[[int], object] | None = None
) -> DatasetImport | None:
    """The step a job's state calls for (what a ``bulk`` worker does with its message).

    A queued job is planned; a confirmed one is stored; an embedding one is checked, and
    checked again ``IMPORT_FOLLOW_SECONDS`` later until every photo has its vector. Any other
    state means another worker did the step already, and the message is a harmless duplicate.

    Args:
        progress: Called with 1 after each stored row (``import_dataset``'s tqdm bar).
    """
    job = DatasetImport.objects.filter(pk=import_id).first()
    if job is None:
        return None
    if job.state == State.QUEUED and _claim(job, State.QUEUED, State.PLANNING):
        _step_run(job, _plan_step)
    elif job.state == State.STORING and _claim(job, State.STORING, State.STORING):
        _step_run(job, lambda j: _store_step(j, progress))
    elif job.state == State.EMBEDDING and not dataset_import_finish_check(job=job):
        _task_send(job.pk, countdown=settings.IMPORT_FOLLOW_SECONDS)
    job.refresh_from_db()
    return job


def _claim(job: DatasetImport, state: str, new_state: str) -> bool:
    """Take the job in ``state`` for this process: exactly one worker's update touches it."""
    now = timezone.now()
    return (
        DatasetImport.objects.filter(pk=job.pk, state=state, worker="").update(
            state=new_state,
            worker=worker_name(),
            heartbeat_at=now,
            attempts=F("attempts") + 1,
            error="",
        )
        == 1
    )


def _step_run(job: DatasetImport, step: Callable[[DatasetImport], None]) -> None:
    """Run a step; whatever goes wrong ends the job as failed with the reason."""
    job.refresh_from_db()
    try:
        step(job)
    except ServiceError as error:
        _fail(job, error.message)
    except BaseException as error:  # Ctrl-C on import_dataset too: never left "storing"
        logger.exception("import %s failed", job.pk)
        _fail(job, f"{type(error).__name__}: {error}")
        if not isinstance(error, Exception):
            raise


def _plan(job: DatasetImport, species: Species) -> ImportPlan:
    folder, options = Path(job.folder), dict(job.options)
    if not folder.is_dir():
        raise ServiceError("The uploaded file is gone (removed from the server); send it again.")
    image_root = options.pop("image_root", None)
    if Path(job.source) == folder:
        return dataset_upload_plan(folder=folder, species=species, **options)
    return dataset_file_plan(
        path=Path(job.source),
        species=species,
        image_root=Path(image_root) if image_root else None,
        extract_dir=folder / "unpacked",
        follow_links=job.follow_links,
        **options,
    )


def _plan_step(job: DatasetImport) -> None:
    plan = _plan(job, job.species or Species(name=job.species_name))
    report = plan.report()
    if plan.errors:
        raise _refusal(job, report)
    DatasetImport.objects.filter(pk=job.pk, worker=job.worker).update(
        state=State.AWAITING_CONFIRMATION, report=report, rows_total=len(plan.rows), worker=""
    )


def _refusal(job: DatasetImport, report: dict) -> ServiceError:
    """A plan with invalid entries: the job keeps the report that lists them, and fails."""
    DatasetImport.objects.filter(pk=job.pk).update(report=report)
    return ServiceError(f"{len(report['errors'])} invalid entries; nothing was imported.")


def dataset_import_send(*, job: DatasetImport) -> None:
    """Hand a job to the ``bulk`` workers (after the current transaction commits)."""
    transaction.on_commit(lambda: _task_send(job.pk))


def dataset_import_confirm(*, job: DatasetImport, send: bool = True) -> DatasetImport:
    """The admin's go-ahead after the dry run: a ``bulk`` worker stores the rows.

    Raises:
        ServiceError: The job is not awaiting confirmation (already confirmed, or failed).
    """
    if not DatasetImport.objects.filter(pk=job.pk, state=State.AWAITING_CONFIRMATION).update(
        state=State.STORING, worker="", attempts=0
    ):
        raise ServiceError("This import is not waiting for a confirmation any more.")
    if send:
        dataset_import_send(job=job)
    job.refresh_from_db()
    return job


def dataset_import_discard(*, job: DatasetImport) -> DatasetImport:
    """Drop an import before it is stored, and its uploaded file.

    Raises:
        ServiceError: It is being stored or has been stored already.
    """
    if not DatasetImport.objects.filter(
        pk=job.pk, state__in=(State.QUEUED, State.AWAITING_CONFIRMATION, State.FAILED)
    ).update(state=State.DISCARDED, finished_at=timezone.now(), worker=""):
        raise ServiceError("This import is being stored or was stored; it cannot be discarded.")
    import_folder_remove(path=Path(job.folder))
    job.refresh_from_db()
    return job


def _store_step(job: DatasetImport, progress: Callable[[int], object] | None) -> None:
    plan = _plan(job, job.species or Species(name=job.species_name))
    if plan.errors:
        raise _refusal(job, plan.report())
    with _StoredRowsWriter(job.pk, progress) as counter, transaction.atomic():
        if job.species is None:
            # Created with the rows: a failing import leaves no species behind.
            plan.species = species_register(name=job.species_name, sensitive=job.species_sensitive)
        result = dataset_ingest(plan=plan, imported_by=job.started_by, progress=counter)
        DatasetImport.objects.filter(pk=job.pk, worker=job.worker).update(
            species=plan.species,
            state=State.EMBEDDING,
            result=result.report(),
            rows_total=len(plan.rows),
            rows_stored=len(plan.rows),
            worker="",
        )
    import_folder_remove(path=Path(job.folder))
    job.refresh_from_db()
    if not dataset_import_finish_check(job=job):
        _task_send(job.pk, countdown=settings.IMPORT_FOLLOW_SECONDS)


class _StoredRowsWriter:
    """Counts the stored rows and writes the count, with a heartbeat, once a second.

    The import's own transaction shows nothing to others until it commits, so the count goes
    through a second connection, from a thread of its own.
    """

    def __init__(self, import_id: int, progress: Callable[[int], object] | None) -> None:
        self.import_id, self.progress, self.stored = import_id, progress, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._write_every_second, daemon=True)

    def __call__(self, n: int) -> None:
        self.stored += n
        if self.progress is not None:
            self.progress(n)

    def __enter__(self) -> _StoredRowsWriter:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()

    def _write_every_second(self) -> None:
        try:
            while not self._stop.wait(1.0):
                DatasetImport.objects.filter(pk=self.import_id, state=State.STORING).update(
                    rows_stored=self.stored, heartbeat_at=timezone.now()
                )
        finally:
            connection.close()  # this thread's own connection


def _fail(job: DatasetImport, reason: str) -> None:
    if DatasetImport.objects.filter(pk=job.pk, state__in=DatasetImport.WORKER_STATES).update(
        state=State.FAILED, error=reason[:2000], worker="", finished_at=timezone.now()
    ):
        import_folder_remove(path=Path(job.folder))
        _admin_tell(job)


def dataset_import_finish_check(*, job: DatasetImport) -> bool:
    """Mark an embedding import done once every photo of its species has a vector (or failed)."""
    progress = dataset_import_embedding_progress(job=job)
    if progress is None or progress["done"] + progress["failed"] < progress["total"]:
        return False
    result = {**job.result, "embedding_failed": progress["failed"]}
    if DatasetImport.objects.filter(pk=job.pk, state=State.EMBEDDING).update(
        state=State.DONE, result=result, finished_at=timezone.now()
    ):
        _admin_tell(job)
    return True


def _admin_tell(job: DatasetImport) -> None:
    job.refresh_from_db()
    if job.started_by_id is not None:
        notify_import_finished(
            user_id=job.started_by_id,
            import_id=job.pk,
            species_name=job.species_name,
            result=job.result,
            error=job.error,
        )


def _task_send(import_id: int, countdown: float | None = None) -> None:
    from training.tasks import dataset_import_task

    # Broker down: the sweep sends it later.
    if task_send(dataset_import_task, import_id, countdown=countdown):
        DatasetImport.objects.filter(pk=import_id).update(sent_at=timezone.now())


def dataset_imports_recover() -> int:
    """The sweep's part: free jobs of dead workers, send lost ones, finish embedded ones.

    A job counts as lost when its worker process is gone (same host) or its heartbeat is
    older than ``IMPORT_STALE_SECONDS``; after ``JOBS_MAX_ATTEMPTS`` starts it fails.

    Returns:
        How many jobs were sent.
    """
    now = timezone.now()
    stale_before = now - timedelta(seconds=settings.IMPORT_STALE_SECONDS)
    for job in DatasetImport.objects.filter(state__in=DatasetImport.WORKER_STATES).exclude(
        worker=""
    ):
        if worker_gone(job.worker) or (job.heartbeat_at and job.heartbeat_at < stale_before):
            _worker_lost(job)
    resend_before = now - timedelta(seconds=settings.JOBS_RESEND_SECONDS)
    lost = DatasetImport.objects.filter(
        Q(sent_at__isnull=True) | Q(sent_at__lt=resend_before),
        state__in=(State.QUEUED, State.STORING),
        worker="",
    ).values_list("pk", flat=True)
    for import_id in lost:
        _task_send(import_id)
    for job in DatasetImport.objects.filter(state=State.EMBEDDING).select_related("species"):
        dataset_import_finish_check(job=job)
    return len(lost)


def _worker_lost(job: DatasetImport) -> None:
    if job.attempts >= settings.JOBS_MAX_ATTEMPTS:
        _fail(
            job,
            f"The worker was lost {job.attempts} times during {job.get_state_display().lower()}; "
            "nothing was stored. Send the file again.",
        )
        return
    # Planning starts over from the queue; storing stays confirmed. Nothing was stored: the
    # dead worker's transaction rolled back with it.
    state = State.QUEUED if job.state == State.PLANNING else job.state
    DatasetImport.objects.filter(pk=job.pk, worker=job.worker).update(
        state=state, worker="", sent_at=None
    )
    logger.warning("import %s: worker %s was lost; sent again", job.pk, job.worker)
