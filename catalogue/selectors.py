"""Reads of the catalogue."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import (
    Case,
    Count,
    Exists,
    F,
    Max,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    When,
)
from django.db.models.functions import Coalesce

from catalogue.coordinates import Coordinates, coordinates_for, user_sees_exact_coordinates
from catalogue.models import Annotation, Encounter, Image, Individual, Species


def species_list() -> QuerySet[Species]:
    return Species.objects.annotate(
        # Merged-away individuals live on in their survivors; they are not counted twice.
        individual_count=Count(
            "individuals", filter=Q(individuals__merged_into__isnull=True), distinct=True
        ),
        encounter_count=Count("encounters", distinct=True),
    )


def sighting_list_for_user(*, user: AbstractBaseUser) -> QuerySet[Encounter]:
    return (
        Encounter.objects.filter(submitted_by=user)
        .select_related("species")
        .prefetch_related("images__annotations")
        .order_by("-created_at")
    )


def sighting_visible_to(*, user: AbstractBaseUser, encounter_id: int) -> Encounter | None:
    """A sighting as its submitter, an expert or an admin may see it."""
    # The page says, under each photo, why its search failed: its identification, prefetched.
    queryset = Encounter.objects.select_related("species", "submitted_by").prefetch_related(
        "images__annotations__individual", "images__annotations__identification"
    )
    if not user.has_perm("catalogue.decide_annotation"):
        queryset = queryset.filter(submitted_by=user)
    return queryset.filter(pk=encounter_id).first()


# --- Public site: the one rule for what anyone may see ---------------------------------------
#
# A photo (annotation) is public when its identity is confirmed (an expert's decision or an
# imported label) and its individual is public and not merged away; an individual is public
# when it has such a photo. Every public page, API, export, notification link and photo file
# asks these selectors; tests/public/test_public_rule.py checks that they agree.

CONFIRMED_SOURCES = (Annotation.IdentitySource.EXPERT, Annotation.IdentitySource.IMPORT)


def confirmed_identity_queryset() -> QuerySet[Annotation]:
    """Annotations of unmerged individuals whose identity an expert confirmed or an import
    gave, public or not: what experts' exports and "seen again" notices count."""
    return Annotation.objects.filter(
        identity_source__in=CONFIRMED_SOURCES, individual__merged_into__isnull=True
    )


def public_annotation_queryset() -> QuerySet[Annotation]:
    """The photos anyone may see: confirmed identities of public, unmerged individuals."""
    return confirmed_identity_queryset().filter(individual__is_public=True)


def public_individual_queryset() -> QuerySet[Individual]:
    """The individuals anyone may see: those with at least one public photo."""
    return Individual.objects.filter(
        Exists(public_annotation_queryset().filter(individual=OuterRef("pk")))
    )


def public_species_list() -> QuerySet[Species]:
    """Species with their counts of public individuals and of confirmed sightings."""
    # Subqueries, not joins: joining individuals and annotations at once multiplies the rows.
    individuals = (
        public_individual_queryset()
        .filter(species=OuterRef("pk"))
        .order_by()
        .values("species")
        .annotate(n=Count("pk"))
        .values("n")
    )
    sightings = (
        public_annotation_queryset()
        .filter(species=OuterRef("pk"))
        .order_by()
        .values("species")
        .annotate(n=Count("image__encounter", distinct=True))
        .values("n")
    )
    return Species.objects.annotate(
        individual_count=Coalesce(Subquery(individuals), 0),
        sighting_count=Coalesce(Subquery(sightings), 0),
    ).order_by("name")


def public_species_individuals(*, species: Species) -> QuerySet[Individual]:
    """The species' public individuals with sighting counts and last seen, most recent first."""
    # Subqueries over the public photos, so the counts follow the same rule as the list.
    photos = public_annotation_queryset().filter(individual=OuterRef("pk")).order_by()
    per_individual = photos.values("individual")
    return (
        public_individual_queryset()
        .filter(species=species)
        .annotate(
            sighting_count=Subquery(
                per_individual.annotate(n=Count("image__encounter", distinct=True)).values("n")
            ),
            last_seen=Subquery(
                per_individual.annotate(m=Max("image__encounter__observed_at")).values("m")
            ),
        )
        .order_by(F("last_seen").desc(nulls_last=True), "code")
    )


def public_individual_get(*, individual_id: int) -> Individual | None:
    return public_individual_queryset().select_related("species").filter(pk=individual_id).first()


def individual_merge_survivor(*, individual_id: int) -> Individual | None:
    """The public individual that a merged-away one now lives on in (merges may chain)."""
    seen: set[int] = set()
    current = Individual.objects.filter(pk=individual_id).first()
    while current is not None and current.merged_into_id and current.pk not in seen:
        seen.add(current.pk)
        current = Individual.objects.filter(pk=current.merged_into_id).first()
    if current is None or not seen:
        return None
    return public_individual_get(individual_id=current.pk)


