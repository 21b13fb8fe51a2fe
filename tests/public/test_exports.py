"""Exports: sightings CSV, capture histories (CSV and Program MARK .inp), and coarsening."""

from __future__ import annotations

import csv
import datetime as dt
import io

import pytest
from django.urls import reverse

from catalogue.exports import capture_sessions
from tests.factories import (
    AnnotationFactory,
    EncounterFactory,
    ImageFactory,
    IndividualFactory,
    SpeciesFactory,
    UserFactory,
    confirmed_sighting,
)
from wildweb.errors import ServiceError

pytestmark = pytest.mark.django_db


def day(month: int, day_: int) -> dt.datetime:
    return dt.datetime(2025, month, day_, 12, 0, tzinfo=dt.UTC)


def rows(response) -> list[dict]:
    return list(csv.DictReader(io.StringIO(response.content.decode())))


@pytest.fixture
def expert_client(client):
    client.force_login(UserFactory(role="expert"))
    return client


@pytest.fixture
def population():
    """Three wolves seen across January–March 2025 (sessions of 30 days from 1 January)."""
    species = SpeciesFactory(name="Wolf", sensitive=True)
    a, b, c = (IndividualFactory(species=species, code=code) for code in ("W-A", "W-B", "W-C"))
    confirmed_sighting(individual=a, observed_at=day(1, 1))  # session 1
    confirmed_sighting(individual=a, observed_at=day(1, 20))  # session 1 again
    confirmed_sighting(individual=a, observed_at=day(3, 15))  # session 3
    confirmed_sighting(individual=b, observed_at=day(2, 5))  # session 2
    confirmed_sighting(individual=c, observed_at=day(3, 31), source="import")  # session 3
    # Unconfirmed: a candidate nobody decided; it must not count.
    AnnotationFactory(
        image=ImageFactory(encounter=EncounterFactory(species=species, observed_at=day(2, 1)))
    )
    return species


def test_sessions_cover_the_period_in_steps_of_the_given_days() -> None:
    sessions = capture_sessions(start=dt.date(2025, 1, 1), end=dt.date(2025, 3, 31), days=30)
    assert [(s.start.isoformat(), s.end.isoformat()) for s in sessions] == [
        ("2025-01-01", "2025-01-30"),
        ("2025-01-31", "2025-03-01"),
        ("2025-03-02", "2025-03-31"),
    ]
    with pytest.raises(ServiceError):
        capture_sessions(start=dt.date(2025, 1, 2), end=dt.date(2025, 1, 1), days=1)
    with pytest.raises(ServiceError):
        capture_sessions(start=dt.date(2025, 1, 1), end=dt.date(2025, 1, 9), days=0)


def test_capture_history_csv_has_one_column_per_session(expert_client, population) -> None:
    response = expert_client.get(reverse("export-capture-history"), {"species": "wolf", "days": 30})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert 'filename="wildweb-capture-history-wolf.csv"' in response["Content-Disposition"]
    header = response.content.decode().splitlines()[0].split(",")
    assert header == [
        "individual",
        "name",
        "2025-01-01..2025-01-30",
        "2025-01-31..2025-03-01",
        "2025-03-02..2025-03-31",
        "captures",
    ]
    table = {r["individual"]: [r[h] for h in header[2:-1]] for r in rows(response)}
    assert table == {"W-A": ["1", "0", "1"], "W-B": ["0", "1", "0"], "W-C": ["0", "0", "1"]}


def test_capture_history_with_explicit_start_and_end_drops_sightings_outside(
    expert_client, population
) -> None:
    response = expert_client.get(
        reverse("export-capture-history"),
        {"species": "wolf", "days": "14", "start": "2025-01-15", "end": "2025-02-11"},
    )
    table = {r["individual"]: r for r in rows(response)}
    assert set(table) == {"W-A", "W-B"}  # W-C's March sighting is outside
    assert table["W-A"]["2025-01-15..2025-01-28"] == "1"
    assert table["W-B"]["2025-01-29..2025-02-11"] == "1"


def test_capture_history_in_program_mark_inp_format(expert_client, population) -> None:
    response = expert_client.get(
        reverse("export-capture-history"), {"species": "wolf", "days": 30, "format": "inp"}
    )
    assert response.status_code == 200
    lines = [
        line
        for line in response.content.decode().splitlines()
        if not line.startswith("/* session") and not line.startswith("/* Wildweb")
    ]
    assert lines == ["/* W-A */ 101 1;", "/* W-B */ 010 1;", "/* W-C */ 001 1;"]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"days": 30}, "Choose a species"),
        ({"species": "wolf", "days": "x"}, "whole number"),
        ({"species": "wolf", "days": 0}, "at least one day"),
        ({"species": "wolf", "start": "31/01/2025"}, "date like"),
        ({"species": "wolf", "start": "2025-03-01", "end": "2025-01-01"}, "before the start"),
    ],
)
def test_capture_history_errors_are_explained(expert_client, population, params, message) -> None:
    response = expert_client.get(reverse("export-capture-history"), params)
    assert response.status_code == 400
    assert message in response.content.decode()


def test_capture_history_of_a_species_without_sightings_says_so(expert_client) -> None:
    SpeciesFactory(name="Otter")
    response = expert_client.get(reverse("export-capture-history"), {"species": "otter"})
    assert response.status_code == 400
    assert "No dated, confirmed sightings of Otter" in response.content.decode()


def test_encounters_csv_columns_and_exact_places_for_experts(expert_client, population) -> None:
    response = expert_client.get(reverse("export-encounters"), {"species": "wolf"})
    assert response.status_code == 200
    table = rows(response)
    assert list(table[0]) == [
        "sighting_id",
        "species",
        "observed_at",
        "latitude",
        "longitude",
        "coordinates_coarsened",
        "status",
        "photos",
        "individuals",
        "identity_sources",
        "submitted_by",
        "reported_at",
    ]
    assert len(table) == 6  # experts also get the unconfirmed sighting
    first = table[0]
    assert (first["latitude"], first["longitude"], first["coordinates_coarsened"]) == (
        "51.23456",
        "-0.98765",
        "0",
    )
    assert first["individuals"] == "W-A" and first["identity_sources"] == "expert"


def test_public_encounters_csv_coarsens_and_holds_only_confirmed_sightings(
    client, population
) -> None:
    IndividualFactory(species=population, code="W-SECRET", is_public=False)
    confirmed_sighting(individual=population.individuals.get(code="W-SECRET"))
    response = client.get(reverse("export-public-encounters"), {"species": "wolf"})
    assert response.status_code == 200
    table = rows(response)
    assert len(table) == 5
    assert "submitted_by" not in table[0]
    assert {(r["latitude"], r["longitude"], r["coordinates_coarsened"]) for r in table} == {
        ("51.2", "-1.0", "1")
    }
    assert "W-SECRET" not in response.content.decode()


def test_encounters_csv_keeps_places_of_common_species_exact_for_everyone(client) -> None:
    fox = IndividualFactory(species=SpeciesFactory(name="Fox"), code="F-1")
    confirmed_sighting(individual=fox, observed_at=day(5, 5))
    table = rows(client.get(reverse("export-public-encounters")))
    assert (table[0]["latitude"], table[0]["coordinates_coarsened"]) == ("51.23456", "0")
