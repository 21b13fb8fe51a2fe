"""One rule for what anyone may see, and every public place follows it.

A photo is public when its identity is confirmed and its individual is public and not merged
away; an individual is public when it has such a photo (``catalogue.selectors``). The API, the
pages, the exports, the photo files, the notifications' links and a volunteer's "(see X)"
links must all show exactly those.
"""

from __future__ import annotations

import ast
import csv
import datetime as dt
import io
from dataclasses import dataclass

import pytest
from django.conf import settings
from django.test import Client
from django.urls import reverse

from catalogue.exports import capture_history
from catalogue.models import Annotation, Individual, Species
from catalogue.selectors import public_species_list
from conftest import REPO_ROOT
from identification.selectors.sightings import sighting_statuses
from notifications.models import Notification
from notifications.services import notify_identity_confirmed
from tests.factories import (
    AnnotationFactory,
    EncounterFactory,
    ImageFactory,
    IndividualFactory,
    SpeciesFactory,
    UserFactory,
    confirmed_sighting,
)

pytestmark = pytest.mark.django_db

UNKNOWN = Annotation.IdentitySource.UNKNOWN
MAY = dt.datetime(2025, 5, 1, 12, tzinfo=dt.UTC)


@dataclass
class Catalogue:
    species: Species
    individuals: list[Individual]
    photos: list[Annotation]  # every annotation of them, public or not
    public_individual: Individual
    public_photo: Annotation


@pytest.fixture
def catalogue() -> Catalogue:
    """A private individual, one with only unconfirmed photos, one merged away, and one public
    individual that also has an unconfirmed photo; each reported by its own volunteer."""
    species = SpeciesFactory(name="Lynx", slug="lynx")
    public = IndividualFactory(species=species, code="R-PUBLIC")
    private = IndividualFactory(species=species, code="R-PRIVATE", is_public=False)
    unconfirmed = IndividualFactory(species=species, code="R-UNCONFIRMED")
    merged = IndividualFactory(species=species, code="R-MERGED", merged_into=public)

    def reported(individual: Individual, *, confirmed: bool) -> Annotation:
        reporter = UserFactory(role="volunteer")
        if confirmed:
            return confirmed_sighting(individual=individual, submitted_by=reporter, observed_at=MAY)
        encounter = EncounterFactory(species=species, submitted_by=reporter, observed_at=MAY)
        return AnnotationFactory(
            image=ImageFactory(encounter=encounter), individual=individual, identity_source=UNKNOWN
        )

    public_photo = reported(public, confirmed=True)
    photos = [
        public_photo,
        reported(public, confirmed=False),
        reported(private, confirmed=True),
        reported(unconfirmed, confirmed=False),
        reported(merged, confirmed=True),
    ]
    return Catalogue(
        species=species,
        individuals=[public, private, unconfirmed, merged],
        photos=photos,
        public_individual=public,
        public_photo=public_photo,
    )


def _api_individuals(client: Client) -> set[int]:
    return {row["id"] for row in client.get("/api/individuals/?species=lynx").json()}


def _api_photos(client: Client, individual: Individual) -> set[int]:
    response = client.get(f"/api/individuals/{individual.pk}/annotations/")
    if response.status_code == 404:
        return set()
    return {row["id"] for row in response.json()}


def _api_life_history(client: Client, individual: Individual) -> set[int] | None:
    response = client.get(reverse("api-public-individual", args=[individual.pk]))
    if response.status_code == 404:
        return None
    return {p["annotation"] for s in response.json()["sightings"] for p in s["photos"]}


def _page_photos(client: Client, individual: Individual) -> set[int] | None:
    response = client.get(reverse("individual-detail", args=[individual.pk]))
    if response.status_code != 200:  # 404, or a merged-away one's redirect to its survivor
        return None
    return {annotation.pk for annotation in response.context["history"].photos}


def _photo_served(client: Client, annotation: Annotation) -> bool:
    url = f"/{settings.MEDIA_URL.strip('/')}/{annotation.image.file.name}"
    return client.get(url).status_code == 200


def _public_export_codes(client: Client) -> set[str]:
    response = client.get(reverse("export-public-encounters"))
    rows = csv.DictReader(io.StringIO(response.content.decode()))
    return {code for row in rows for code in row["individuals"].split()}


