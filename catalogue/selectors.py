"""Reads of the catalogue."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Count, QuerySet

from catalogue.models import Encounter, Species


def species_list() -> QuerySet[Species]:
    return Species.objects.annotate(
        individual_count=Count("individuals", distinct=True),
        encounter_count=Count("encounters", distinct=True),
    )


def sighting_list_for_user(*, user: AbstractBaseUser) -> QuerySet[Encounter]:
    return (Encounter.objects.filter(submitted_by=user).select_related("species")
            .prefetch_related("images").order_by("-created_at"))


def sighting_visible_to(*, user: AbstractBaseUser, encounter_id: int) -> Encounter | None:
    """A sighting as its submitter, an expert or an admin may see it."""
    queryset = Encounter.objects.select_related("species", "submitted_by").prefetch_related(
        "images__annotations"
    )
    if not user.has_perm("catalogue.decide_annotation"):
        queryset = queryset.filter(submitted_by=user)
    return queryset.filter(pk=encounter_id).first()
