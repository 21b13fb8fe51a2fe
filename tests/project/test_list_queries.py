"""Every page and API that lists rows asks the database a fixed number of times, however many
rows it lists: the same bound holds at 1 row and at 50, so no row costs a query of its own
(an N+1). The table below names every list route; the guard tests fail when the URLconf
gains a route that neither the table nor the list of non-list routes accounts for."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Callable

import pytest
from django.contrib.auth.models import User
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from rest_framework.mixins import ListModelMixin

from catalogue.models import Annotation, Encounter, Species
from identification.models import Identification, IdentityDecision, IndividualMerge, Vote
from identification.services.models import zero_shot_version
from notifications.models import Notification
from tests.factories import (
    AnnotationFactory,
    EncounterFactory,
    ImageFactory,
    IndividualFactory,
    SpeciesFactory,
    UserFactory,
    confirmed_sighting,
    ranked_photo,
)
from training.models import DatasetImport, TrainingRun

pytestmark = pytest.mark.django_db

FIRST_DAY = datetime(2024, 1, 1, tzinfo=UTC)

# A builder makes ``rows`` rows that the page lists, as seen by ``user``, and returns the
# page's URL and a text that the newest row puts on the page (so the rows are really listed).
Builder = Callable[[User, int], tuple[str, str]]


def _own_sightings(user: User, rows: int) -> list[Encounter]:
    """The user's sightings, each with a photo whose animal is identified and another photo
    whose search failed."""
    species = SpeciesFactory(name="Lynx")
    encounters = []
    for i in range(rows):
        encounter = EncounterFactory(
            species=species, submitted_by=user, status=Encounter.Status.IDENTIFIED
        )
        individual = IndividualFactory(species=species, code=f"ROW-{i:03d}")
        AnnotationFactory(image=ImageFactory(encounter=encounter), individual=individual)
        failed = AnnotationFactory(image=ImageFactory(encounter=encounter))
        Identification.objects.create(
            annotation=failed, state=Identification.State.FAILED, error="Unreadable photo"
        )
        encounters.append(encounter)
    return encounters


def my_sightings(user: User, rows: int) -> tuple[str, str]:
    _own_sightings(user, rows)
    return reverse("my-sightings"), f"ROW-{rows - 1:03d}"


def api_sightings(user: User, rows: int) -> tuple[str, str]:
    newest = _own_sightings(user, rows)[-1]
    return reverse("api-sightings"), newest.images.first().sha256


def sighting_detail(user: User, rows: int) -> tuple[str, str]:
    """One sighting with ``rows`` photos."""
    encounter = EncounterFactory(submitted_by=user)
    for i in range(rows):
        individual = IndividualFactory(species=encounter.species, code=f"ROW-{i:03d}")
        AnnotationFactory(image=ImageFactory(encounter=encounter), individual=individual)
    return reverse("sighting-detail", args=[encounter.pk]), f"ROW-{rows - 1:03d}"


def review_queue(user: User, rows: int) -> tuple[str, str]:
    species = SpeciesFactory(name="Lynx")
    for _ in range(rows):
        encounter = EncounterFactory(species=species, status=Encounter.Status.AWAITING_REVIEW)
        ranked_photo(encounter=encounter, ranking=[(IndividualFactory(species=species), 0.9)])
    return reverse("review-queue"), f"sighting #{encounter.pk}"


def _ranked_animal(rows: int) -> Annotation:
    """An animal waiting for review with ``rows`` candidates."""
    species = SpeciesFactory(name="Lynx")
    encounter = EncounterFactory(species=species, status=Encounter.Status.AWAITING_REVIEW)
    ranking = [
        (IndividualFactory(species=species, code=f"ROW-{i:03d}"), 0.9 - i / 100)
        for i in range(rows)
    ]
    return ranked_photo(encounter=encounter, ranking=ranking)


def review_annotation(user: User, rows: int) -> tuple[str, str]:
    photo = _ranked_animal(rows)
    return reverse("review-annotation", args=[photo.pk]), f"ROW-{rows - 1:03d}"


def api_candidates(user: User, rows: int) -> tuple[str, str]:
    photo = _ranked_animal(rows)
    return reverse("api-candidates", args=[photo.pk]), f"ROW-{rows - 1:03d}"


def review_individual_search(user: User, rows: int) -> tuple[str, str]:
    photo = _ranked_animal(1)
    for i in range(rows):
        IndividualFactory(species=photo.species, code=f"FIND-{i:03d}")
    url = reverse("review-individual-search", args=[photo.pk]) + "?q=FIND"
    return url, "FIND-000"


def candidate_photos(user: User, rows: int) -> tuple[str, str]:
    photo = _ranked_animal(1)
    candidate = photo.identification.candidates.get()
    for _ in range(rows - 1):  # the gallery photo is the first one
        confirmed_sighting(individual=candidate.individual)
    # The page shows the first photos only (the gallery photo among them).
    first_photo = candidate.gallery_annotation.image.file.url
    return reverse("candidate-photos", args=[candidate.pk]), first_photo


def dashboard(user: User, rows: int) -> tuple[str, str]:
    """Species, expert decisions, and volunteer votes that contradict them."""
    volunteer = UserFactory(role="volunteer")
    for i in range(rows):
        species = SpeciesFactory(name=f"Species {i:03d}")
        individual, other = IndividualFactory.create_batch(2, species=species)
        photo = confirmed_sighting(individual=individual)
        IdentityDecision.objects.create(
            annotation=photo,
            annotation_ids=[photo.pk],
            verdict=IdentityDecision.Verdict.SAME,
            candidate=individual,
            individual_after=individual,
            decided_by=user,
            model_version=zero_shot_version(),
            confirmed_rank=1,
        )
        Vote.objects.create(annotation=photo, individual=other, voter=volunteer, same=True)
    return reverse("dashboard"), f"Species {rows - 1:03d}"


def _species_with_sightings(rows: int) -> str:
    for i in range(rows):
        individual = IndividualFactory(species=SpeciesFactory(name=f"Species {i:03d}"))
        confirmed_sighting(individual=individual)
    return f"Species {rows - 1:03d}"


def home(user: User, rows: int) -> tuple[str, str]:
    return reverse("home"), _species_with_sightings(rows)


def species_list(user: User, rows: int) -> tuple[str, str]:
    return reverse("species-list"), _species_with_sightings(rows)


def api_species(user: User, rows: int) -> tuple[str, str]:
    return reverse("api-species"), _species_with_sightings(rows)


def exports(user: User, rows: int) -> tuple[str, str]:
    return reverse("exports"), _species_with_sightings(rows)


def training_index(user: User, rows: int) -> tuple[str, str]:
    return reverse("training-index"), _species_with_sightings(rows)


def _individuals_seen(rows: int) -> Species:
    """``rows`` public individuals of one species, each seen once, the last one most recently."""
    species = SpeciesFactory(name="Lynx")
    for i in range(rows):
        individual = IndividualFactory(species=species, code=f"ROW-{i:03d}")
        confirmed_sighting(individual=individual, observed_at=FIRST_DAY + timedelta(days=i))
    return species


def species_detail(user: User, rows: int) -> tuple[str, str]:
    species = _individuals_seen(rows)
    return reverse("species-detail", args=[species.slug]), f"ROW-{rows - 1:03d}"


def search(user: User, rows: int) -> tuple[str, str]:
    _individuals_seen(rows)
    return reverse("search") + "?q=ROW", f"ROW-{rows - 1:03d}"


def recent_sightings(user: User, rows: int) -> tuple[str, str]:
    _individuals_seen(rows)
    return reverse("recent-sightings"), f"ROW-{rows - 1:03d}"


def api_public_recent(user: User, rows: int) -> tuple[str, str]:
    _individuals_seen(rows)
    return reverse("api-public-recent"), f"ROW-{rows - 1:03d}"


def api_individuals(user: User, rows: int) -> tuple[str, str]:
    _individuals_seen(rows)
    return reverse("api-individuals"), f"ROW-{rows - 1:03d}"


def individual_merge(user: User, rows: int) -> tuple[str, str]:
    species = _individuals_seen(rows)
    for i in range(rows):
        merged = IndividualFactory(species=species, code=f"GONE-{i:03d}")
        kept = species.individuals.get(code=f"ROW-{i:03d}")
        merged.merged_into = kept
        merged.save()
        IndividualMerge.objects.create(kept=kept, merged=merged, merged_by=user)
    return reverse("individual-merge"), f"GONE-{rows - 1:03d}"


def export_encounters(user: User, rows: int) -> tuple[str, str]:
    _individuals_seen(rows)
    return reverse("export-encounters"), f"ROW-{rows - 1:03d}"


def export_public_encounters(user: User, rows: int) -> tuple[str, str]:
    _individuals_seen(rows)
    return reverse("export-public-encounters"), f"ROW-{rows - 1:03d}"


def export_capture_history(user: User, rows: int) -> tuple[str, str]:
    species = _individuals_seen(rows)
    url = reverse("export-capture-history") + f"?species={species.slug}&days=30"
    return url, f"ROW-{rows - 1:03d}"


def _individual_seen_often(rows: int) -> Annotation:
    """One public individual seen ``rows`` times; returns the newest photo."""
    individual = IndividualFactory(species=SpeciesFactory(name="Lynx"), code="ROW-1")
    for i in range(rows):
        photo = confirmed_sighting(individual=individual, observed_at=FIRST_DAY + timedelta(i))
    return photo


def individual_detail(user: User, rows: int) -> tuple[str, str]:
    photo = _individual_seen_often(rows)
    return reverse("individual-detail", args=[photo.individual_id]), photo.image.file.url


def api_public_individual(user: User, rows: int) -> tuple[str, str]:
    photo = _individual_seen_often(rows)
    return reverse("api-public-individual", args=[photo.individual_id]), photo.image.file.url


def api_individual_annotations(user: User, rows: int) -> tuple[str, str]:
    photo = _individual_seen_often(rows)
    url = reverse("api-individual-annotations", args=[photo.individual_id])
    return url, photo.image.file.url


def notifications(user: User, rows: int) -> tuple[str, str]:
    for i in range(rows):
        encounter = EncounterFactory(submitted_by=user)
        Notification.objects.create(
            user=user,
            kind=Notification.Kind.IDENTIFIED,
            message=f"Sighting ROW-{i:03d} was identified",
            link=reverse("sighting-detail", args=[encounter.pk]),
            encounter=encounter,
        )
    return reverse("notifications"), f"ROW-{rows - 1:03d}"


def _species_runs(rows: int) -> tuple[Species, TrainingRun]:
    species = SpeciesFactory(name="Lynx")
    for _ in range(rows):
        run = TrainingRun.objects.create(
            species=species, base_version=zero_shot_version(), status=TrainingRun.Status.SUCCEEDED
        )
    return species, run


def training_species(user: User, rows: int) -> tuple[str, str]:
    species, newest = _species_runs(rows)
    _species_imports(rows, species)  # the full page also lists the species' imports
    return reverse("training-species", args=[species.pk]), f'data-run="{newest.pk}"'


def training_species_model(user: User, rows: int) -> tuple[str, str]:
    species, _ = _species_runs(rows)
    return reverse("training-species-model", args=[species.pk]), "zero-shot"


def _species_imports(rows: int, species: Species | None = None) -> tuple[Species, DatasetImport]:
    species = species or SpeciesFactory()
    for n in range(rows):
        newest = DatasetImport.objects.create(
            species=species,
            species_name=species.name,
            source=f"/uploads/{n}",
            folder=f"/uploads/{n}",
            state=DatasetImport.State.DONE,
            result={"annotations_created": n, "individuals_created": 1, "duplicates_skipped": 0},
            started_by=UserFactory(role="admin"),
        )
    return species, newest


def api_training_imports(user: User, rows: int) -> tuple[str, str]:
    species, newest = _species_imports(rows)
    return reverse("api-training-import", args=[species.pk]), f'"id":{newest.pk}'


def api_training_runs(user: User, rows: int) -> tuple[str, str]:
    species, newest = _species_runs(rows)
    return reverse("api-training-runs", args=[species.pk]), f'"id":{newest.pk}'


@dataclass(frozen=True)
class ListRoute:
    name: str  # the URL name
    role: str | None  # who asks (None: a visitor)
    build: Builder
    max_queries: int
    htmx: bool = False  # the fragment an htmx poll asks for

    @property
    def id(self) -> str:
        return f"{self.name}{' (htmx)' if self.htmx else ''}"


LIST_ROUTES = [
    # Volunteers
    ListRoute("my-sightings", "volunteer", my_sightings, 16),
    ListRoute("my-sightings", "volunteer", my_sightings, 16, htmx=True),
    ListRoute("sighting-detail", "volunteer", sighting_detail, 14),
    ListRoute("sighting-detail", "volunteer", sighting_detail, 14, htmx=True),
    ListRoute("api-sightings", "volunteer", api_sightings, 7),
    ListRoute("notifications", "volunteer", notifications, 7),
    # Review
    ListRoute("review-queue", "volunteer", review_queue, 9),
    ListRoute("review-queue", "volunteer", review_queue, 8, htmx=True),
    ListRoute("review-annotation", "expert", review_annotation, 16),
    ListRoute("review-individual-search", "expert", review_individual_search, 12),
    ListRoute("candidate-photos", "expert", candidate_photos, 8),
    ListRoute("api-candidates", "volunteer", api_candidates, 11),
    ListRoute("individual-merge", "expert", individual_merge, 8),
    ListRoute("dashboard", "expert", dashboard, 12),
    # Public site
    ListRoute("home", None, home, 1),
    ListRoute("species-list", None, species_list, 1),
    ListRoute("species-detail", None, species_detail, 4),
    ListRoute("individual-detail", None, individual_detail, 2),
    ListRoute("search", None, search, 1),
    ListRoute("search", None, search, 1, htmx=True),
    ListRoute("recent-sightings", None, recent_sightings, 2),
    ListRoute("api-species", None, api_species, 1),
    ListRoute("api-individuals", None, api_individuals, 1),
    ListRoute("api-individual-annotations", None, api_individual_annotations, 2),
    ListRoute("api-public-individual", None, api_public_individual, 2),
    ListRoute("api-public-recent", None, api_public_recent, 2),
    # Exports
    ListRoute("exports", "expert", exports, 7),
    ListRoute("export-encounters", "expert", export_encounters, 8),
    ListRoute("export-public-encounters", None, export_public_encounters, 4),
    ListRoute("export-capture-history", "expert", export_capture_history, 7),
    # Training
    ListRoute("training-index", "admin", training_index, 8),
    ListRoute("training-index", "admin", training_index, 8, htmx=True),
    ListRoute("training-species", "admin", training_species, 13),
    ListRoute("training-species", "admin", training_species, 10, htmx=True),
    ListRoute("training-species-model", "admin", training_species_model, 10),
    ListRoute("api-training-import", "admin", api_training_imports, 6),
    ListRoute("api-training-runs", "admin", api_training_runs, 6),
]

# Every other route of the project's apps, and why it lists no rows.
NOT_LIST_ROUTES = {
    "admin-login": "a form",
    "login": "a form",
    "signup": "a form",
    "api-schema": "the OpenAPI schema",
    "api-docs": "the API docs page",
    "media-file": "one photo's file",
    "photo-exif": "reads an uploaded photo, no rows",
    "sighting-create": "a form",
    "review-act": "POST only",
    "photo-split": "POST only",
    "photo-join": "POST only",
    "photo-edit": "POST only",
    "decision-revert": "POST only",
    "merge-revert": "POST only",
    "candidate-correspondences": "one picture",
    "api-decision": "POST only",
    "api-vote": "POST only",
    "notifications-read": "POST only",
    "notification-preferences": "a form",
    "training-species-new": "a form",
    "training-import": "POST only: keeps an upload and creates its import job",
    "training-import-confirm": "POST only",
    "training-import-detail": "one import's page",
    "training-run-start": "POST only",
    "training-rollback": "POST only",
    "training-run": "one run",
    "training-run-progress": "one run",
    "training-run-report": "one run's report",
    "training-run-cancel": "POST only",
    "training-run-promote": "POST only",
    "api-training-species": "POST only",
    "api-training-import-detail": "one import",
    "api-training-run": "one run",
    "api-training-run-action": "POST only",
}


@pytest.mark.parametrize("rows", [1, 50])
@pytest.mark.parametrize("route", LIST_ROUTES, ids=lambda route: route.id)
def test_list_queries_do_not_grow_with_rows(
    client, django_assert_max_num_queries, route: ListRoute, rows: int
) -> None:
    user = UserFactory(role=route.role)
    if route.role:
        client.force_login(user)
    url, newest_row = route.build(user, rows)
    headers = {"HX-Request": "true"} if route.htmx else {}
    with django_assert_max_num_queries(route.max_queries):
        response = client.get(url, headers=headers)
    assert response.status_code == 200
    assert newest_row in b"".join(response).decode()


def _named_routes(patterns: list) -> dict[str, object]:
    """URL name -> view callback, for every named route but the Django admin's and
    django.contrib.auth's own pages."""
    routes = {}
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            module = getattr(pattern.urlconf_module, "__name__", "")
            if pattern.namespace != "admin" and module != "django.contrib.auth.urls":
                routes.update(_named_routes(pattern.url_patterns))
        elif isinstance(pattern, URLPattern) and pattern.name:
            routes[pattern.name] = pattern.callback
    return routes


def test_every_route_is_in_the_list_table_or_said_to_list_nothing() -> None:
    listed = {route.name for route in LIST_ROUTES}
    routes = set(_named_routes(get_resolver().url_patterns))
    assert not listed & set(NOT_LIST_ROUTES), "a route is both a list and not one"
    assert routes - listed - set(NOT_LIST_ROUTES) == set(), "new routes: add them to a table"
    assert (listed | set(NOT_LIST_ROUTES)) - routes == set(), "tables name routes that are gone"


def test_every_drf_list_view_is_in_the_list_table() -> None:
    listed = {route.name for route in LIST_ROUTES}
    list_views = {
        name
        for name, callback in _named_routes(get_resolver().url_patterns).items()
        if issubclass(getattr(callback, "cls", object), ListModelMixin)
    }
    assert list_views  # the check sees the DRF views at all
    assert list_views <= listed
