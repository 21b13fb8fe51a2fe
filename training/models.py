"""Training runs: fine-tuning the embedding network for a species from the app."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models

from catalogue.models import Species
from identification.models import ModelVersion


class TrainingRun(models.Model):
    """One fine-tuning run: its configuration, live progress, log and evaluation report.

    The database is the source of truth: the worker writes progress here, reads
    ``cancel_requested`` from here, and a run whose worker died (``heartbeat_at`` stale, or its
    process gone) is sent again and resumes from ``out_dir/checkpoint.pt``. The run's folder
    is named by ``uuid``, not by its id, so a database recreated over kept media never hands
    a new run an old run's checkpoint.
    """

    class Mode(models.TextChoices):
        WITH_ORIGINAL_DATA = "with-original-data", "New species plus the original data"
        NEW_DATA_ONLY = "new-data-only", "New species only"

    class EngineMode(models.TextChoices):
        AUTO = "", "Chosen by hardware"
        CACHED = "cached", "Cached features (CPU)"
        FULL = "full", "Full fine-tuning (GPU)"

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    ACTIVE_STATUSES = (Status.QUEUED, Status.RUNNING)

    uuid = models.UUIDField(
        default=uuid.uuid4,
        unique=True,
        editable=False,
        help_text="Names the run's folder (checkpoints, exported data).",
    )
    species = models.ForeignKey(Species, on_delete=models.CASCADE, related_name="training_runs")
    base_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="+")
    candidate_version = models.ForeignKey(
        ModelVersion,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The version made from this run's model when it was promoted.",
    )
    mode = models.CharField(max_length=20, choices=Mode.choices, default=Mode.WITH_ORIGINAL_DATA)
    engine_mode = models.CharField(
        max_length=10, choices=EngineMode.choices, blank=True, default=EngineMode.AUTO
    )
    hyperparameters = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    progress = models.FloatField(default=0, help_text="Percent, 0..100.")
    eta_seconds = models.FloatField(null=True, blank=True)
    epoch = models.PositiveIntegerField(default=0)
    current_loss = models.FloatField(null=True, blank=True)
    validation_top1 = models.FloatField(null=True, blank=True)
    history = models.JSONField(
        default=list, blank=True, help_text="[{step, epoch, loss, validation_top1}] for the chart."
    )
    log = models.TextField(blank=True)
    report = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    cancel_requested = models.BooleanField(default=False)
    resumed_count = models.PositiveIntegerField(default=0)
    worker = models.CharField(max_length=200, blank=True, help_text="host:pid of the worker.")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [models.Index(fields=["species", "status"])]

    def __str__(self) -> str:
        return f"Training run #{self.pk} ({self.species}, {self.mode})"

    @property
    def is_active(self) -> bool:
        return self.status in self.ACTIVE_STATUSES


class DatasetImport(models.Model):
    """One import of labelled photos, followed from upload to the last embedded photo.

    The database is the source of truth: the upload only stores the file and this row, and a
    ``bulk`` worker plans it (the dry run) and, once an admin confirms, stores its rows in one
    transaction. A worker killed meanwhile leaves the row claimed by a dead process; the job
    sweep hands it to another worker (the rollback left nothing stored) or, after
    ``JOBS_MAX_ATTEMPTS`` starts, fails it with the reason.
    """

    class State(models.TextChoices):
        QUEUED = "queued", "Queued"
        PLANNING = "planning", "Checking the file"
        AWAITING_CONFIRMATION = "awaiting", "Awaiting confirmation"
        STORING = "storing", "Storing"
        EMBEDDING = "embedding", "Embedding"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"
        DISCARDED = "discarded", "Discarded"

    # A worker holds the row (``worker`` set) in these states; the sweep frees a dead one's.
    WORKER_STATES = (State.QUEUED, State.PLANNING, State.STORING)
    ACTIVE_STATES = (*WORKER_STATES, State.AWAITING_CONFIRMATION, State.EMBEDDING)

    species = models.ForeignKey(
        Species, null=True, blank=True, on_delete=models.CASCADE, related_name="imports"
    )
    species_name = models.CharField(
        max_length=120, help_text="The species to create with the import, if it does not exist."
    )
    species_sensitive = models.BooleanField(default=False)
    source = models.CharField(
        max_length=1000, help_text="The uploaded file under PRIVATE_ROOT, or an admin's path."
    )
    folder = models.CharField(
        max_length=1000, help_text="Working folder under PRIVATE_ROOT, removed at the end."
    )
    follow_links = models.BooleanField(default=False)
    options = models.JSONField(default=dict, blank=True)
    state = models.CharField(max_length=10, choices=State.choices, default=State.QUEUED)
    report = models.JSONField(default=dict, blank=True, help_text="The dry run's report.")
    result = models.JSONField(default=dict, blank=True, help_text="What the import stored.")
    rows_total = models.PositiveIntegerField(default=0)
    rows_stored = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    attempts = models.PositiveIntegerField(default=0)
    worker = models.CharField(max_length=200, blank=True, help_text="host:pid of the worker.")
    sent_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    started_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [models.Index(fields=["state"]), models.Index(fields=["species", "created_at"])]

    def __str__(self) -> str:
        return f"Import #{self.pk} into {self.species_name} ({self.state})"

    @property
    def is_active(self) -> bool:
        return self.state in self.ACTIVE_STATES
