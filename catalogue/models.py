"""The catalogue: species, known individuals, sightings (encounters), photos and annotations."""

from __future__ import annotations

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models


class Species(models.Model):
    name = models.CharField(max_length=100, unique=True)
    slug = models.SlugField(max_length=100, unique=True)
    sensitive = models.BooleanField(
        default=False, help_text="Coarsen this species' coordinates on public pages and exports."
    )
    viewpoints = models.JSONField(default=list, blank=True)
    same_viewpoint_only = models.BooleanField(
        default=False,
        help_text="Compare a photo only with photos of the same viewpoint (a left flank never "
        "against a right flank); photos without a viewpoint are compared with all.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "species"

    def __str__(self) -> str:
        return self.name


class Individual(models.Model):
    class Sex(models.TextChoices):
        UNKNOWN = "unknown", "Unknown"
        FEMALE = "female", "Female"
        MALE = "male", "Male"

    species = models.ForeignKey(Species, on_delete=models.PROTECT, related_name="individuals")
    code = models.CharField(max_length=64, help_text="Unique within the species.")
    name = models.CharField(max_length=100, blank=True)
    sex = models.CharField(max_length=10, choices=Sex.choices, default=Sex.UNKNOWN)
    notes = models.TextField(blank=True)
    is_public = models.BooleanField(default=True)
    merged_into = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="merged_from",
        help_text="Set when an expert merged this individual into another.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["species", "code"]
        constraints = [
            models.UniqueConstraint(
                fields=["species", "code"], name="individual_code_unique_per_species"
            )
        ]

    def __str__(self) -> str:
        return f"{self.code} ({self.name})" if self.name else self.code


class Encounter(models.Model):
    """One sighting: photos of animals of one species seen at one time and place."""

    class Status(models.TextChoices):
        PROCESSING = "processing", "Processing"
        AWAITING_REVIEW = "awaiting_review", "Candidates ready"
        IDENTIFIED = "identified", "Identified"
        FAILED = "failed", "Processing failed"

    species = models.ForeignKey(Species, on_delete=models.PROTECT, related_name="encounters")
    observed_at = models.DateTimeField(null=True, blank=True)
    latitude = models.FloatField(
        null=True, blank=True, validators=[MinValueValidator(-90), MaxValueValidator(90)]
    )
    longitude = models.FloatField(
        null=True, blank=True, validators=[MinValueValidator(-180), MaxValueValidator(180)]
    )
    submitted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="encounters",
    )
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PROCESSING)
    notes = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-observed_at", "-created_at"]

    def __str__(self) -> str:
        return f"Sighting #{self.pk} of {self.species}"


class Image(models.Model):
    """A stored photo, upright (EXIF orientation applied), unique by the sha256 of the upload."""

    encounter = models.ForeignKey(Encounter, on_delete=models.CASCADE, related_name="images")
    file = models.ImageField(upload_to="images/%Y/%m/")
    sha256 = models.CharField(max_length=64, unique=True)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    original_filename = models.CharField(max_length=255, blank=True)
    exif_datetime = models.DateTimeField(null=True, blank=True)
    exif_latitude = models.FloatField(null=True, blank=True)
    exif_longitude = models.FloatField(null=True, blank=True)
    thumbnail = models.ImageField(upload_to="thumbnails/%Y/%m/", blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["encounter", "pk"]
        # Every /media/ request looks its file up by name before the permission check.
        indexes = [
            models.Index(fields=["file"], name="image_file_name"),
            models.Index(fields=["thumbnail"], name="image_thumbnail_name"),
        ]

    def __str__(self) -> str:
        return self.original_filename or f"Image #{self.pk}"


class Annotation(models.Model):
    """One animal in one photo: its box, and which individual it is once someone knows."""

    class IdentitySource(models.TextChoices):
        UNKNOWN = "", "Not identified"
        IMPORT = "import", "Imported labelled data"
        EXPERT = "expert", "Confirmed by an expert"

    image = models.ForeignKey(Image, on_delete=models.CASCADE, related_name="annotations")
    species = models.ForeignKey(Species, on_delete=models.PROTECT, related_name="annotations")
    bbox_x = models.FloatField(default=0, validators=[MinValueValidator(0)])
    bbox_y = models.FloatField(default=0, validators=[MinValueValidator(0)])
    bbox_w = models.FloatField(validators=[MinValueValidator(1)])
    bbox_h = models.FloatField(validators=[MinValueValidator(1)])
    theta = models.FloatField(default=0, help_text="Rotation of the box, radians.")
    viewpoint = models.CharField(max_length=30, blank=True)
    animal_index = models.PositiveSmallIntegerField(
        default=0,
        help_text="Which animal of the sighting this is: the sighting's annotations of one "
        "species with the same number show one animal and are identified together.",
    )
    individual = models.ForeignKey(
        Individual, null=True, blank=True, on_delete=models.PROTECT, related_name="annotations"
    )
    identity_source = models.CharField(
        max_length=10, choices=IdentitySource.choices, default=IdentitySource.UNKNOWN, blank=True
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["pk"]
        permissions = [
            ("vote_annotation", "Can vote on who an animal is"),
            ("decide_annotation", "Can confirm who an animal is"),
        ]

    def __str__(self) -> str:
        return f"Annotation #{self.pk} on {self.image}"

    @property
    def bbox(self) -> tuple[float, float, float, float]:
        return (self.bbox_x, self.bbox_y, self.bbox_w, self.bbox_h)
