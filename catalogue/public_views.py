"""The public site (species, individuals, search, recent sightings) and the exports.

Public pages show only public, unmerged individuals and confirmed identities; every place of
a sensitive species is coarsened unless the visitor is an expert or an admin.
"""

from __future__ import annotations

from datetime import date

from django.conf import settings
from django.contrib.auth.decorators import login_required, permission_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.dateparse import parse_date
from django.utils.text import slugify

from catalogue import exports, selectors
from catalogue.coordinates import user_sees_exact_coordinates
from catalogue.models import Species
from catalogue.roles import DECIDE_PERMISSION
from wildweb.errors import ServiceError


def map_settings() -> dict:
    """Where map backgrounds come from; markers are drawn without them when offline."""
    return {
        "tile_url": settings.MAP_TILE_URL,
        "tile_attribution": settings.MAP_TILE_ATTRIBUTION,
    }


def sighting_markers(sightings: list[selectors.PublicSighting]) -> list[dict]:
    """Map markers of sightings whose place is known, in the coordinates the viewer may see."""
    return [
        {
            "lat": s.coordinates.latitude,
            "lon": s.coordinates.longitude,
            "coarsened": s.coordinates.coarsened,
            "date": s.encounter.observed_at.date().isoformat() if s.encounter.observed_at else "",
            "label": ", ".join(i.code for i in s.individuals),
        }
        for s in sightings
        if s.coordinates.known
    ]


def species_list(request: HttpRequest) -> HttpResponse:
    return render(
        request, "public/species_list.html", {"species_list": selectors.public_species_list()}
    )


def species_detail(request: HttpRequest, slug: str) -> HttpResponse:
    species = get_object_or_404(Species, slug=slug)
    recent = selectors.public_recent_sightings(user=request.user, species=species, limit=10)
    return render(
        request,
        "public/species_detail.html",
        {
            "species": species,
            "individuals": selectors.public_species_individuals(species=species),
            "recent": recent,
            "exact_coordinates": user_sees_exact_coordinates(request.user),
        },
    )


def individual_detail(request: HttpRequest, individual_id: int) -> HttpResponse:
    individual = selectors.public_individual_get(individual_id=individual_id)
    if individual is None:
        survivor = selectors.individual_merge_survivor(individual_id=individual_id)
        if survivor is not None:  # old links and bookmarks keep working after a merge
            return redirect("individual-detail", individual_id=survivor.pk, permanent=False)
        raise Http404("No public individual has this number.")
    history = selectors.individual_life_history(individual=individual, user=request.user)
    markers = sighting_markers(history.sightings)
    return render(
        request,
        "public/individual_detail.html",
        {
            "individual": individual,
            "history": history,
            "markers": markers,
            "any_coarsened": any(m["coarsened"] for m in markers),
            "grid": settings.SENSITIVE_COORDINATE_GRID,
            **map_settings(),
        },
    )


def search(request: HttpRequest) -> HttpResponse:
    query = request.GET.get("q", "").strip()[:100]
    results = selectors.public_individual_search(query=query)
    template = (
        "public/_search_results.html" if request.headers.get("HX-Request") else "public/search.html"
    )
    return render(request, template, {"query": query, "results": results})


def recent_sightings(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "public/recent.html",
        {
            "sightings": selectors.public_recent_sightings(user=request.user, limit=30),
            "grid": settings.SENSITIVE_COORDINATE_GRID,
        },
    )


@login_required
@permission_required(DECIDE_PERMISSION, raise_exception=True)
def export_index(request: HttpRequest) -> HttpResponse:
    return render(request, "dashboard/exports.html", {"species_list": Species.objects.all()})


@login_required
@permission_required(DECIDE_PERMISSION, raise_exception=True)
def export_encounters(request: HttpRequest) -> HttpResponse:
    species = _species_param(request)
    body = exports.encounters_csv(user=request.user, species=species)
    return _download(body, "text/csv", f"wildweb-sightings{_suffix(species)}.csv")


def export_public_encounters(request: HttpRequest) -> HttpResponse:
    """Confirmed sightings of public individuals, for anyone; sensitive places coarsened."""
    species = _species_param(request)
    body = exports.encounters_csv(user=request.user, species=species, public_only=True)
    return _download(body, "text/csv", f"wildweb-public-sightings{_suffix(species)}.csv")


@login_required
@permission_required(DECIDE_PERMISSION, raise_exception=True)
def export_capture_history(request: HttpRequest) -> HttpResponse:
    """``?species=slug&days=30[&start=YYYY-MM-DD&end=YYYY-MM-DD][&format=csv|inp]``."""
    try:
        species = _species_param(request)
        if species is None:
            raise ServiceError("Choose a species: capture histories are per population.")
        history = exports.capture_history(
            species=species,
            days=_int_param(request, "days", default=30),
            start=_date_param(request, "start"),
            end=_date_param(request, "end"),
        )
    except ServiceError as error:
        return render(
            request,
            "dashboard/exports.html",
            {"species_list": Species.objects.all(), "error": error.message, "values": request.GET},
            status=400,
        )
    if request.GET.get("format") == "inp":
        return _download(
            exports.capture_history_inp(history),
            "text/plain",
            f"wildweb-capture-history-{species.slug}.inp",
        )
    return _download(
        exports.capture_history_csv(history),
        "text/csv",
        f"wildweb-capture-history-{species.slug}.csv",
    )


def _download(body: str, content_type: str, filename: str) -> HttpResponse:
    response = HttpResponse(body, content_type=f"{content_type}; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{slugify_filename(filename)}"'
    return response


def slugify_filename(filename: str) -> str:
    stem, _, extension = filename.rpartition(".")
    return f"{slugify(stem)}.{extension}"


def _suffix(species: Species | None) -> str:
    return f"-{species.slug}" if species else ""


def _species_param(request: HttpRequest) -> Species | None:
    slug = request.GET.get("species", "").strip()
    if not slug:
        return None
    species = Species.objects.filter(slug=slug).first()
    if species is None:
        raise Http404(f"No species {slug!r}.")
    return species


def _int_param(request: HttpRequest, name: str, *, default: int) -> int:
    raw = request.GET.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ServiceError(f"{name} must be a whole number of days, not {raw!r}.") from None


def _date_param(request: HttpRequest, name: str) -> date | None:
    raw = request.GET.get(name, "").strip()
    if not raw:
        return None
    try:
        parsed = parse_date(raw)
    except ValueError:
        parsed = None
    if parsed is None:
        raise ServiceError(f"{name} must be a date like 2025-01-31, not {raw!r}.")
    return parsed