@dataclass(frozen=True)
class PublicSighting:
    """One sighting as a visitor may see it: coordinates already coarsened where needed."""

    encounter: Encounter
    coordinates: Coordinates
    annotations: list[Annotation]  # the confirmed ones, with their images

    @property
    def individuals(self) -> list[Individual]:
        seen: dict[int, Individual] = {}
        for annotation in self.annotations:
            seen.setdefault(annotation.individual_id, annotation.individual)
        return list(seen.values())


@dataclass(frozen=True)
class LifeHistory:
    individual: Individual
    sightings: list[PublicSighting]  # oldest first

    @property
    def sighting_count(self) -> int:
        return len(self.sightings)

    @property
    def first_seen(self) -> datetime | None:
        dates = [s.encounter.observed_at for s in self.sightings if s.encounter.observed_at]
        return min(dates, default=None)

    @property
    def last_seen(self) -> datetime | None:
        dates = [s.encounter.observed_at for s in self.sightings if s.encounter.observed_at]
        return max(dates, default=None)

    @property
    def photos(self) -> list[Annotation]:
        return [annotation for sighting in self.sightings for annotation in sighting.annotations]


def _public_sightings(
    annotations: QuerySet[Annotation], *, user: AbstractBaseUser | None, newest_first: bool
) -> list[PublicSighting]:
    exact = user_sees_exact_coordinates(user)
    grouped: dict[int, list[Annotation]] = {}
    encounters: dict[int, Encounter] = {}
    annotations = annotations.select_related("image__encounter__species", "individual__species")
    for annotation in annotations:
        encounter = annotation.image.encounter
        encounters[encounter.pk] = encounter
        grouped.setdefault(encounter.pk, []).append(annotation)
    sightings = [
        PublicSighting(
            encounter=encounter,
            annotations=grouped[pk],
            coordinates=coordinates_for(
                species=encounter.species,
                latitude=encounter.latitude,
                longitude=encounter.longitude,
                exact=exact,
            ),
        )
        for pk, encounter in encounters.items()
    ]
    far_past = datetime.min.replace(tzinfo=UTC)
    sightings.sort(
        key=lambda s: (s.encounter.observed_at or far_past, s.encounter.pk), reverse=newest_first
    )
    # Undated sightings (old imports) go last either way: a timeline starts with what is known.
    return [s for s in sightings if s.encounter.observed_at] + [
        s for s in sightings if not s.encounter.observed_at
    ]


def individual_life_history(
    *, individual: Individual, user: AbstractBaseUser | None = None
) -> LifeHistory:
    """An individual's confirmed sightings, oldest first, with the photos that show it."""
    annotations = public_annotation_queryset().filter(individual=individual).order_by("pk")
    return LifeHistory(
        individual=individual,
        sightings=_public_sightings(annotations, user=user, newest_first=False),
    )


def public_recent_sightings(
    *, user: AbstractBaseUser | None = None, limit: int = 30, species: Species | None = None
) -> list[PublicSighting]:
    """The most recently seen confirmed sightings (by date seen, then by date reported)."""
    encounter_ids = (
        public_annotation_queryset()
        .order_by(
            F("image__encounter__observed_at").desc(nulls_last=True),
            "-image__encounter__created_at",
        )
        .values_list("image__encounter_id", flat=True)
    )
    if species is not None:
        encounter_ids = encounter_ids.filter(species=species)
    chosen: list[int] = []
    for encounter_id in encounter_ids[: limit * 20]:
        if encounter_id not in chosen:
            chosen.append(encounter_id)
        if len(chosen) == limit:
            break
    annotations = public_annotation_queryset().filter(image__encounter_id__in=chosen).order_by("pk")
    return _public_sightings(annotations, user=user, newest_first=True)


def public_individual_search(*, query: str, limit: int = 50) -> list[Individual]:
    """Public individuals whose code or name contains ``query``; exact code matches first."""
    query = query.strip()
    if not query:
        return []
    found = (
        public_individual_queryset()
        .select_related("species")
        .filter(Q(code__icontains=query) | Q(name__icontains=query))
        .annotate(
            exact=Case(When(Q(code__iexact=query) | Q(name__iexact=query), then=0), default=1)
        )
        .order_by("exact", "species__name", "code")
    )
    return list(found[:limit])


# --- Volunteers: their sightings and what became of them ----------------------------------


@dataclass(frozen=True)
class Contributions:
    sightings: int
    photos: int
    identified: int


def sighting_poll_seconds(*, encounters: list[Encounter]) -> int | None:
    """How often a page showing these sightings should ask for news; None once none is pending.

    Processing takes seconds, so it is asked for often; waiting for an expert can take days,
    so less often.
    """
    statuses = {encounter.status for encounter in encounters}
    if Encounter.Status.PROCESSING in statuses:
        return 3
    if Encounter.Status.AWAITING_REVIEW in statuses:
        return 20
    return None


def volunteer_contributions(*, user: AbstractBaseUser) -> Contributions:
    encounters = Encounter.objects.filter(submitted_by=user)
    return Contributions(
        sightings=encounters.count(),
        photos=Image.objects.filter(encounter__submitted_by=user).count(),
        identified=encounters.filter(images__annotations__individual__isnull=False)
        .distinct()
        .count(),
    )
