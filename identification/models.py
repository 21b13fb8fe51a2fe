"""Model versions and the embedding vectors they produce."""

from __future__ import annotations

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
