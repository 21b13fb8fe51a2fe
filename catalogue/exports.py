"""Exports for experts and analysts: sightings as CSV, and capture histories.

A capture history says, for each individual, in which sampling sessions it was seen (1) or not
(0). Sessions are consecutive intervals of ``days`` days from ``start`` to ``end``. Program MARK
reads the ``.inp`` form: one ``/* code */ 0101 1;`` line per individual (history, frequency).
Only confirmed identities count (expert decisions and imported labels).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import Prefetch, QuerySet
from django.utils import timezone

from catalogue.coordinates import coordinates_for, user_sees_exact_coordinates
from catalogue.models import Encounter, Individual, Species
from catalogue.selectors import confirmed_identity_queryset, public_annotation_queryset
from reid.schema import SchemaError, validate_date
from wildweb.errors import ServiceError

MAX_SESSIONS = 1000
MAX_SESSION_DAYS = 36_525  # a century; longer sessions overflow date arithmetic

ENCOUNTER_COLUMNS = [
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


@dataclass(frozen=True)
class Session:
    number: int
    start: date
    end: date  # inclusive

    @property
    def label(self) -> str:
        return f"{self.start.isoformat()}..{self.end.isoformat()}"


@dataclass(frozen=True)
class CaptureHistory:
    species: Species
    sessions: list[Session]
    rows: list[tuple[Individual, list[int]]]  # individual, 0/1 per session


def capture_sessions(*, start: date, end: date, days: int) -> list[Session]:
    """Consecutive sessions of ``days`` days over ``start``..``end`` (the last may be shorter)."""
    if not 1 <= days <= MAX_SESSION_DAYS:
        raise ServiceError(
            f"A session lasts at least one day and at most {MAX_SESSION_DAYS}, not {days}.",
            field="days",
        )
    for name, day in (("start", start), ("end", end)):
        try:
            validate_date(day)
        except SchemaError as error:
            raise ServiceError(f"{name}: {error}.", field=name) from None
    if end < start:
        raise ServiceError("The end date is before the start date.", field="end")
    count = (end - start).days // days + 1
    if count > MAX_SESSIONS:
        raise ServiceError(
            f"That makes {count} sessions; at most {MAX_SESSIONS}. "
            "Choose longer sessions or a shorter period.",
            field="days",
        )
    return [
        Session(
            number=n + 1,
            start=start + timedelta(days=n * days),
            end=min(start + timedelta(days=(n + 1) * days - 1), end),
        )
        for n in range(count)
    ]


def capture_history(
    *,
    species: Species,
    days: int,
    start: date | None = None,
    end: date | None = None,
    public_only: bool = False,
) -> CaptureHistory:
    """Which individual of ``species`` was seen in which session.

    Args:
        species: One species; capture–recapture models are fitted per population.
        days: Length of a session in days.
        start: First day of the first session; default the first confirmed sighting.
        end: Last day; default the last confirmed sighting.
        public_only: Only public individuals (for exports anyone may download).

    Raises:
        ServiceError: The parameters make no sense, or the species has no dated sightings.
    """
    annotations = public_annotation_queryset() if public_only else confirmed_identity_queryset()
    seen = annotations.filter(
        species=species, image__encounter__observed_at__isnull=False
    ).values_list("individual_id", "image__encounter__observed_at")
    sightings = [(individual_id, _local_date(moment)) for individual_id, moment in seen]
    if start is None or end is None:
        if not sightings:
            raise ServiceError(f"No dated, confirmed sightings of {species} to export.")
        start = start or min(day for _, day in sightings)
        end = end or max(day for _, day in sightings)
    sessions = capture_sessions(start=start, end=end, days=days)
    captured: dict[int, set[int]] = {}
    for individual_id, day in sightings:
        if start <= day <= end:
            captured.setdefault(individual_id, set()).add((day - start).days // days)
    individuals = Individual.objects.filter(pk__in=captured).order_by("code")
    rows = [
        (individual, [int(i in captured[individual.pk]) for i in range(len(sessions))])
        for individual in individuals
    ]
    return CaptureHistory(species=species, sessions=sessions, rows=rows)


def capture_history_csv(history: CaptureHistory) -> str:
    """One row per individual: code, name, then 0/1 per session (headed by its dates)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["individual", "name", *[s.label for s in history.sessions], "captures"])
    for individual, bits in history.rows:
        writer.writerow([individual.code, individual.name, *bits, sum(bits)])
    return buffer.getvalue()


def capture_history_inp(history: CaptureHistory) -> str:
    """Program MARK's input: ``/* code */ 0101 1;`` per individual, sessions listed on top."""
    title = _comment(history.species.name)
    lines = [f"/* Wildweb capture history: {title}, {len(history.sessions)} sessions */"]
    lines += [f"/* session {s.number}: {s.label} */" for s in history.sessions]
    for individual, bits in history.rows:
        lines.append(f"/* {_comment(individual.code)} */ {''.join(map(str, bits))} 1;")
    return "\n".join(lines) + "\n"


def encounter_export_queryset(
    *, species: Species | None = None, public_only: bool = False
) -> QuerySet[Encounter]:
    """Sightings to export; public exports hold only the public photos, and sightings with one.

    Each image's ``annotations`` are prefetched: in a public export, only its public ones.
    """
    queryset = Encounter.objects.select_related("species", "submitted_by")
    if public_only:
        public = public_annotation_queryset()
        queryset = queryset.filter(images__annotations__in=public).distinct()
        queryset = queryset.prefetch_related(
            "images",
            Prefetch("images__annotations", queryset=public.select_related("individual")),
        )
    else:
        queryset = queryset.prefetch_related("images__annotations__individual")
    if species is not None:
        queryset = queryset.filter(species=species)
    return queryset.order_by("observed_at", "pk")


def encounters_csv(
    *,
    user: AbstractBaseUser | AnonymousUser,
    species: Species | None = None,
    public_only: bool = False,
) -> str:
    """Sightings as CSV; sensitive species' places coarsened unless ``user`` may see them."""
    exact = user_sees_exact_coordinates(user) and not public_only
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(
        ENCOUNTER_COLUMNS
        if not public_only
        else [c for c in ENCOUNTER_COLUMNS if c != "submitted_by"]
    )
    for encounter in encounter_export_queryset(species=species, public_only=public_only):
        point = coordinates_for(
            species=encounter.species,
            latitude=encounter.latitude,
            longitude=encounter.longitude,
            exact=exact,
        )
        annotations = [a for image in encounter.images.all() for a in image.annotations.all()]
        identified = [a for a in annotations if a.individual_id]
        row = [
            encounter.pk,
            encounter.species.name,
            encounter.observed_at.isoformat() if encounter.observed_at else "",
            "" if point.latitude is None else point.latitude,
            "" if point.longitude is None else point.longitude,
            int(point.coarsened),
            encounter.status,
            len(encounter.images.all()),
            " ".join(sorted({a.individual.code for a in identified})),
            " ".join(sorted({a.identity_source for a in identified})),
        ]
        if not public_only:
            row.append(encounter.submitted_by.username if encounter.submitted_by else "")
        row.append(encounter.created_at.isoformat())
        writer.writerow(row)
    return buffer.getvalue()


def _local_date(moment: datetime) -> date:
    return timezone.localtime(moment).date() if timezone.is_aware(moment) else moment.date()


def _comment(text: str) -> str:
    # MARK comments end at the first "*/"; a code must not end one early.
    return text.replace("*/", "* /").replace("/*", "/ *")
