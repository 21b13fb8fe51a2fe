"""Model versions and the embedding vectors they produce."""

from __future__ import annotations

from django.conf import settings
from django.contrib.postgres.indexes import GinIndex
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
    embedding_dim = models.PositiveIntegerField(help_text="Dimension of the stored vectors.")
    image_size = models.PositiveIntegerField(default=224)
    compaction = models.CharField(
        max_length=20,
        blank=True,
        help_text='"" stores the network\'s vector; "pca-whiten" stores it PCA-whitened to '
        "embedding_dim with the map in compaction_file (see reid.compaction).",
    )
    compaction_file = models.CharField(max_length=500, blank=True)
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

    A species without a row uses version 0 (the zero-shot model) with the hand-set fusion.
    ``calibration`` and ``new_individual_threshold`` were fitted by ``calibrate`` under
    ``calibration_version``; under any other version (after a switch or a rollback) they are
    not used: the hand-set calibration and threshold apply until the species is calibrated
    again. ``method_choice["open_set"]`` holds the threshold's BAKS, BAUS and their geometric
    mean measured on individuals it was not chosen on.
    """

    class RankingMethod(models.TextChoices):
        EMBEDDING = "embedding", "Embedding similarity"
        LOCAL = "local", "Local keypoint matching"
        FUSED = "fused", "Embedding and keypoints fused (hand-set)"
        CALIBRATED = "calibrated", "Embedding and keypoints fused (calibrated)"

    class LocalMethod(models.TextChoices):
        SIFT = "sift", "rootSIFT"
        XFEAT = "xfeat", "XFeat + LighterGlue"

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
    local_method = models.CharField(
        max_length=10,
        choices=LocalMethod.choices,
        default=LocalMethod.SIFT,
        help_text="Keypoints that re-score the shortlist.",
    )
    calibration = models.JSONField(
        default=dict, blank=True, help_text="Fitted calibration; empty means the hand-set one."
    )
    calibration_version = models.ForeignKey(
        ModelVersion,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The model version the calibration and threshold were fitted under.",
    )
    new_individual_threshold = models.FloatField(
        default=0.5,
        help_text="Below this probability of the first candidate the animal is probably new.",
    )
    switched_at = models.DateTimeField(auto_now_add=True)
    method_choice = models.JSONField(
        default=dict,
        blank=True,
        help_text="Why the ranking method was chosen: its honest top-1 and standard error, "
        "every method's top-1, the reason (see reid.method_selection).",
    )
    method_chosen_at = models.DateTimeField(null=True, blank=True)

    DEFAULT_NEW_INDIVIDUAL_THRESHOLD = 0.5

    @property
    def is_calibrated(self) -> bool:
        """A calibration was fitted under the version and local method that rank now."""
        return (
            bool(self.calibration)
            and self.calibration_version_id == self.model_version_id
            and self.calibration.get("local_method", self.LocalMethod.SIFT) == self.local_method
        )

    @property
    def method_choice_current(self) -> bool:
        """The stored choice was measured under the version and local method that rank now."""
        return (
            bool(self.method_choice)
            and self.calibration_version_id == self.model_version_id
            and self.method_choice.get("local_method") == self.local_method
        )

    @property
    def threshold_fitted(self) -> bool:
        """``new_individual_threshold`` was chosen under the version that ranks now."""
        return self.calibration_version_id == self.model_version_id

    @property
    def probably_new_threshold(self) -> float:
        """The fitted threshold under the version that ranks now, else the hand-set one."""
        if self.threshold_fitted:
            return self.new_individual_threshold
        return self.DEFAULT_NEW_INDIVIDUAL_THRESHOLD


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


class CalibrationJob(models.Model):
    """The database's record that a species' ranking method and calibration must be chosen
    (again), by ``species_calibrate`` on the ``bulk`` queue.

    Asked for when a species' labelled photos have been embedded, after its model switched,
    and after every ``AUTO_CALIBRATE_DECISIONS`` expert decisions. One row per species: a
    worker claims it with a conditional UPDATE to ``running``, so one species is never
    calibrated twice at once; asked again while running (``requested_at`` after
    ``started_at``), it is queued again when the run ends. The sweep sends a queued job that
    was never sent or whose message was lost, and frees one whose worker died, at most
    ``JOBS_MAX_ATTEMPTS`` times; ``error`` says why one failed.
    """

    class State(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    species = models.OneToOneField(
        Species, on_delete=models.CASCADE, primary_key=True, related_name="calibration_job"
    )
    state = models.CharField(max_length=10, choices=State.choices, default=State.QUEUED)
    requested_at = models.DateTimeField(help_text="When a choice was last asked for.")
    requested_because = models.CharField(max_length=200, blank=True)
    error = models.TextField(blank=True)
    sent_at = models.DateTimeField(
        null=True, blank=True, help_text="Last handed to the broker; empty: never (broker down)."
    )
    started_at = models.DateTimeField(null=True, blank=True)
    worker = models.CharField(max_length=200, blank=True, help_text="host:pid of the claimer.")
    attempts = models.PositiveSmallIntegerField(default=0)

    class Meta:
        indexes = [models.Index(fields=["state", "requested_at"])]

    @property
    def is_pending(self) -> bool:
        return self.state in (self.State.QUEUED, self.State.RUNNING)


class LocalFeatures(models.Model):
    """Cached keypoints and descriptors of an annotation's crop, per extraction method
    (see ``reid.local_features``)."""

    annotation = models.ForeignKey(
        Annotation, on_delete=models.CASCADE, related_name="local_features"
    )
    method = models.CharField(max_length=10, default="sift")
    data = models.BinaryField()
    keypoint_count = models.PositiveIntegerField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["annotation", "method"], name="one_local_features_per_annotation_method"
            )
        ]


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
    score = models.FloatField(
        help_text="What the species' ranking method orders by (reid.ranking.method_score); "
        "the review ranks a sighting's photos by it."
    )
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
    """An expert's decision about who an animal is, with before and after, revertible.

    One decision covers every photo of the animal in its sighting (``annotation_ids``);
    ``annotation`` is the photo group's first one. What the ranking offered when the expert
    decided (``confirmed_rank``, ``probably_new``, ``model_version``) is kept with it, so every
    decision is also a measurement of the ranking.
    """

    class Verdict(models.TextChoices):
        SAME = "same", "Same individual"
        NEW = "new", "New individual"
        REJECT = "reject", "Not this one"

    annotation = models.ForeignKey(Annotation, on_delete=models.CASCADE, related_name="decisions")
    annotation_ids = models.JSONField(
        default=list, help_text="Every photo of the animal the decision applied to."
    )
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
    model_version = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    confirmed_rank = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        help_text="Rank of the confirmed individual in the sighting's ranking; empty when it "
        "was not among the candidates.",
    )
    probably_new = models.BooleanField(
        null=True, blank=True, help_text='Whether "probably a new individual" was flagged.'
    )

    class Meta:
        ordering = ["-decided_at", "-pk"]
        # The review page finds the decisions covering any of an animal's photos (``@>``).
        indexes = [GinIndex(fields=["annotation_ids"], name="decision_photos_gin")]


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
    # A merged individual is hidden; a revert gives it back the visibility it had.
    merged_was_public = models.BooleanField(default=True)
    merged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    merged_at = models.DateTimeField(auto_now_add=True)
    reverted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    reverted_at = models.DateTimeField(null=True, blank=True)
