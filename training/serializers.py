from __future__ import annotations

from rest_framework import serializers

from catalogue.services.imports import FORMATS
from training.models import TrainingRun


class SpeciesCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    sensitive = serializers.BooleanField(default=False)
    viewpoints = serializers.ListField(child=serializers.CharField(max_length=30), default=list)


class DatasetImportSerializer(serializers.Serializer):
    file = serializers.FileField(required=False, help_text="The dataset (first, dry-run call).")
    photos = serializers.FileField(
        required=False, help_text="ZIP of the photos a CSV or JSON file names."
    )
    token = serializers.CharField(required=False, help_text="From the dry run, to confirm.")
    confirm = serializers.BooleanField(default=False)
    file_format = serializers.ChoiceField(choices=FORMATS, required=False, allow_null=True)
    max_individuals = serializers.IntegerField(required=False, min_value=1, allow_null=True)
    images_per_individual = serializers.IntegerField(required=False, min_value=1, allow_null=True)

    def validate(self, attrs: dict) -> dict:
        if not attrs.get("file") and not attrs.get("token"):
            raise serializers.ValidationError("Send a file (dry run) or a token (confirm).")
        return attrs


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
