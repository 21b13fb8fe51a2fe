from __future__ import annotations

from rest_framework import serializers

from catalogue.models import Annotation, Individual
from identification.models import IdentityDecision, MatchCandidate


class IndividualSerializer(serializers.ModelSerializer):
    species = serializers.SlugRelatedField(slug_field="slug", read_only=True)

    class Meta:
        model = Individual
        fields = ["id", "species", "code", "name", "sex"]


class CandidateSerializer(serializers.ModelSerializer):
    individual = IndividualSerializer(read_only=True)

    class Meta:
        model = MatchCandidate
        fields = [
            "rank",
            "individual",
            "gallery_annotation",
            "score",
            "fused_score",
            "embedding_score",
            "inlier_count",
        ]


class IdentificationSerializer(serializers.Serializer):
    annotation = serializers.IntegerField(source="annotation_id")
    state = serializers.CharField()
    probably_new = serializers.BooleanField()
    model_version = serializers.CharField(source="model_version.name", default=None)
    error = serializers.CharField()
    candidates = CandidateSerializer(many=True)


class DecisionInputSerializer(serializers.Serializer):
    verdict = serializers.ChoiceField(choices=IdentityDecision.Verdict.choices)
    individual = serializers.PrimaryKeyRelatedField(
        queryset=Individual.objects.all(), required=False, allow_null=True
    )
    expected_individual = serializers.IntegerField(required=False, allow_null=True)
    code = serializers.CharField(required=False, allow_blank=True, default="")
    name = serializers.CharField(required=False, allow_blank=True, default="")


class DecisionSerializer(serializers.ModelSerializer):
    class Meta:
        model = IdentityDecision
        fields = [
            "id",
            "annotation",
            "verdict",
            "candidate",
            "individual_before",
            "individual_after",
            "decided_by",
            "decided_at",
        ]


class VoteInputSerializer(serializers.Serializer):
    individual = serializers.PrimaryKeyRelatedField(queryset=Individual.objects.all())
    same = serializers.BooleanField()


class IndividualPhotoSerializer(serializers.ModelSerializer):
    image = serializers.FileField(source="image.file", read_only=True)
    thumbnail = serializers.FileField(source="image.thumbnail", read_only=True)

    class Meta:
        model = Annotation
        fields = [
            "id",
            "image",
            "thumbnail",
            "bbox_x",
            "bbox_y",
            "bbox_w",
            "bbox_h",
            "theta",
            "viewpoint",
            "identity_source",
        ]
