from __future__ import annotations

from rest_framework import serializers

from catalogue.coordinates import encounter_coordinates
from catalogue.models import Annotation, Encounter, Image, Species
from reid.schema import SchemaError, parse_bbox_list


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
        fields = [
            "id",
            "file",
            "thumbnail",
            "sha256",
            "width",
            "height",
            "original_filename",
            "exif_datetime",
            "annotations",
        ]


class SightingSerializer(serializers.ModelSerializer):
    """A sighting; a sensitive species' place is coarsened unless the requester is an expert.

    Pass ``context={"request": request}``; without a request the place is coarsened.
    """

    images = ImageSerializer(many=True, read_only=True)
    species = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    latitude = serializers.SerializerMethodField()
    longitude = serializers.SerializerMethodField()
    coordinates_coarsened = serializers.SerializerMethodField()

    class Meta:
        model = Encounter
        fields = [
            "id",
            "species",
            "observed_at",
            "latitude",
            "longitude",
            "coordinates_coarsened",
            "status",
            "notes",
            "created_at",
            "images",
        ]

    def _coordinates(self, encounter: Encounter):  # noqa: ANN202
        request = self.context.get("request")
        return encounter_coordinates(encounter=encounter, user=getattr(request, "user", None))

    def get_latitude(self, encounter: Encounter) -> float | None:
        return self._coordinates(encounter).latitude

    def get_longitude(self, encounter: Encounter) -> float | None:
        return self._coordinates(encounter).longitude

    def get_coordinates_coarsened(self, encounter: Encounter) -> bool:
        return self._coordinates(encounter).coarsened


class PublicPhotoSerializer(serializers.Serializer):
    """A confirmed photo of a public individual (no EXIF places: they are exact)."""

    annotation = serializers.IntegerField(source="pk")
    individual = serializers.IntegerField(source="individual_id")
    image = serializers.ImageField(source="image.file")
    thumbnail = serializers.ImageField(source="image.thumbnail")


class PublicSightingSerializer(serializers.Serializer):
    """A :class:`catalogue.selectors.PublicSighting`; its coordinates are already coarsened."""

    id = serializers.IntegerField(source="encounter.pk")
    species = serializers.CharField(source="encounter.species.slug")
    observed_at = serializers.DateTimeField(source="encounter.observed_at")
    latitude = serializers.FloatField(source="coordinates.latitude", allow_null=True)
    longitude = serializers.FloatField(source="coordinates.longitude", allow_null=True)
    coordinates_coarsened = serializers.BooleanField(source="coordinates.coarsened")
    individuals = serializers.SerializerMethodField()
    photos = PublicPhotoSerializer(source="annotations", many=True)

    def get_individuals(self, sighting) -> list[dict]:  # noqa: ANN001
        return [{"id": i.pk, "code": i.code, "name": i.name} for i in sighting.individuals]


class PublicIndividualSerializer(serializers.Serializer):
    """A :class:`catalogue.selectors.LifeHistory`."""

    id = serializers.IntegerField(source="individual.pk")
    code = serializers.CharField(source="individual.code")
    name = serializers.CharField(source="individual.name")
    species = serializers.CharField(source="individual.species.slug")
    first_seen = serializers.DateTimeField()
    last_seen = serializers.DateTimeField()
    sighting_count = serializers.IntegerField()
    sightings = PublicSightingSerializer(many=True)


class SightingUploadSerializer(serializers.Serializer):
    species = serializers.SlugRelatedField(slug_field="slug", queryset=Species.objects.all())
    photos = serializers.ListField(child=serializers.FileField(), allow_empty=False)
    observed_at = serializers.DateTimeField(required=False, allow_null=True)
    latitude = serializers.FloatField(required=False, allow_null=True, min_value=-90, max_value=90)
    longitude = serializers.FloatField(
        required=False, allow_null=True, min_value=-180, max_value=180
    )
    notes = serializers.CharField(required=False, allow_blank=True, default="")
    viewpoint = serializers.CharField(
        required=False, allow_blank=True, default="", max_length=30, help_text="Of every photo"
    )
    bboxes = serializers.JSONField(
        required=False, default=list, help_text="[[x, y, w, h] or null, ...] in photo order"
    )

    def validate_bboxes(self, value: object) -> list:
        try:
            return parse_bbox_list(value)
        except SchemaError as error:
            raise serializers.ValidationError(f"{str(error).capitalize()}.") from None
