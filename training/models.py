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
