from __future__ import annotations

from rest_framework import serializers

from catalogue.services.imports import FORMATS
from training.models import DatasetImport, TrainingRun


class SpeciesCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    sensitive = serializers.BooleanField(default=False)
    viewpoints = serializers.ListField(child=serializers.CharField(max_length=30), default=list)


class DatasetImportUploadSerializer(serializers.Serializer):
    file = serializers.FileField(help_text="The dataset: CSV, COCO or MegaDetector JSON, or ZIP.")
    photos = serializers.FileField(
        required=False, help_text="ZIP of the photos a CSV or JSON file names."
    )
    file_format = serializers.ChoiceField(choices=FORMATS, required=False, allow_null=True)
    max_individuals = serializers.IntegerField(required=False, min_value=1, allow_null=True)
    images_per_individual = serializers.IntegerField(required=False, min_value=1, allow_null=True)


class DatasetImportActionSerializer(serializers.Serializer):
    action = serializers.ChoiceField(choices=["confirm", "discard"])


class DatasetImportJobSerializer(serializers.ModelSerializer):
    started_by = serializers.StringRelatedField()
    embedding = serializers.SerializerMethodField()

    class Meta:
        model = DatasetImport
        fields = [
            "id",
            "species",
            "species_name",
            "state",
            "options",
            "report",
            "result",
            "rows_total",
            "rows_stored",
            "embedding",
            "error",
            "attempts",
            "started_by",
            "created_at",
            "finished_at",
        ]

    def get_embedding(self, job: DatasetImport) -> dict | None:
        from training.selectors import dataset_import_embedding_progress

        return dataset_import_embedding_progress(job=job)


class TrainingRunStartSerializer(serializers.Serializer):
    mode = serializers.ChoiceField(
        choices=TrainingRun.Mode.values, default=TrainingRun.Mode.WITH_ORIGINAL_DATA
    )
    engine_mode = serializers.ChoiceField(choices=["", "cached", "full"], default="")
    hyperparameters = serializers.DictField(required=False, default=dict)


class TrainingRunSerializer(serializers.ModelSerializer):
    species = serializers.StringRelatedField()
    base_version = serializers.StringRelatedField()
    candidate_version = serializers.StringRelatedField()

    class Meta:
        model = TrainingRun
        fields = [
            "id",
            "species",
            "base_version",
            "candidate_version",
            "mode",
            "engine_mode",
            "hyperparameters",
            "status",
            "progress",
            "eta_seconds",
            "epoch",
            "current_loss",
            "validation_top1",
            "report",
            "error",
            "resumed_count",
            "created_at",
            "started_at",
            "finished_at",
        ]