def _seen_again_links_to_public_page(catalogue: Catalogue) -> set[int]:
    """Told that an individual was seen again: who gets a link to its public page."""
    expert = UserFactory(role="expert")
    for individual in catalogue.individuals:
        notify_identity_confirmed(
            encounter=EncounterFactory(species=catalogue.species),
            individual=individual,
            decided_by_id=expert.pk,
            is_new=False,
        )
    return {
        n.individual_id
        for n in Notification.objects.filter(kind=Notification.Kind.SEEN_AGAIN)
        if n.link == reverse("individual-detail", args=[n.individual_id])
    }


def test_every_public_place_shows_exactly_the_public_individuals_and_photos(
    catalogue: Catalogue,
) -> None:
    anonymous = Client()
    public = {catalogue.public_individual.pk}
    photo = {catalogue.public_photo.pk}
    by_code = {i.code: i.pk for i in catalogue.individuals}

    assert _api_individuals(anonymous) == public
    assert set().union(*(_api_photos(anonymous, i) for i in catalogue.individuals)) == photo
    histories = {i.pk: _api_life_history(anonymous, i) for i in catalogue.individuals}
    assert {pk for pk, h in histories.items() if h is not None} == public
    assert set().union(*(h for h in histories.values() if h)) == photo
    pages = {i.pk: _page_photos(anonymous, i) for i in catalogue.individuals}
    assert {pk for pk, p in pages.items() if p is not None} == public
    assert set().union(*(p for p in pages.values() if p)) == photo

    species_page = anonymous.get(reverse("species-detail", args=["lynx"])).context
    assert {i.pk for i in species_page["individuals"]} == public
    assert [i.sighting_count for i in species_page["individuals"]] == [1]
    assert {a.pk for s in species_page["recent"] for a in s.annotations} == photo
    search = anonymous.get(reverse("search"), {"q": "R-"}).context["results"]
    assert {i.pk for i in search} == public
    assert public_species_list().get(pk=catalogue.species.pk).individual_count == 1
    recent = anonymous.get(reverse("api-public-recent")).json()
    assert {p["annotation"] for s in recent for p in s["photos"]} == photo

    assert {a.pk for a in catalogue.photos if _photo_served(anonymous, a)} == photo

    assert {by_code[code] for code in _public_export_codes(anonymous)} == public
    history = capture_history(species=catalogue.species, days=30, public_only=True)
    assert {individual.pk for individual, _ in history.rows} == public

    assert _seen_again_links_to_public_page(catalogue) == public
    encounters = [a.image.encounter for a in catalogue.photos]
    rows = sighting_statuses(encounters=encounters)
    assert {i.pk for row in rows for i in row.public_individuals} == public


# Filters that would restate the rule. Writes (``update(is_public=False)`` in a merge) are not
# filters, and the rule's own module is the one place allowed to spell it out.
_FILTERS = {"filter", "exclude", "get", "get_object_or_404", "Q"}
_RULE_HOME = REPO_ROOT / "catalogue" / "selectors.py"


def _restated_rule(path: str, tree: ast.AST) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id == "CONFIRMED_SOURCES":
            found.append(f"{path}:{node.lineno} CONFIRMED_SOURCES")
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            for keyword in node.keywords if name in _FILTERS else []:
                arg = keyword.arg or ""
                if arg.endswith("is_public") or "identity_source__in" in arg:
                    found.append(f"{path}:{node.lineno} {name}({arg}=...)")
    return found


def test_the_public_rule_is_written_only_in_the_catalogue_selectors() -> None:
    offenders = []
    for app in ("catalogue", "identification", "training", "notifications", "wildweb"):
        for path in sorted((REPO_ROOT / app).rglob("*.py")):
            if path == _RULE_HOME or "migrations" in path.parts:
                continue
            tree = ast.parse(path.read_text(), filename=str(path))
            offenders += _restated_rule(str(path.relative_to(REPO_ROOT)), tree)
    for template in sorted((REPO_ROOT / "wildweb" / "templates").rglob("*.html")):
        if "is_public" in template.read_text():
            offenders.append(str(template.relative_to(REPO_ROOT)))
    assert offenders == []


def test_the_rule_check_recognises_a_restated_rule() -> None:
    restated = ast.parse(
        "Individual.objects.filter(is_public=True, merged_into__isnull=True)\n"
        "Annotation.objects.exclude(individual__is_public=False)\n"
        "qs.filter(identity_source__in=CONFIRMED_SOURCES)\n"
        "Individual.objects.filter(pk=1).update(is_public=False)\n"  # a write: allowed
    )
    assert len(_restated_rule("x.py", restated)) == 4  # two filters, one in + its name
