from __future__ import annotations

from rest_framework import serializers

from catalogue.models import Annotation, Encounter, Image, Species


class SpeciesSerializer(serializers.ModelSerializer):
    class Meta:
        model = Species
        fields = ["id", "name", "slug", "sensitive"]


class AnnotationSerializer(serializers.ModelSerializer):
    class Meta:
        model = Annotation
        fields = ["id", "bbox_x", "bbox_y", "bbox_w", "bbox_h", "theta", "viewpoint", "individual"]


class ImageSerializer(serializers.ModelSerializer):
    annotations = AnnotationSerializer(many=True, read_only=True)

    class Meta:
        model = Image
        fields = ["id", "file", "thumbnail", "sha256", "width", "height", "original_filename",
                  "exif_datetime", "annotations"]


class SightingSerializer(serializers.ModelSerializer):
    images = ImageSerializer(many=True, read_only=True)
    species = serializers.SlugRelatedField(slug_field="slug", read_only=True)

    class Meta:
        model = Encounter
        fields = ["id", "species", "observed_at", "latitude", "longitude", "status", "notes",
                  "created_at", "images"]


class SightingUploadSerializer(serializers.Serializer):
    species = serializers.SlugRelatedField(slug_field="slug", queryset=Species.objects.all())
    photos = serializers.ListField(child=serializers.FileField(), allow_empty=False)
    observed_at = serializers.DateTimeField(required=False, allow_null=True)
    latitude = serializers.FloatField(required=False, allow_null=True, min_value=-90, max_value=90)
    longitude = serializers.FloatField(required=False, allow_null=True, min_value=-180,
                                       max_value=180)
    notes = serializers.CharField(required=False, allow_blank=True, default="")
    bboxes = serializers.JSONField(required=False, default=list,
                                   help_text="[[x, y, w, h] or null, ...] in photo order")

    def validate_bboxes(self, value: object) -> list:
        if not isinstance(value, list) or not all(
            box is None or (isinstance(box, list) and len(box) == 4
                            and all(isinstance(v, (int, float)) for v in box))
            for box in value
        ):
            raise serializers.ValidationError("Each box must be [x, y, width, height] or null.")
        return value
