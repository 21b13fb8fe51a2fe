"""Model versions and the embedding vectors they produce."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from pgvector.django import VectorField

from catalogue.models import Annotation, Species


class ModelVersion(models.Model):
    """An embedding network the app can run; version 0 is the ImageNet zero-shot model."""

    name = models.CharField(max_length=100, unique=True)
    backbone = models.CharField(max_length=100)
    weights = models.CharField(
        max_length=500, help_text='"imagenet" or a path to a model.pt from training.'
    )
    embedding_dim = models.PositiveIntegerField()
    image_size = models.PositiveIntegerField(default=224)
    metrics = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["pk"]

    def __str__(self) -> str:
        return self.name


class Embedding(models.Model):
    """The vector of one annotation under one model version.

    The column has no fixed dimension so that versions of different sizes can coexist; the
    per-species HNSW indexes cast to the version's dimension.
    """

    annotation = models.ForeignKey(Annotation, on_delete=models.CASCADE, related_name="embeddings")
    model_version = models.ForeignKey(
        ModelVersion, on_delete=models.CASCADE, related_name="embeddings"
    )
    # Denormalised from the annotation so a partial index can filter on it.
    species = models.ForeignKey(Species, on_delete=models.CASCADE, related_name="+")
    vector = VectorField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["annotation", "model_version"], name="one_embedding_per_annotation_version"
            )
        ]


class SpeciesModel(models.Model):
    """Which model version ranks a species' animals, and how its scores are calibrated.

    A species without a row uses version 0 (the zero-shot model) with default calibration.
    """

    class RankingMethod(models.TextChoices):
        EMBEDDING = "embedding", "Embedding similarity"
        LOCAL = "local", "Local keypoint matching"
        FUSED = "fused", "Embedding and keypoints fused"

    species = models.OneToOneField(
        Species, on_delete=models.CASCADE, primary_key=True, related_name="model_setting"
    )
    model_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="+")
    previous_version = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    pending_version = models.ForeignKey(
        ModelVersion,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="Promoted, still re-embedding; ranking switches to it once all vectors exist.",
    )
    ranking_method = models.CharField(
        max_length=10, choices=RankingMethod.choices, default=RankingMethod.FUSED
    )
    calibration = models.JSONField(
        default=dict, blank=True, help_text="Fusion calibration; empty means the default."
    )
    new_individual_threshold = models.FloatField(
        default=0.5, help_text="Below this fused score the animal is probably a new individual."
    )
    switched_at = models.DateTimeField(auto_now_add=True)


class EmbeddingJob(models.Model):
    """The database's record that an annotation must be embedded under a model version.

    A worker claims a queued job with a conditional UPDATE to ``running`` (recording itself in
    ``worker``), so two workers never embed the same job. A job whose worker died is found
    by the sweep (the process is gone, or the job outlived the task's time limit) and queued
    again, at most ``JOBS_MAX_ATTEMPTS`` times; a photo that cannot be embedded fails alone,
    with the reason in ``error``.
    """

    class State(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    annotation = models.ForeignKey(Annotation, on_delete=models.CASCADE, related_name="+")
    model_version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="+")
    state = models.CharField(max_length=10, choices=State.choices, default=State.QUEUED)
    error = models.TextField(blank=True)
    queue = models.CharField(max_length=20, default="bulk", help_text="Celery queue it goes to.")
    sent_at = models.DateTimeField(
        null=True, blank=True, help_text="Last handed to the broker; empty: never (broker down)."
    )
    started_at = models.DateTimeField(null=True, blank=True)
    worker = models.CharField(max_length=200, blank=True, help_text="host:pid of the claimer.")
    attempts = models.PositiveSmallIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["annotation", "model_version"], name="one_job_per_annotation_version"
            )
        ]
        indexes = [models.Index(fields=["state", "created_at"])]


class LocalFeatures(models.Model):
    """Cached keypoints and descriptors of an annotation's crop (see ``reid.local_features``)."""

    annotation = models.OneToOneField(
        Annotation, on_delete=models.CASCADE, primary_key=True, related_name="local_features"
    )
    method = models.CharField(max_length=10, default="sift")
    data = models.BinaryField()
    keypoint_count = models.PositiveIntegerField()


class Identification(models.Model):
    """The search for who an annotated animal is: its ranked candidates and their state."""

    class State(models.TextChoices):
        QUEUED = "queued", "Waiting for the model"
        RUNNING = "running", "Searching"
        READY = "ready", "Candidates ready"
        FAILED = "failed", "Failed"
        DECIDED = "decided", "Decided"

    PENDING_STATES = (State.QUEUED, State.RUNNING)

    annotation = models.OneToOneField(
        Annotation, on_delete=models.CASCADE, related_name="identification"
    )
    model_version = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    state = models.CharField(max_length=10, choices=State.choices, default=State.QUEUED)
    probably_new = models.BooleanField(default=False)
    error = models.TextField(blank=True, help_text="Why it failed, for the person who reported it.")
    queue = models.CharField(max_length=20, default="identify", help_text="Celery queue.")
    sent_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    worker = models.CharField(max_length=200, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [models.Index(fields=["state", "created_at"])]


class MatchCandidate(models.Model):
    """One individual the animal could be, with the evidence for it."""

    identification = models.ForeignKey(
        Identification, on_delete=models.CASCADE, related_name="candidates"
    )
    rank = models.PositiveSmallIntegerField()
    individual = models.ForeignKey(
        "catalogue.Individual", on_delete=models.CASCADE, related_name="+"
    )
    gallery_annotation = models.ForeignKey(
        Annotation,
        on_delete=models.CASCADE,
        related_name="+",
        help_text="The candidate's photo that matches best.",
    )
    embedding_score = models.FloatField(help_text="Cosine similarity, -1..1.")
    inlier_count = models.PositiveIntegerField(null=True, blank=True)
    fused_score = models.FloatField(help_text="Calibrated probability of the same individual.")
    match_pairs = models.JSONField(
        default=list, blank=True, help_text="Inlier correspondences [x1, y1, x2, y2] for drawing."
    )

    class Meta:
        ordering = ["identification", "rank"]
        constraints = [
            models.UniqueConstraint(
                fields=["identification", "rank"], name="one_candidate_per_rank"
            )
        ]


class IdentityDecision(models.Model):
    """An expert's decision about who an animal is, with before and after, revertible."""

    class Verdict(models.TextChoices):
        SAME = "same", "Same individual"
        NEW = "new", "New individual"
        REJECT = "reject", "Not this one"

    annotation = models.ForeignKey(Annotation, on_delete=models.CASCADE, related_name="decisions")
    verdict = models.CharField(max_length=10, choices=Verdict.choices)
    candidate = models.ForeignKey(
        "catalogue.Individual",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The individual accepted, created or rejected.",
    )
    individual_before = models.ForeignKey(
        "catalogue.Individual", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    individual_after = models.ForeignKey(
        "catalogue.Individual", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    decided_at = models.DateTimeField(auto_now_add=True)
    reverted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    reverted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-decided_at", "-pk"]


class Vote(models.Model):
    """A volunteer's opinion on whether an animal is a given candidate."""

    annotation = models.ForeignKey(Annotation, on_delete=models.CASCADE, related_name="votes")
    individual = models.ForeignKey(
        "catalogue.Individual", on_delete=models.CASCADE, related_name="+"
    )
    voter = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    same = models.BooleanField()
    voted_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["annotation", "individual", "voter"],
                name="one_vote_per_voter_and_candidate",
            )
        ]


class IndividualMerge(models.Model):
    """Two records found to be one animal: ``merged`` folded into ``kept``, revertible."""

    kept = models.ForeignKey("catalogue.Individual", on_delete=models.CASCADE, related_name="+")
    merged = models.ForeignKey("catalogue.Individual", on_delete=models.CASCADE, related_name="+")
    moved_annotation_ids = models.JSONField(default=list)
    merged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    merged_at = models.DateTimeField(auto_now_add=True)
    reverted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    reverted_at = models.DateTimeField(null=True, blank=True)
